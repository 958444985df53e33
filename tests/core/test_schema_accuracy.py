"""The OpenAPI schema describes what the API answers.

Real responses of the main endpoints (successes and errors) are validated against the
schema with jsonschema, with the formats checked as OpenAPI defines them (RFC 3339: a
`date-time` or a `time` has a UTC offset); every error response of every operation is the
one Error component; examples match the schemas they illustrate; enums and nullable fields
say what the API sends. Swagger UI and ReDoc are served from drf-spectacular-sidecar.
"""

import functools
import json
import re
import uuid
from datetime import date, datetime
from urllib.parse import urlsplit

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from jsonschema import Draft202012Validator, FormatChecker
from rest_framework.test import APIClient

from bookings.models import Booking
from core import events
from payments.gateways.base import Status
from payments.models import Payment
from tests.bookings.conftest import local
from tests.contract.fixtures import example_data
from tests.factories import (
    GadgetFactory,
    ResourceFactory,
    ServiceFactory,
    StaffResourceFactory,
    SuperuserFactory,
    UserFactory,
)
from tests.orders.factories import CategoryFactory, VariantFactory
from tests.orders.helpers import checkout, gateway_reports

ERROR_REF = {"$ref": "#/components/schemas/Error"}
JSON = "application/json"


@functools.cache
def openapi() -> dict:
    """The schema /api/schema/ serves, as JSON data."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(schema))


def to_json_schema(node):
    """OpenAPI 3.0's `nullable: true` as JSON Schema's null type; the rest as it is."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: to_json_schema(value) for key, value in node.items() if key != "nullable"}
    return {"anyOf": [converted, {"type": "null"}]} if node.get("nullable") else converted


# The formats as OpenAPI defines them (RFC 3339, RFC 4122, RFC 3986), not jsonschema's defaults
# (whose `time` is draft 3's "HH:MM:SS" without an offset).
FORMATS = FormatChecker(formats=())
_OFFSET = r"(Z|z|[+-][0-9]{2}:[0-9]{2})"
_FULL_TIME = rf"[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(\.[0-9]+)?{_OFFSET}"


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value) -> bool:
    if not isinstance(value, str):
        return True
    if not re.fullmatch(rf"[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}[Tt]{_FULL_TIME}", value):
        return False
    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return True


@FORMATS.checks("time")
def _time(value) -> bool:
    return not isinstance(value, str) or bool(re.fullmatch(_FULL_TIME, value))


@FORMATS.checks("date", raises=ValueError)
def _date(value) -> bool:
    if not isinstance(value, str):
        return True
    return bool(re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value)) and bool(date.fromisoformat(value))


@FORMATS.checks("uuid", raises=ValueError)
def _uuid(value) -> bool:
    return not isinstance(value, str) or str(uuid.UUID(value)) == value.lower()


@FORMATS.checks("uri")
def _uri(value) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc)


def schema_errors(schema: dict, instance) -> list[str]:
    root = {**to_json_schema(schema), "components": to_json_schema(openapi()["components"])}
    validator = Draft202012Validator(root, format_checker=FORMATS)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


def operation(path: str, method: str) -> dict:
    return openapi()["paths"][path][method.lower()]


def assert_matches_schema(response, path: str, method: str) -> None:
    """The response's status is documented for the operation, and its body matches that schema."""
    responses = operation(path, method)["responses"]
    status = str(response.status_code)
    assert status in responses, f"{method} {path} answered {status}, which its schema does not list"
    content = responses[status].get("content")
    if content is None:
        assert not response.content, f"{method} {path} {status} has a body its schema does not describe"
        return
    errors = schema_errors(content[JSON]["schema"], response.json())
    assert not errors, f"{method} {path} {status}: {errors}\n{response.json()}"


def all_operations():
    for path, operations in openapi()["paths"].items():
        for method, op in operations.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield path, method, op


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def key() -> str:
    return str(uuid.uuid4())


# --- the schema itself ------------------------------------------------------------------------
def _enum(component: str, field: str) -> list[str]:
    schemas = openapi()["components"]["schemas"]
    prop = schemas[component]["properties"][field]
    ref = prop.get("$ref") or prop["allOf"][0]["$ref"]
    return schemas[ref.rsplit("/", 1)[1]]["enum"]


def test_a_payments_status_is_documented_with_the_payment_status_enum():
    assert _enum("Payment", "status") == list(Payment.Status.values)
    assert _enum("PaymentQueued", "status") == list(Payment.Status.values)
    assert _enum("Booking", "payment_status") == list(Booking.PaymentStatus.values)
    assert _enum("Booking", "status") == list(Booking.Status.values)


