"""The OpenAPI schema, the docs page, the admin, request ids and JSON logs."""

import json
import logging

import pytest

from core.logging import ContextFilter, request_id_var
from tests.factories import SuperuserFactory


def test_schema_lists_every_endpoint(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    for path in [
        "/api/auth/register",
        "/api/auth/token",
        "/api/auth/me",
        "/api/integrations/events",
        "/api/payments",
        "/api/payments/{payment_id}",
        "/api/payments/{payment_id}/process",
        "/api/payments/{payment_id}/refund",
        "/api/payments/webhook/{gateway}",
    ]:
        assert path in paths


def test_swagger_ui_is_served(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


@pytest.mark.django_db
def test_admin_carries_the_project_name(client):
    staff = SuperuserFactory()
    client.force_login(staff)

    response = client.get("/admin/")

    assert response.status_code == 200
    assert b"Fulfil administration" in response.content


def test_request_id_is_echoed_or_made(client):
    given = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    made = client.get("/healthz", HTTP_X_REQUEST_ID="bad id with spaces")

    assert given["X-Request-ID"] == "abc-123"
    assert len(made["X-Request-ID"]) == 32


def test_log_records_are_one_json_line_with_the_request_id(capsys):
    from django.conf import settings
    from pythonjsonlogger.json import JsonFormatter

    formatter_conf = settings.LOGGING["formatters"]["json"]
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(formatter_conf["fmt"], rename_fields=formatter_conf["rename_fields"]))
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("tests.json")
    logger.addHandler(handler)
    token = request_id_var.set("req-42")
    try:
        logger.warning("payment %s verified", "pay_1", extra={"payment_id": "pay_1"})
    finally:
        request_id_var.reset(token)
        logger.removeHandler(handler)

    (line,) = capsys.readouterr().err.strip().splitlines()
    record = json.loads(line)
    assert record["message"] == "payment pay_1 verified"
    assert record["request_id"] == "req-42"
    assert record["level"] == "WARNING"
    assert record["payment_id"] == "pay_1"
