"""/healthz and /readyz, with each dependency made unreachable in turn."""

import pytest
from django.db import connection
from django.test import override_settings

from config.celery import app as celery_app
from config.settings.base import cache_from_url

UNREACHABLE_PORT = 1  # nothing listens there: connections are refused at once


def test_healthz_touches_nothing(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_ok_when_everything_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok", "cache": "ok"},
    }


@pytest.mark.django_db
def test_readyz_names_an_unreachable_broker(client, monkeypatch):
    monkeypatch.setitem(celery_app.conf, "broker_url", f"amqp://guest:guest@127.0.0.1:{UNREACHABLE_PORT}//")

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"].startswith("error:")
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["cache"] == "ok"


@pytest.mark.django_db
def test_readyz_names_an_unreachable_cache(client):
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
    assert checks["broker"] == "ok"
    assert checks["cache"] == "ok"