@pytest.mark.parametrize(
    ("component", "field"),
    [
        ("Cart", "currency"),
        ("Cart", "total"),
        ("Resource", "price_per_hour"),
        ("Category", "parent"),
        ("Product", "min_price"),
        ("Order", "payment"),
        ("Booking", "payment"),
    ],
)
def test_fields_that_can_be_null_are_nullable(component, field):
    assert openapi()["components"]["schemas"][component]["properties"][field].get("nullable") is True


def test_opening_hours_are_documented_as_the_wall_times_they_are():
    hours = openapi()["components"]["schemas"]["OpeningHours"]["properties"]

    for field in ("opens", "closes"):
        assert "format" not in hours[field]  # `time` would promise a UTC offset
        assert not schema_errors(hours[field], "09:00:00")
        assert schema_errors(hours[field], "9:00")
    assert not FORMATS.conforms("09:00:00", "time")  # what `format: time` promised before


def test_the_error_component_is_code_message_and_extra():
    error = openapi()["components"]["schemas"]["Error"]

    assert set(error["required"]) == {"code", "message", "extra"}
    assert error["properties"]["extra"]["type"] == "object"


def test_every_error_response_of_every_operation_is_the_error_component():
    checked = 0
    for path, method, op in all_operations():
        for status, response in op["responses"].items():
            if int(status) >= 400:
                assert response["content"][JSON]["schema"] == ERROR_REF, (path, method, status)
                assert response["description"], (path, method, status)
                checked += 1
    assert checked > 100


MACHINE_WEBHOOKS = ("/api/payments/webhook/", "/api/notifications/webhooks/")


def test_errors_that_follow_from_an_operation_are_documented():
    for path, method, op in all_operations():
        statuses = set(op["responses"])
        locations = {p["in"] for p in op.get("parameters", [])}
        if "path" in locations:
            assert "404" in statuses, (path, method)
        if "requestBody" in op:
            assert {"400", "413", "415"} <= statuses, (path, method)
        if "query" in locations or "header" in locations:
            assert "400" in statuses, (path, method)
        if not path.startswith(MACHINE_WEBHOOKS):  # providers authenticate in their own way, unthrottled
            assert {"401", "429"} <= statuses, (path, method)


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/api/checkout", "post", {"409", "422", "503"}),
        ("/api/orders/{number}/cancel", "post", {"409", "422"}),
        ("/api/orders/{number}/pay", "post", {"409", "422", "503"}),
        ("/api/orders/{number}/fulfil", "post", {"403", "409"}),
        ("/api/payments", "post", {"409", "422", "503"}),
        ("/api/payments/batch", "post", {"409", "422", "503"}),
        ("/api/payments/{payment_id}/refund", "post", {"403", "409", "422"}),
        ("/api/bookings", "post", {"409", "422", "503"}),
        ("/api/bookings/{booking_id}", "delete", {"400", "409", "422"}),
        ("/api/bookings/{booking_id}/confirm", "post", {"403", "409", "422"}),
        ("/api/cart/items", "post", {"422"}),
        ("/api/auth/register", "post", {"422"}),
        ("/api/integrations/events", "get", {"400", "403"}),
    ],
)
def test_business_errors_are_documented(path, method, statuses):
    assert statuses <= set(operation(path, method)["responses"])


def test_every_example_matches_the_schema_it_illustrates():
    checked = 0
    for path, method, op in all_operations():
        request = op.get("requestBody", {}).get("content", {}).get(JSON, {})
        for name, example in request.get("examples", {}).items():
            assert not schema_errors(request["schema"], example["value"]), (path, method, name)
            checked += 1
        for status, response in op["responses"].items():
            content = response.get("content", {}).get(JSON, {})
            for name, example in content.get("examples", {}).items():
                assert not schema_errors(content["schema"], example["value"]), (path, method, status, name)
                checked += 1
    assert checked >= 15


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/checkout", "post"),
        ("/api/payments", "post"),
        ("/api/payments/batch", "post"),
        ("/api/payments/{payment_id}/refund", "post"),
        ("/api/bookings", "post"),
    ],
)
def test_the_main_writes_have_request_and_response_examples(path, method):
    op = operation(path, method)
    success = next(status for status in op["responses"] if status.startswith("2"))

    assert op["requestBody"]["content"][JSON]["examples"]
    assert op["responses"][success]["content"][JSON]["examples"]


def test_the_events_list_is_paged_by_cursor():
    op = operation("/api/integrations/events", "get")
    names = {p["name"] for p in op["parameters"]}
    page = openapi()["components"]["schemas"]["PaginatedEventList"]

    assert {"cursor", "limit", "ordering"} <= names
    assert "offset" not in names
    assert "count" not in page["properties"]


