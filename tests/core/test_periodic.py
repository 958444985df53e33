import json

import pytest
from django.core.management import call_command
from django.test import override_settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.periodic import PERIODIC_TASKS
from core.periodic import PeriodicTaskSpec, periodic_tasks

pytestmark = pytest.mark.django_db

ANOTHER_LIST = [PeriodicTaskSpec(name="tests.tick", task="core.heartbeat", every_seconds=42, args=["tests"])]


def test_declared_periodic_tasks_are_installed_once():
    call_command("setup_periodic_tasks")
    call_command("setup_periodic_tasks")

    for spec in PERIODIC_TASKS:
        task = PeriodicTask.objects.get(name=spec.name)
        assert task.task == spec.task
        assert json.loads(task.args) == spec.args
        assert task.interval.every == spec.every_seconds
        assert 0 < task.expire_seconds < spec.every_seconds
    assert PeriodicTask.objects.filter(name__in=[s.name for s in PERIODIC_TASKS]).count() == len(
        PERIODIC_TASKS
    )


def test_a_schedule_changed_by_staff_survives_reinstall_until_reset():
    call_command("setup_periodic_tasks")
    spec = PERIODIC_TASKS[0]
    task = PeriodicTask.objects.get(name=spec.name)
    task.interval = IntervalSchedule.objects.create(every=600, period=IntervalSchedule.SECONDS)
    task.enabled = False
    task.save()

    call_command("setup_periodic_tasks")
    task.refresh_from_db()
    assert (task.interval.every, task.enabled) == (600, False)

    call_command("setup_periodic_tasks", "--reset")
    task.refresh_from_db()
    assert (task.interval.every, task.enabled) == (spec.every_seconds, True)


def test_the_setting_names_the_list_the_command_installs():
    assert periodic_tasks() is PERIODIC_TASKS  # config/periodic.py, by default

    with override_settings(PERIODIC_TASKS="tests.core.test_periodic.ANOTHER_LIST"):
        call_command("setup_periodic_tasks")

    task = PeriodicTask.objects.get(name="tests.tick")
    assert not PeriodicTask.objects.filter(name__in=[s.name for s in PERIODIC_TASKS]).exists()
    assert (task.name, task.task, json.loads(task.args)) == ("tests.tick", "core.heartbeat", ["tests"])
    assert (task.interval.every, task.expire_seconds) == (42, 37)
