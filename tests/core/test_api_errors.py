"""Every error on an /api/ path is JSON in the one shape {"code", "message", "extra"}.

Unknown URLs (404), other methods (405), bodies too large (413), other media types (415),
undecodable or malformed JSON (400) and crashes (500), inside DRF or outside it (Django's
error views); paths outside /api/ keep Django's HTML pages.
"""

import json
from unittest import mock

import pytest
from django.test import Client, RequestFactory, override_settings
from rest_framework.test import APIClient

from core import api
from tests.core.test_schema_accuracy import assert_matches_schema
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert set(body) == {"code", "message", "extra"}, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["extra"], dict)
    return body


@pytest.mark.parametrize(
    "path", ["/api/nothing-here", "/api/orders/K7Q2-M9XD/nothing", "/api/payments/pay_1/refund/x", "/api/"]
)
def test_an_unknown_url_under_api_is_a_json_404(client, path):
    body = assert_error(client.get(path), 404, "not_found")

    assert body["extra"] == {"path": path}


@pytest.mark.parametrize("debug", [False, True])
def test_an_unknown_api_url_is_json_with_debug_on_too(client, settings, debug):
    settings.DEBUG = debug  # make run's development settings have DEBUG on

    assert_error(client.get("/api/nowhere"), 404, "not_found")


@pytest.mark.parametrize("method", ["post", "patch", "delete"])
def test_an_unknown_api_url_is_a_json_404_for_a_browser_session_too(method):
    browser = Client(enforce_csrf_checks=True)
    browser.cookies["sessionid"] = "abc"  # a session cookie and no CSRF token

    assert_error(getattr(browser, method)("/api/cart/items/null,null"), 404, "not_found")


def test_an_api_address_without_its_trailing_slash_is_redirected_to_it(client):
    response = client.get("/api/docs")

    assert (response.status_code, response["Location"]) == (301, "/api/docs/")


def test_an_unknown_url_elsewhere_keeps_djangos_page(client):
    response = client.get("/nothing-here")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_an_unknown_object_is_a_json_404():
    client = APIClient()
    client.force_authenticate(UserFactory())

    response = client.get("/api/orders/NONE-SUCH")

    assert_error(response, 404, "not_found")
    assert_matches_schema(response, "/api/orders/{number}", "get")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("put", "/api/checkout", "POST"),
        ("get", "/api/auth/register", "POST"),
        ("delete", "/api/cart", "GET"),
        ("get", "/api/payments/webhook/sandbox", "POST"),
    ],
)
def test_another_method_is_a_json_405_with_allow(method, path, allowed):
    client = APIClient()
    client.force_authenticate(UserFactory())

    response = getattr(client, method)(path)

    assert_error(response, 405, "method_not_allowed")
    assert allowed in response["Allow"]


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", json.dumps({"email": "a@example.com", "password": "x" * 2000})),
        ("application/x-www-form-urlencoded", f"email=a%40example.com&password={'x' * 2000}"),
    ],
)
def test_a_body_over_the_limit_is_a_json_413(content_type, body):
    response = APIClient().post("/api/auth/token", body, content_type=content_type)

    assert_error(response, 413, "request_too_large")
    assert_matches_schema(response, "/api/auth/token", "post")


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_a_multipart_body_over_the_limit_is_a_json_413():
    response = APIClient().post(
        "/api/auth/token", {"email": "a@example.com", "password": "x" * 2000}, format="multipart"
    )

    assert_error(response, 413, "request_too_large")


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_a_webhook_over_the_limit_is_a_json_413(client):
    """The webhook view reads Django's request.body, outside DRF: Django's own check, answered as JSON."""
    response = client.post("/api/payments/webhook/sandbox", "x" * 2000, content_type="application/json")

    assert_error(response, 413, "request_too_large")
    assert_matches_schema(response, "/api/payments/webhook/{gateway}", "post")


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_a_body_within_the_limit_is_read():
    user = UserFactory()

    response = APIClient().post("/api/auth/token", {"email": user.email, "password": PASSWORD}, format="json")

    assert response.status_code == 200


def test_another_media_type_is_a_json_415():
    response = APIClient().post("/api/auth/token", "email=a", content_type="text/plain")

    body = assert_error(response, 415, "unsupported_media_type")
    assert "text/plain" in body["message"]
    assert_matches_schema(response, "/api/auth/token", "post")


@pytest.mark.parametrize(
    "body",
    [b'{"email": "a@example.com",', b"\xff\xfe\x00{", b"not json", b'{"email": NaN', b'"a string"'],
)
def test_undecodable_or_malformed_json_is_a_json_400(body):
    response = APIClient().post("/api/auth/token", body, content_type="application/json")

    assert response.status_code == 400, response.content
    assert_matches_schema(response, "/api/auth/token", "post")
    assert set(response.json()) == {"code", "message", "extra"}


def test_a_session_post_without_csrf_token_is_a_json_403():
    client = Client(enforce_csrf_checks=True)
    client.force_login(UserFactory())

    response = client.post("/api/cart/items", {"variant_id": 1}, content_type="application/json")

    assert_error(response, 403, "permission_denied")
    assert_matches_schema(response, "/api/cart/items", "post")


def test_a_crash_under_api_is_a_json_500_with_the_request_id():
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(UserFactory())

    with mock.patch("orders.selectors.orders_visible_to", side_effect=RuntimeError("boom")):
        response = client.get("/api/orders", HTTP_X_REQUEST_ID="req-500")

    body = assert_error(response, 500, "server_error")
    assert body["extra"] == {"request_id": "req-500"}
    assert "boom" not in body["message"]


def test_djangos_error_views_keep_their_pages_outside_api():
    request = RequestFactory().get("/admin/broken")

    assert api.server_error(request)["Content-Type"].startswith("text/html")
    assert api.bad_request(request, Exception())["Content-Type"].startswith("text/html")
    assert api.permission_denied(request, Exception()).status_code == 403


def test_djangos_400_and_403_under_api_are_json():
    request = RequestFactory().get("/api/orders")

    assert_error(api.bad_request(request, Exception()), 400, "bad_request")
    assert_error(api.permission_denied(request, Exception()), 403, "permission_denied")


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/", "/api/redoc/"])
def test_the_schema_and_its_pages_answer_errors_in_json(client, path):
    assert_error(client.post(path), 405, "method_not_allowed")
    assert_error(client.get(path, {"format": "xml"}), 404, "not_found")
