"""Shared fixtures: a real Celery worker consuming from RabbitMQ, a Redis client, an API client."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

import pytest
import redis
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from celery.worker import state as worker_state
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from config.celery import app as celery_app
from core.queues import QUEUE_NAMES
from tests.contract.fixtures import any_event_data  # noqa: F401 (a fixture: tests that publish made-up data)


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


def purge_queues() -> None:
    """Empty the task queues and the in-project subscribers' event queues."""
    from core.events import consumer

    # A connection of its own: the pool's may have been closed by a test's broker outage.
    with celery_app.connection_for_write() as conn:
        celery_app.control.purge(connection=conn)
        for queue in consumer.topology():
            bound = queue(conn.default_channel)
            bound.declare()
            bound.purge()


def _events_consumers(worker) -> list:
    from core.events.consumer import EventsConsumer

    return [step for step in worker.consumer.steps if isinstance(step, EventsConsumer)]


def _quiesce(worker, timeout: float = 15.0) -> None:
    """Stop taking tasks and let the running ones finish.

    The test worker stops with a cold shutdown, and its threads cannot be stopped: a task
    still running (e.g. a notification of the test's last event) would go on writing while
    the test's database teardown truncates the tables, and the two deadlock. What it had
    taken but not started goes back to RabbitMQ, unacknowledged.
    """
    cancelled = threading.Event()

    def cancel() -> None:  # on the worker's own event loop, where its consumer lives
        for queue in QUEUE_NAMES:  # not cancel_task_queue(): that deselects the queue in the shared app
            worker.consumer.task_consumer.cancel_by_queue(queue)
        for step in _events_consumers(worker):
            for consumer in step.consumers or ():
                consumer.cancel()
        cancelled.set()

    worker.hub.call_soon(cancel)
    cancelled.wait(5)
    wait_for(
        lambda: not worker_state.active_requests and not any(s.in_flight for s in _events_consumers(worker)),
        timeout=timeout,
        what="the worker's running tasks and events to end",
    )


@contextlib.contextmanager
def running_worker():
    """A real Celery worker (threads pool, in this process) consuming every project queue.

    For a test that publishes first and starts the worker afterwards; most use the
    `celery_worker` fixture, which purges the queues before it starts one.
    """
    with start_worker(
        celery_app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=30,
    ) as worker:
        # The event loop sleeps until its next timer (up to 10 s) and only then sees the
        # request to stop: a 0.2 s timer makes the teardown prompt.
        worker.hub.call_repeatedly(0.2, lambda: None)
        try:
            yield worker
        finally:
            _quiesce(worker)


@pytest.fixture
def celery_worker(django_db_setup, django_db_blocker):
    """A real Celery worker (threads pool, in this process) consuming every project queue.

    Tasks travel through RabbitMQ and run in worker threads with their own database
    connections, so tests that use it need `@pytest.mark.django_db(transaction=True)`.
    One per test, so a test that runs its own worker process has the queues to itself.
    """
    purge_queues()  # nothing left over from earlier tests reaches this worker
    with django_db_blocker.unblock(), running_worker() as worker:
        yield worker