def test_the_schema_builds_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))


# --- real responses -------------------------------------------------------------------------
@pytest.mark.django_db
def test_catalogue_responses_match_the_schema():
    parent = CategoryFactory()
    child = CategoryFactory(parent=parent)
    VariantFactory(product__category=child)
    anonymous = APIClient()

    categories = anonymous.get("/api/categories")
    assert sorted((c["parent"] or "") for c in categories.json()) == ["", parent.slug]
    assert_matches_schema(categories, "/api/categories", "get")
    products = anonymous.get("/api/products")
    assert_matches_schema(products, "/api/products", "get")
    slug = products.json()["results"][0]["slug"]
    assert_matches_schema(anonymous.get(f"/api/products/{slug}"), "/api/products/{slug}", "get")
    assert_matches_schema(anonymous.get("/api/products/none-such"), "/api/products/{slug}", "get")
    assert_matches_schema(anonymous.get("/api/products?in_stock=maybe"), "/api/products", "get")


@pytest.mark.django_db
def test_resources_with_opening_hours_and_no_price_match_the_schema():
    ServiceFactory(resources=[StaffResourceFactory()])
    ResourceFactory(hours=[(0, "09:00", "13:00"), (0, "14:00", "00:00")])

    response = APIClient().get("/api/bookings/resources")

    assert {r["price_per_hour"] for r in response.json()["results"]} == {None, "40.00"}
    assert_matches_schema(response, "/api/bookings/resources", "get")


@pytest.mark.django_db
def test_cart_checkout_and_orders_match_the_schema():
    customer = UserFactory()
    client = client_for(customer)

    empty = client.get("/api/cart")
    assert (empty.json()["total"], empty.json()["currency"]) == (None, None)
    assert_matches_schema(empty, "/api/cart", "get")
    assert_matches_schema(
        client.post("/api/checkout", {}, HTTP_IDEMPOTENCY_KEY=key()), "/api/checkout", "post"
    )
    added = client.post("/api/cart/items", {"variant_id": VariantFactory().pk, "quantity": 2})
    assert_matches_schema(added, "/api/cart/items", "post")
    assert_matches_schema(client.post("/api/cart/items", {"variant_id": "x"}), "/api/cart/items", "post")
    created = checkout(client)
    assert_matches_schema(created, "/api/checkout", "post")
    number = created.json()["number"]
    assert_matches_schema(client.get("/api/orders"), "/api/orders", "get")
    assert_matches_schema(client.get(f"/api/orders/{number}"), "/api/orders/{number}", "get")
    assert_matches_schema(client.get(f"/api/orders/{number}/audit"), "/api/orders/{number}/audit", "get")
    assert_matches_schema(client.post(f"/api/orders/{number}/fulfil"), "/api/orders/{number}/fulfil", "post")
    cancelled = client.post(f"/api/orders/{number}/cancel", {"reason": "changed my mind"})
    assert_matches_schema(cancelled, "/api/orders/{number}/cancel", "post")
    again = client.post(f"/api/orders/{number}/pay", {}, HTTP_IDEMPOTENCY_KEY=key())
    assert again.status_code == 422
    assert_matches_schema(again, "/api/orders/{number}/pay", "post")
    assert_matches_schema(APIClient().get("/api/orders"), "/api/orders", "get")


@pytest.mark.django_db
def test_payments_and_refunds_match_the_schema():
    customer = UserFactory()
    client = client_for(customer)
    gadgets = [GadgetFactory(customer=customer) for _ in range(3)]

    created = client.post(
        "/api/payments", {"purpose": "gadget", "purpose_id": gadgets[0].code}, HTTP_IDEMPOTENCY_KEY=key()
    )
    assert_matches_schema(created, "/api/payments", "post")
    refused = client.post(
        "/api/payments", {"purpose": "gadget", "purpose_id": "nope"}, HTTP_IDEMPOTENCY_KEY=key()
    )
    assert refused.status_code == 422
    assert_matches_schema(refused, "/api/payments", "post")
    priced = client.post(
        "/api/payments", {"purpose": "gadget", "purpose_id": "x", "amount": "1"}, HTTP_IDEMPOTENCY_KEY=key()
    )
    assert_matches_schema(priced, "/api/payments", "post")
    batch = client.post(
        "/api/payments/batch",
        {"purpose": "gadget", "item_ids": [g.code for g in gadgets[1:]]},
        HTTP_IDEMPOTENCY_KEY=key(),
    )
    assert_matches_schema(batch, "/api/payments/batch", "post")
    payment_id = created.json()["id"]
    assert_matches_schema(client.get("/api/payments"), "/api/payments", "get")
    assert_matches_schema(client.get(f"/api/payments/{payment_id}"), "/api/payments/{payment_id}", "get")
    assert_matches_schema(client.get("/api/payments/pay_none"), "/api/payments/{payment_id}", "get")

    gateway_reports(Payment.objects.get(public_id=payment_id), Status.SUCCEEDED)
    staff = client_for(SuperuserFactory())
    path = f"/api/payments/{payment_id}/refund"
    refund = staff.post(path, {"amount": "20.00", "reason": "broken"}, HTTP_IDEMPOTENCY_KEY=key())
    assert refund.status_code == 202
    assert_matches_schema(refund, "/api/payments/{payment_id}/refund", "post")
    too_much = staff.post(path, {"amount": "500.00", "reason": "x"}, HTTP_IDEMPOTENCY_KEY=key())
    assert too_much.status_code == 422
    assert_matches_schema(too_much, "/api/payments/{payment_id}/refund", "post")
    assert_matches_schema(client.post(path, {"reason": "x"}), "/api/payments/{payment_id}/refund", "post")


