"""Idempotency-Key: one run per key, 409 while it runs, replays say so, old keys are pruned."""

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.test import override_settings
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from config.periodic import PERIODIC_TASKS
from core.errors import Unavailable
from core.idempotency import idempotency_records_prune, idempotent
from core.models import IdempotencyRecord
from core.tasks import prune_idempotency_records
from tests.conftest import wait_for
from tests.factories import UserFactory

WAIT = 20  # seconds a step may take before the test fails (never slept: events and polls)


class Probe:
    """A test endpoint built on `idempotent()`, counting its steps; `block` holds the handler."""

    def __init__(self, *, block: bool = False, answers: list | None = None):
        self.prepared = 0
        self.handled = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        if not block:
            self.release.set()
        self.answers = answers or []
        probe = self

        class View(APIView):
            def post(self, request):
                return idempotent(
                    request,
                    scope="tests.probe",
                    payload=request.data,
                    prepare=probe.prepare,
                    handler=probe.handle,
                )

        self.view = View.as_view()

    def prepare(self, record) -> None:
        self.prepared += 1
        record.resource_id = f"thing-{self.prepared}"

    def handle(self, record) -> Response:
        self.handled += 1
        self.entered.set()
        assert self.release.wait(WAIT), "the test never released the first request"
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, BaseException):
                raise answer
            return answer
        return Response({"id": record.resource_id, "run": self.handled}, status=201)

    def post(self, user, key: str, body: dict | None = None) -> Response:
        request = APIRequestFactory().post(
            "/probe", body or {"item": 1}, format="json", HTTP_IDEMPOTENCY_KEY=key
        )
        force_authenticate(request, user)
        try:
            response = self.view(request)
            response.render()
            return response
        finally:
            if threading.current_thread() is not threading.main_thread():
                connection.close()  # each request thread had its own connection


def error_shape(response) -> dict:
    body = json.loads(response.content)
    assert set(body) == {"code", "message", "extra"}, body
    return body


@pytest.mark.django_db(transaction=True)
def test_a_second_request_while_the_first_runs_gets_409_request_in_progress():
    user = UserFactory()
    probe = Probe(block=True)
    key = f"key-{uuid.uuid4().hex}"

    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(probe.post, user, key)
        assert probe.entered.wait(WAIT), "the first request never reached its handler"
        second = pool.submit(probe.post, user, key).result(timeout=WAIT)
        probe.release.set()
        first = first.result(timeout=WAIT)

    assert second.status_code == 409
    assert error_shape(second)["code"] == "request_in_progress"
    assert second["Retry-After"] == "1"
    assert first.status_code == 201 and first.data == {"id": "thing-1", "run": 1}
    assert (probe.prepared, probe.handled) == (1, 1)  # the duplicate ran nothing
    record = IdempotencyRecord.objects.get(key=key)
    assert (record.response_status, record.locked_until) == (201, None)


@pytest.mark.django_db(transaction=True)
def test_a_replay_says_idempotent_replayed_and_for_one_release_idempotent_replay():
    user = UserFactory()
    probe = Probe()

    first = probe.post(user, "k1")
    again = probe.post(user, "k1")

    assert first.status_code == again.status_code == 201
    assert again.data == first.data
    assert again["Idempotent-Replayed"] == "true"
    assert again["Idempotent-Replay"] == "true"  # the old name, deprecated
    assert not first.has_header("Idempotent-Replayed")
    assert probe.handled == 1


@pytest.mark.django_db(transaction=True)
def test_the_same_key_with_another_body_is_still_refused():
    user = UserFactory()
    probe = Probe()
    probe.post(user, "k1")

    refused = probe.post(user, "k1", {"item": 2})

    assert refused.status_code == 422
    assert error_shape(refused)["code"] == "idempotency_key_reused"


@pytest.mark.django_db(transaction=True)
def test_a_lock_left_by_a_request_that_died_lapses_and_the_retry_runs():
    user = UserFactory()
    probe = Probe(answers=[Unavailable()])
    probe.post(user, "k1")  # prepared thing-1, answered 503: nothing stored
    # As if a second try had died in its handler (its process killed) a while ago:
    IdempotencyRecord.objects.filter(key="k1").update(locked_until=timezone.now() - timedelta(seconds=1))

    response = probe.post(user, "k1")

    assert response.status_code == 201 and response.data["id"] == "thing-1"
    assert (probe.prepared, probe.handled) == (1, 2)


