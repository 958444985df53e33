"""Shared fixtures: a real Celery worker consuming from RabbitMQ, a Redis client, an API client."""

import time
from collections.abc import Callable

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from rest_framework.test import APIClient

from config.celery import app as celery_app


def wait_for(
    condition: Callable[[], object], *, timeout: float = 20.0, interval: float = 0.05, what: str = ""
):
    """Poll `condition` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what or condition}")


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """A real Celery worker (threads pool, in this process) consuming every project queue.

    Tasks travel through RabbitMQ and run in worker threads with their own database
    connections, so tests that use it need `@pytest.mark.django_db(transaction=True)`.
    """
    with (
        django_db_blocker.unblock(),
        start_worker(
            celery_app,
            pool="threads",
            concurrency=4,
            perform_ping_check=False,
            loglevel="WARNING",
            shutdown_timeout=30,
        ) as worker,
    ):
        yield worker


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def api_client():
    return APIClient()