@pytest.mark.django_db
def test_bookings_match_the_schema(celery_app_without_worker):
    hall = ResourceFactory()
    client = client_for(UserFactory())
    body = {"hall_id": hall.pk, "start": local(3, 10).isoformat(), "end": local(3, 12).isoformat()}

    created = client.post("/api/bookings", body, HTTP_IDEMPOTENCY_KEY=key())
    assert_matches_schema(created, "/api/bookings", "post")
    taken = client_for(UserFactory()).post("/api/bookings", body, HTTP_IDEMPOTENCY_KEY=key())
    assert taken.status_code == 409
    assert_matches_schema(taken, "/api/bookings", "post")
    past = client.post(
        "/api/bookings", body | {"start": local(-3, 10).isoformat()}, HTTP_IDEMPOTENCY_KEY=key()
    )
    assert_matches_schema(past, "/api/bookings", "post")
    booking_id = created.json()["id"]
    assert_matches_schema(client.get("/api/bookings"), "/api/bookings", "get")
    assert_matches_schema(client.get(f"/api/bookings/{booking_id}"), "/api/bookings/{booking_id}", "get")
    staff = client_for(SuperuserFactory())
    confirmed = staff.post(f"/api/bookings/{booking_id}/confirm", {"paid_in_cash": True})
    assert_matches_schema(confirmed, "/api/bookings/{booking_id}/confirm", "post")
    twice = staff.post(f"/api/bookings/{booking_id}/no-show", {"note": "x" * 501})
    assert_matches_schema(twice, "/api/bookings/{booking_id}/no-show", "post")
    availability = client.get(
        "/api/bookings/availability",
        {"hall_id": hall.pk, "start_date": local(3, 0).date(), "end_date": local(4, 0).date()},
    )
    assert_matches_schema(availability, "/api/bookings/availability", "get")


@pytest.mark.django_db
def test_the_events_list_matches_the_schema():
    events.publish("payment.created", example_data("payment.created", payment_id="pay_1"))
    staff = client_for(SuperuserFactory())

    assert_matches_schema(staff.get("/api/integrations/events"), "/api/integrations/events", "get")
    forbidden = client_for(UserFactory()).get("/api/integrations/events")
    assert_matches_schema(forbidden, "/api/integrations/events", "get")


# --- the documentation pages ------------------------------------------------------------------
@pytest.mark.parametrize(("path", "asset"), [("/api/docs/", "swagger-ui-dist"), ("/api/redoc/", "redoc")])
def test_the_docs_are_served_from_the_sidecar_not_a_cdn(client, path, asset):
    response = client.get(path)
    page = response.content.decode()

    assert response.status_code == 200
    assert f"/static/drf_spectacular_sidecar/{asset}/" in page
    assert not re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page)  # nothing from another site
    assert "@latest" not in page
    for static in re.findall(r"/static/(drf_spectacular_sidecar/[^\"'?]+)", page):
        assert finders.find(static), static


def test_swagger_ui_asks_no_validator_elsewhere(client):
    script = client.get("/api/docs/", {"script": ""}).content.decode()

    assert '"validatorUrl": null' in script


@pytest.mark.django_db
def test_webhook_refusals_match_the_schema(client):
    bad_signature = client.post(
        "/api/payments/webhook/sandbox", b'{"reference": "x"}', content_type="application/json"
    )
    unknown = client.post("/api/payments/webhook/nope", b"{}", content_type="application/json")

    assert (bad_signature.status_code, unknown.status_code) == (400, 404)
    assert_matches_schema(bad_signature, "/api/payments/webhook/{gateway}", "post")
    assert_matches_schema(unknown, "/api/payments/webhook/{gateway}", "post")
