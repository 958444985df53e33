import json
import logging
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.celery import QUIET_TASKS
from config.celery import app as celery_app
from config.periodic import PERIODIC_TASKS
from core.periodic import PeriodicTaskSpec, periodic_tasks
from core.tasks import prune_idempotency_records, sweep
from tests.conftest import wait_for

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


# --- names for staff, and the rows of earlier releases ------------------------------------
def test_each_periodic_task_is_named_for_what_it_does_and_keeps_its_task():
    names = [spec.name for spec in PERIODIC_TASKS]
    assert len(set(names)) == len(names)
    for spec in PERIODIC_TASKS:
        assert spec.name != spec.task and " " in spec.name, f"{spec.task} has no name for staff"
        assert spec.former_names == (spec.task,)  # what earlier releases called its row


def test_rows_of_an_earlier_release_are_renamed_keeping_staff_edits():
    spec = next(s for s in PERIODIC_TASKS if s.task == "core.events.sweep")
    every_minute = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    old = PeriodicTask.objects.create(
        name=spec.task, task=spec.task, interval=every_minute, enabled=False, expire_seconds=4
    )
    out = StringIO()

    call_command("setup_periodic_tasks", stdout=out)

    assert f"renamed {spec.task} to {spec.name}" in out.getvalue()
    task = PeriodicTask.objects.get(task=spec.task)  # one row, not two
    assert (task.pk, task.name, task.interval.every, task.enabled) == (old.pk, spec.name, 60, False)
    assert not PeriodicTask.objects.filter(name__in=[s.task for s in PERIODIC_TASKS]).exists()
    assert PeriodicTask.objects.count() == len(PERIODIC_TASKS)


def test_a_row_an_older_release_installed_again_beside_the_renamed_one_is_deleted():
    """A rollback's setup_periodic_tasks recreated the old name: beat would send the task twice."""
    call_command("setup_periodic_tasks", stdout=StringIO())
    spec = next(s for s in PERIODIC_TASKS if s.task == "payments.reconcile")
    kept = PeriodicTask.objects.get(name=spec.name)
    PeriodicTask.objects.create(name=spec.task, task=spec.task, interval=kept.interval)
    out = StringIO()

    call_command("setup_periodic_tasks", stdout=out)

    assert f"deleted {spec.task}, a second row of {spec.name}" in out.getvalue()
    assert list(PeriodicTask.objects.filter(task=spec.task).values_list("pk", flat=True)) == [kept.pk]


# --- frequent tasks stay quiet: no task events, no results, no INFO lines -------------------
def test_every_task_beat_sends_every_minute_or_more_often_is_quiet():
    celery_app.loader.import_default_modules()  # every app's tasks, as a worker has them
    for spec in PERIODIC_TASKS:
        task = celery_app.tasks[spec.task]
        assert task.ignore_result, spec.task
        assert task.send_events is (spec.every_seconds > 60), f"{spec.task} every {spec.every_seconds}s"
    assert {s.task for s in PERIODIC_TASKS if s.every_seconds <= 60} == set(QUIET_TASKS)


def test_beat_logs_sending_a_quiet_task_at_debug_only(caplog):
    beat = logging.getLogger("celery.beat")
    caplog.set_level(logging.INFO)

    beat.info("Scheduler: Sending due task %s (%s)", "Publish waiting outbox events", "core.events.sweep")
    beat.info("Scheduler: Sending due task %s (%s)", "Re-verify stale payments", "payments.reconcile")

    assert [r.getMessage() for r in caplog.records] == [
        "Scheduler: Sending due task Re-verify stale payments (payments.reconcile)"
    ]
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    beat.info("Scheduler: Sending due task %s (%s)", "Publish waiting outbox events", "core.events.sweep")
    assert [(r.levelname, r.name) for r in caplog.records] == [("DEBUG", "celery.beat")]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_sweep_run_by_the_worker_logs_nothing_at_info(celery_worker, finished_tasks, caplog):
    caplog.set_level(logging.INFO)

    swept = sweep.delay()
    pruned = prune_idempotency_records.delay()  # not quiet: its lines show the capture works
    wait_for(lambda: {swept.id, pruned.id} <= finished_tasks.keys(), what="both tasks to run")
    wait_for(lambda: pruned.id in caplog.text and "succeeded" in caplog.text, what="the prune's line")

    assert f"Task core.idempotency.prune[{pruned.id}] received" in caplog.text
    assert [r for r in caplog.records if swept.id in r.getMessage()] == []


def test_a_quiet_task_that_fails_is_still_logged_as_an_error(caplog):
    trace = logging.getLogger("celery.app.trace")
    caplog.set_level(logging.INFO)
    data = {"id": "t-1", "name": "core.events.sweep", "exc": "OperationalError('gone')"}

    trace.info("Task %(name)s[%(id)s] succeeded", data, extra={"data": data})
    trace.error("Task %(name)s[%(id)s] raised unexpected: %(exc)s", data, extra={"data": data})

    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "Task core.events.sweep[t-1] raised unexpected: OperationalError('gone')")
    ]
