"""The chaos suite: paid flows through the API while workers, RabbitMQ and PostgreSQL fail.

Gives the suite a live server whose URL the sandbox's checkout links point at, and a real
beat (the `chaos` marker is registered in pyproject.toml).
"""

import io

import pytest
from django.core.management import call_command
from django.test import override_settings

from tests.conftest import wait_for
from tests.events.test_broker_recovery import BeatProcess


@pytest.fixture
def site(live_server):
    with override_settings(SITE_URL=live_server.url):
        yield live_server


@pytest.fixture
def beat(tmp_path):
    """A real `celery beat`: its sweeps are what finds the work a broker outage left waiting."""
    call_command("setup_periodic_tasks", stdout=io.StringIO())
    process = BeatProcess(tmp_path)
    try:
        wait_for(lambda: "Sending due task" in process.output(), timeout=30, what="beat's first tick")
        yield process
    finally:
        process.stop()
