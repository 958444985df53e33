"""/healthz and /readyz, with each dependency made unreachable in turn."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from config.celery import app as celery_app
from config.settings.base import cache_from_url
from core.models import Heartbeat
from core.services import BEAT_HEARTBEAT, heartbeat_record

UNREACHABLE_PORT = 1  # nothing listens there: connections are refused at once


@pytest.fixture
def beating(db):
    """A worker recorded beat's heartbeat a moment ago."""
    return heartbeat_record(name=BEAT_HEARTBEAT)


def test_healthz_touches_nothing(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_ok_when_everything_answers(client, beating):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok", "cache": "ok", "heartbeat": "ok"},
    }


def test_readyz_names_a_stale_heartbeat_and_its_age(client, beating, settings):
    settings.HEARTBEAT_STALE_SECONDS = 120
    Heartbeat.objects.filter(pk=beating.pk).update(last_seen=timezone.now() - timedelta(seconds=300))

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["heartbeat"].startswith("error: stale: the last heartbeat is 300s old")
    assert "HEARTBEAT_STALE_SECONDS=120" in body["checks"]["heartbeat"]
    assert {body["checks"][name] for name in ("database", "broker", "cache")} == {"ok"}


def test_readyz_within_the_threshold_is_ready(client, beating, settings):
    settings.HEARTBEAT_STALE_SECONDS = 120
    Heartbeat.objects.filter(pk=beating.pk).update(last_seen=timezone.now() - timedelta(seconds=100))

    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db
def test_readyz_is_not_ready_before_the_first_heartbeat(client):
    heartbeat_record(name="roundtrip")  # `manage.py celery_roundtrip`'s probe does not count

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["heartbeat"].startswith("error: no heartbeat yet")


def test_readyz_names_an_unreachable_broker(client, monkeypatch, beating):
    monkeypatch.setitem(celery_app.conf, "broker_url", f"amqp://guest:guest@127.0.0.1:{UNREACHABLE_PORT}//")

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"].startswith("error:")
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["cache"] == "ok"


def test_readyz_names_an_unreachable_cache(client, beating):
    with override_settings(CACHES={"default": cache_from_url(f"redis://127.0.0.1:{UNREACHABLE_PORT}/0")}):
        response = client.get("/readyz")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["cache"].startswith("error:")
    assert checks["database"] == "ok"
    assert checks["broker"] == "ok"


def test_readyz_names_an_unreachable_database(client, django_db_blocker):
    with django_db_blocker.unblock():
        connection.close()
        real_port = connection.settings_dict["PORT"]
        connection.settings_dict["PORT"] = UNREACHABLE_PORT
        try:
            response = client.get("/readyz")
        finally:
            connection.close()
            connection.settings_dict["PORT"] = real_port

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"].startswith("error: OperationalError")
    assert checks["heartbeat"].startswith("error: OperationalError")  # read from the database too
    assert checks["broker"] == "ok"
    assert checks["cache"] == "ok"