@pytest.mark.django_db(transaction=True)
def test_a_lock_still_held_refuses_a_retry_until_it_lapses():
    user = UserFactory()
    probe = Probe(answers=[Unavailable()])
    probe.post(user, "k1")
    IdempotencyRecord.objects.filter(key="k1").update(locked_until=timezone.now() + timedelta(seconds=30))

    refused = probe.post(user, "k1")

    assert refused.status_code == 409 and error_shape(refused)["code"] == "request_in_progress"
    assert probe.handled == 1


@pytest.mark.django_db(transaction=True)
def test_a_5xx_or_a_crash_releases_the_key_so_that_a_retry_runs_again():
    user = UserFactory()
    probe = Probe(answers=[Unavailable(), RuntimeError("boom"), Response({"ok": True}, status=201)])

    unavailable = probe.post(user, "k1")
    with pytest.raises(RuntimeError):
        probe.post(user, "k1")
    done = probe.post(user, "k1")

    assert unavailable.status_code == 503 and error_shape(unavailable)["code"] == "unavailable"
    assert done.status_code == 201
    assert (probe.prepared, probe.handled) == (1, 3)
    assert IdempotencyRecord.objects.get(key="k1").locked_until is None


@pytest.mark.django_db(transaction=True)
def test_a_handler_whose_database_connection_died_releases_the_key_on_a_new_one():
    """The server terminates the request's connection while its handler runs (a failover, an
    administrator): the handler's error reaches the caller, and the key is not left locked for
    IDEMPOTENCY_LOCK_SECONDS: the retry runs at once."""
    user = UserFactory()

    class CutOff(Probe):
        def handle(self, record) -> Response:
            if self.handled == 0:
                self.handled += 1
                with connection.cursor() as cursor:  # raises OperationalError: the server closed it
                    cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            return super().handle(record)

    probe = CutOff()
    with pytest.raises(OperationalError):
        probe.post(user, "cut")
    retried = probe.post(user, "cut")

    assert retried.status_code == 201, retried.data  # not 409 request_in_progress
    assert (probe.prepared, probe.handled) == (1, 2)
    record = IdempotencyRecord.objects.get(key="cut")
    assert (record.response_status, record.locked_until) == (201, None)


def _record(user, key: str, *, age: timedelta, locked: bool = False) -> IdempotencyRecord:
    now = timezone.now()
    record = IdempotencyRecord.objects.create(
        key=key,
        scope="tests.probe",
        user=user,
        fingerprint="f",
        response_status=None if locked else 201,
        locked_until=now + timedelta(seconds=60) if locked else None,
    )
    IdempotencyRecord.objects.filter(pk=record.pk).update(created_at=now - age)  # auto_now_add
    return record


@pytest.mark.django_db
@override_settings(IDEMPOTENCY_RETENTION_HOURS=2)
def test_records_past_the_retention_are_pruned_and_a_running_one_is_kept():
    user = UserFactory()
    _record(user, "old", age=timedelta(hours=2, minutes=1))
    _record(user, "older", age=timedelta(days=3))
    _record(user, "running", age=timedelta(hours=3), locked=True)
    _record(user, "recent", age=timedelta(hours=1, minutes=59))

    assert idempotency_records_prune() == 2
    assert idempotency_records_prune() == 0  # idempotent
    assert set(IdempotencyRecord.objects.values_list("key", flat=True)) == {"running", "recent"}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_beat_task_prunes_on_a_worker_and_is_declared_hourly_with_expires(celery_worker):
    user = UserFactory()
    _record(user, "old", age=timedelta(hours=25))  # the default retention is 24 hours
    _record(user, "recent", age=timedelta(hours=23))

    prune_idempotency_records.delay()

    wait_for(lambda: not IdempotencyRecord.objects.filter(key="old").exists(), what="the prune task")
    assert IdempotencyRecord.objects.filter(key="recent").exists()
    (spec,) = [s for s in PERIODIC_TASKS if s.task == "core.idempotency.prune"]
    assert spec.every_seconds == 3600 and 0 < spec.expires_seconds < spec.every_seconds