@pytest.fixture(autouse=True)
def _fresh_redis():
    """Each test starts with an empty cache database: no relay kick flag or backoff left over."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    client.close()


@pytest.fixture(autouse=True)
def _fresh_webhook_kick_window():
    """No webhook dispatch kick left over from the previous test.

    payments.webhooks sends at most one delayed kick a second per process; a kick sent in the
    previous test went to that test's worker and database, so without this a webhook stored
    within the same second would wait for beat's sweep (ten minutes).
    """
    from payments import webhooks

    webhooks._next_kick_at = 0.0


@pytest.fixture
def finished_tasks():
    """Task id -> return value of every task the in-process worker finished during the test."""
    finished: dict[str, object] = {}

    def record(task_id=None, retval=None, **kwargs):
        finished[task_id] = retval

    task_postrun.connect(record, weak=False)
    yield finished
    task_postrun.disconnect(record)


class Deliveries(list):
    """(event id, subscriber, attempt, outcome) of the runs recorded so far. A job's effects
    commit before its runs are recorded, so reading waits (up to 10 s) until no job is between
    the two: a test that saw an effect then reads its run."""

    def __init__(self):
        super().__init__()
        self.idle = threading.Condition()
        self.in_flight = 0

    def started(self) -> None:
        with self.idle:
            self.in_flight += 1

    def finished(self) -> None:
        with self.idle:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.notify_all()

    def __iter__(self):
        with self.idle:
            self.idle.wait_for(lambda: not self.in_flight, timeout=10)
        return super().__iter__()


@pytest.fixture
def deliveries(monkeypatch):
    """(event id, subscriber, attempt, outcome) of every run the in-process worker's pool made
    of an event (core/events/consumer.py)."""
    from core.events import consumer

    seen = Deliveries()
    run = consumer.run_deliveries

    def recording(batch):
        seen.started()
        try:
            results = run(batch)
            for (envelope, names, attempt, *_), outcomes in zip(batch, results, strict=True):
                seen.extend((envelope["id"], n, attempt, o[0]) for n, o in zip(names, outcomes, strict=True))
            return results
        finally:
            seen.finished()

    monkeypatch.setattr(consumer, "run_deliveries", recording)
    return seen


@pytest.fixture
def task_per_subscriber(settings) -> dict[str, str]:
    """The fallback for brokers without the events consumer: the relay sends a Celery task per
    subscriber. On in this process; the env to give the worker processes a test starts."""
    settings.EVENTS_CONSUMER = False
    return {"TEST_EVENTS_CONSUMER": "0"}


def rabbitmq_queues(*columns: str) -> list[dict]:
    """`rabbitmqctl list_queues` on the test broker's vhost: a dict per queue, its `name` and
    `columns` (ready and unacknowledged messages, consumers..., which AMQP's passive declare
    does not all give). [] when this machine has no rabbitmqctl."""
    if shutil.which("rabbitmqctl") is None:
        return []
    vhost = unquote(urlsplit(settings.CELERY_BROKER_URL).path[1:]) or "/"
    listing = subprocess.run(  # noqa: S603
        ["rabbitmqctl", "list_queues", "-p", vhost, "name", *columns, "--formatter", "json", "-q"],  # noqa: S607
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(listing.stdout or "[]")


def queue_messages(name: str) -> int:
    """Messages on a queue, ready or delivered and not yet acknowledged, on this machine's broker."""
    url = urlsplit(settings.CELERY_BROKER_URL)
    if shutil.which("rabbitmqctl") is None or url.hostname not in {"127.0.0.1", "localhost"}:
        pytest.skip("needs rabbitmqctl for the test broker")
    return {queue["name"]: queue["messages"] for queue in rabbitmq_queues("messages")}[name]


@pytest.fixture
def celery_app_without_worker():
    """For tests that only enqueue: whatever they send is purged from the queues afterwards."""
    yield celery_app
    purge_queues()


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def api_client():
    return APIClient()


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a process that must use this test's database (and TEST_* services)."""
    db = connection.settings_dict
    return os.environ | {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "TEST_DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "DJANGO_READ_DOT_ENV": "0",
        **extra,
    }


class WorkerProcess:
    """A real `celery worker` process (prefork) on the test database, that a test can kill."""

    def __init__(
        self, queues: str, concurrency: int = 1, env: dict[str, str] | None = None, broker: str | None = None
    ):
        self.hostname = f"test-{uuid.uuid4().hex[:8]}@%h"
        self.broker = broker  # another broker than the suite's (TEST_CELERY_BROKER_URL in `env`)
        env = child_env(**(env or {}))  # TEST_* settings of this worker only (e.g. the test's SMTP server)
        self.process = subprocess.Popen(  # noqa: S603 - fixed arguments
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency),
                "-Q",
                queues,
                "-n",
                self.hostname,
                "--without-mingle",
                "--without-gossip",
                "--loglevel",
                "WARNING",
            ],
            env=env,
            start_new_session=True,  # its own process group, so kill() takes the pool children too
        )
        self.name = self.hostname.replace("%h", socket.gethostname())
        try:
            wait_for(
                lambda: self.process.poll() is not None or self.ping(),
                timeout=30,
                what="the worker process to answer ping",
            )
        except BaseException:
            self.kill()  # never left behind to take the next tests' tasks and events
            raise
        assert self.process.poll() is None, "the worker process exited at start"

    def ping(self) -> list:
        if not self.broker:
            # A connection of its own, not the pool's: ping publishes without retrying, and a
            # pooled connection may be one a broker outage closed (broker_outage).
            with celery_app.connection_for_write() as connection:
                return celery_app.control.ping(destination=[self.name], timeout=0.5, connection=connection)
        # Another broker: an app of its own (the project's app publishes control messages
        # through its own pool, on the suite's broker). Redis answers through its pub/sub
        # and a polled reply list: give it longer.
        probe = Celery("probe", broker=self.broker, set_as_current=False)
        try:
            return probe.control.ping(destination=[self.name], timeout=2.0)
        finally:
            probe.close()

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once: no goodbye to RabbitMQ."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def worker_processes(django_db_setup):
    """Start real worker processes with `start(queues)`; all are stopped at the end."""
    started: list[WorkerProcess] = []

    def start(
        queues: str, concurrency: int = 1, env: dict[str, str] | None = None, broker: str | None = None
    ) -> WorkerProcess:
        env = {**(env or {}), **({"TEST_CELERY_BROKER_URL": broker} if broker else {})}
        worker = WorkerProcess(queues, concurrency, env, broker)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
