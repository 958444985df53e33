"""The bookings API: idempotent creation with checkout, bad input, who sees and changes what."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from bookings import services, subscribers
from bookings.models import Booking, Resource, Service
from core.events import Event
from core.models import OutboxEvent
from payments.models import Payment
from tests.bookings.conftest import local
from tests.factories import ResourceFactory, ServiceFactory, StaffResourceFactory, UserFactory

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def create(client, body, key="k-1"):
    return client.post("/api/bookings", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def body_for(hall, start=None, hours=2, **extra):
    start = start or local(3, 10)
    return {
        "hall_id": hall.pk,
        "start": start.isoformat(),
        "end": (start + timedelta(hours=hours)).isoformat(),
        **extra,
    }


def test_create_holds_the_slot_and_opens_the_deposit_checkout(hall, customer):
    response = create(client_for(customer), body_for(hall, notes="family shoot"))

    assert response.status_code == 201, response.json()
    body = response.json()
    booking = Booking.objects.get()
    assert body["id"] == booking.public_id and body["id"].startswith("bkg_")
    assert (body["status"], body["payment_status"], body["payment_kind"]) == (
        "pending_payment",
        "unpaid",
        "deposit",
    )
    assert (body["amount_total"], body["amount_due"], body["currency"]) == ("80.00", "24.00", "EUR")
    assert (body["start"], body["end"]) == (local(3, 10).isoformat(), local(3, 12).isoformat())
    assert body["timezone"] == "Europe/Berlin" and body["notes"] == "family shoot"
    payment = body["payment"]
    assert payment["status"] == "pending" and payment["amount"] == "24.00" and payment["kind"] == "deposit"
    assert payment["checkout_url"].endswith(f"/pay/sandbox/{Payment.objects.get().gateway_reference}")


def test_a_retried_create_gets_the_first_answer_and_holds_nothing_more(hall, customer):
    client = client_for(customer)
    first = create(client, body_for(hall, payment_kind="full"))
    again = create(client, body_for(hall, payment_kind="full"))

    assert again.status_code == 201 and again["Idempotent-Replay"] == "true"
    assert again.json() == first.json()
    assert Booking.objects.count() == 1 and Payment.objects.count() == 1


def test_create_needs_an_idempotency_key_and_a_user(hall, customer):
    response = client_for(customer).post("/api/bookings", body_for(hall), format="json")
    assert response.status_code == 400 and response.json()["code"] == "idempotency_key_missing"
    assert (
        APIClient().post("/api/bookings", body_for(hall), format="json", HTTP_IDEMPOTENCY_KEY="k").status_code
        == 401
    )


def test_a_service_booking_needs_no_end(customer):
    stylist = StaffResourceFactory()
    haircut = ServiceFactory(resources=[stylist], duration_minutes=45, price="30.00")
    start = local(3, 11)
    response = create(
        client_for(customer),
        {"resource_id": stylist.pk, "service_id": haircut.pk, "start": start.isoformat()},
    )
    assert response.status_code == 201, response.json()
    assert response.json()["end"] == (start + timedelta(minutes=45)).isoformat()
    assert response.json()["amount_total"] == "30.00"


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"start": local(3, 10, 5).isoformat()}, 400, "invalid", "start"),
        ({"start": "soon"}, 400, "invalid", "start"),
        ({"end": local(3, 9).isoformat()}, 400, "invalid", "end"),
        ({"end": local(3, 20).isoformat()}, 400, "invalid", "end"),  # 10 hours > 8 allowed
        ({"hall_id": 999999}, 400, "unknown_resource", "resource_id"),
        ({"payment_kind": "later"}, 400, "invalid", "payment_kind"),
        (
            {"start": local(3, 6).isoformat(), "end": local(3, 8).isoformat()},
            422,
            "outside_opening_hours",
            None,
        ),
        ({"start": local(-2, 10).isoformat(), "end": local(-2, 11).isoformat()}, 422, "in_the_past", None),
    ],
)
def test_bad_input_gets_a_clear_error_and_holds_nothing(hall, customer, change, status, code, field):
    payload = body_for(hall) | change
    response = create(client_for(customer), payload)

    assert response.status_code == status, response.json()
    assert response.json()["code"] == code
    if field:
        assert field in response.json()["extra"]["fields"]
    assert not Booking.objects.exists() and not Payment.objects.exists()


def test_a_taken_slot_is_a_409(hall, customer):
    create(client_for(UserFactory()), body_for(hall))
    client = client_for(customer)

    response = create(client, body_for(hall, start=local(3, 11)), key="mine")

    assert response.status_code == 409 and response.json()["code"] == "slot_taken"
    assert Booking.objects.count() == 1


def test_customers_see_only_their_own_bookings_and_staff_see_all(hall, customer, staff):
    mine = services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=local(3, 10), ends_at=local(3, 11)
    )
    theirs = services.booking_hold(
        customer_id=UserFactory().pk, resource_id=hall.pk, starts_at=local(3, 12), ends_at=local(3, 13)
    )
    services.booking_cancel(booking_id=theirs.pk, actor_id=None)

    listed = client_for(customer).get("/api/bookings").json()
    assert [b["id"] for b in listed["results"]] == [mine.public_id]
    assert client_for(customer).get(f"/api/bookings/{mine.public_id}").status_code == 200
    assert client_for(customer).get(f"/api/bookings/{theirs.public_id}").status_code == 404
    assert client_for(customer).delete(f"/api/bookings/{theirs.public_id}").status_code == 404
    assert client_for(staff).get("/api/bookings").json()["count"] == 2
    cancelled = client_for(staff).get("/api/bookings", {"status": "cancelled"}).json()["results"]
    assert [b["id"] for b in cancelled] == [theirs.public_id]


def test_delete_cancels_with_the_policy_and_only_staff_choose_the_refund(hall, customer):
    booking = services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=local(3, 10), ends_at=local(3, 11)
    )
    client = client_for(customer)

    refused = client.delete(f"/api/bookings/{booking.public_id}?refund=true")
    assert refused.status_code == 422 and refused.json()["code"] == "forbidden"

    response = client.delete(f"/api/bookings/{booking.public_id}", {"reason": "ill"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = client.delete(f"/api/bookings/{booking.public_id}")
    assert again.status_code == 200  # a repeated cancel is a no-op


def test_confirm_complete_and_no_show_are_for_staff(hall, customer, staff):
    booking = services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=local(3, 10), ends_at=local(3, 11)
    )
    url = f"/api/bookings/{booking.public_id}"

    assert client_for(customer).post(f"{url}/confirm", {}, format="json").status_code == 403
    confirmed = client_for(staff).post(f"{url}/confirm", {"paid_in_cash": True}, format="json")
    assert confirmed.status_code == 200
    assert (confirmed.json()["status"], confirmed.json()["payment_status"]) == ("confirmed", "paid")
    assert client_for(customer).post(f"{url}/complete", {}, format="json").status_code == 403
    assert client_for(staff).post(f"{url}/no-show", {}, format="json").json()["status"] == "no_show"
    conflict = client_for(staff).post(f"{url}/complete", {}, format="json")
    assert conflict.status_code == 409 and conflict.json()["code"] == "transition_not_allowed"


def test_resources_are_listed_with_hours_and_services():
    hall = ResourceFactory(hours=[(0, "09:00", "13:00"), (0, "14:00", "00:00")])
    stylist = StaffResourceFactory()
    ServiceFactory(resources=[stylist], name="Cut", price="30.00")
    ResourceFactory(active=False)

    body = APIClient().get("/api/bookings/resources").json()

    by_id = {r["id"]: r for r in body["results"]}
    assert set(by_id) == {hall.pk, stylist.pk}
    assert by_id[hall.pk]["price_per_hour"] == "40.00"
    assert by_id[hall.pk]["opening_hours"] == [
        {"weekday": 0, "opens": "09:00:00", "closes": "13:00:00"},
        {"weekday": 0, "opens": "14:00:00", "closes": "00:00:00"},
    ]
    assert [s["name"] for s in by_id[stylist.pk]["services"]] == ["Cut"]


def test_every_bookings_endpoint_is_in_the_schema(client):
    paths = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/json").content)["paths"]
    assert {"get", "post"} <= set(paths["/api/bookings"])
    assert {"get", "delete"} <= set(paths["/api/bookings/{booking_id}"])
    for path in [
        "/api/bookings/{booking_id}/confirm",
        "/api/bookings/{booking_id}/complete",
        "/api/bookings/{booking_id}/no-show",
    ]:
        assert "post" in paths[path]
    assert "get" in paths["/api/bookings/availability"]
    assert "get" in paths["/api/bookings/resources"]
    params = {p["name"] for p in paths["/api/bookings/availability"]["get"]["parameters"]}
    assert {"hall_id", "start_date", "end_date", "service_id"} <= params


def test_a_gateway_that_is_down_is_a_503_and_the_retry_opens_the_same_bookings_checkout(
    hall, customer, monkeypatch
):
    from payments.gateways.base import GatewayError
    from payments.gateways.sandbox import SandboxGateway

    real = SandboxGateway.create_checkout

    def down(self, request):
        raise GatewayError("sandbox: connection reset", transient=True)

    monkeypatch.setattr(SandboxGateway, "create_checkout", down)
    client = client_for(customer)
    first = create(client, body_for(hall))
    assert first.status_code == 503 and first.json()["code"] == "gateway_unavailable"
    assert Booking.objects.get().status == "pending_payment"

    monkeypatch.setattr(SandboxGateway, "create_checkout", real)
    again = create(client, body_for(hall))
    assert again.status_code == 201 and again.json()["id"] == Booking.objects.get().public_id
    assert again.json()["payment"]["status"] == "pending"


def test_a_gateway_that_refuses_is_a_422_and_releases_the_slot(hall, customer, monkeypatch):
    from payments.gateways.base import GatewayError
    from payments.gateways.sandbox import SandboxGateway

    def refuse(self, request):
        raise GatewayError("sandbox: currency not accepted", transient=False, code="currency")

    monkeypatch.setattr(SandboxGateway, "create_checkout", refuse)
    response = create(client_for(customer), body_for(hall))

    assert response.status_code == 422 and response.json()["code"] == "gateway_refused"
    booking = Booking.objects.get()
    assert booking.payment.status == "cancelled"
    (event,) = OutboxEvent.objects.filter(type="payment.cancelled")
    assert event.data["reason"] == "gateway_refused"
    subscribers.booking_on_payment_cancelled(Event.from_envelope(event.envelope))  # as the worker would
    booking.refresh_from_db()
    assert booking.status == "expired"


# --- input at the edges: 4xx, never 500 --------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"hall_id": 0}, 400, "invalid", "hall_id"),  # was a KeyError
        ({"hall_id": 2**70}, 400, "invalid", "hall_id"),
        ({"start": "0001-01-01T00:00", "end": "0001-01-01T02:00"}, 422, "in_the_past", None),
        ({"start": "0001-01-01T00:00+14:00", "end": "0001-01-01T02:00+14:00"}, 422, "in_the_past", None),
        ({"start": "9999-12-31T22:00", "end": "9999-12-31T23:00"}, 422, "too_far_ahead", None),
        ({"end": "9999-12-31T23:45-10:00"}, 400, "invalid", "end"),
        ({"end": "0001-01-01T00:00"}, 400, "invalid", "end"),
    ],
)
def test_input_at_the_edges_of_the_calendar_is_refused_not_a_500(hall, customer, change, status, code, field):
    client = client_for(customer)
    client.raise_request_exception = False
    payload = {k: v for k, v in body_for(hall).items() if k != "resource_id"} | change

    response = create(client, payload)

    assert response.status_code == status, response.content[:300]
    assert response.json()["code"] == code
    if field:
        assert field in response.json()["extra"]["fields"]
    assert not Booking.objects.exists()


def test_a_service_starting_at_the_end_of_the_calendar_is_refused_not_a_500(customer):
    stylist = StaffResourceFactory()
    haircut = ServiceFactory(resources=[stylist], duration_minutes=45)
    client = client_for(customer)
    client.raise_request_exception = False

    response = create(
        client, {"resource_id": stylist.pk, "service_id": haircut.pk, "start": "9999-12-31T23:45+00:00"}
    )

    assert response.status_code == 422, response.content[:300]
    assert response.json()["code"] == "too_far_ahead"


def test_a_price_with_more_decimals_than_its_currency_never_breaks_the_resource_list():
    hall = ResourceFactory()
    stylist = StaffResourceFactory()
    ServiceFactory(resources=[stylist], name="Cut", price="30.00")
    Resource.objects.filter(pk=hall.pk).update(price_per_hour=Decimal("40.125"))  # stored before the check
    Service.objects.filter(resources=stylist).update(price=Decimal("30.005"))
    client = APIClient()
    client.raise_request_exception = False

    response = client.get("/api/bookings/resources")

    assert response.status_code == 200, response.content[:300]
    by_id = {r["id"]: r for r in response.json()["results"]}
    # Rounded as prices are charged (half up to the currency's minor unit).
    assert by_id[hall.pk]["price_per_hour"] == "40.13"
    assert by_id[stylist.pk]["services"][0]["price"] == "30.01"


@pytest.mark.parametrize(
    ("model", "fields", "field"),
    [
        (Resource, {"price_per_hour": Decimal("40.125"), "currency": "EUR"}, "price_per_hour"),
        (Resource, {"price_per_hour": Decimal("4000.5"), "currency": "JPY"}, "price_per_hour"),
        (Service, {"price": Decimal("30.001"), "currency": "USD"}, "price"),
    ],
)
def test_prices_with_more_decimals_than_their_currency_are_refused(model, fields, field):
    base = ResourceFactory.build() if model is Resource else ServiceFactory.build()
    for name, value in fields.items():
        setattr(base, name, value)
    with pytest.raises(ValidationError) as refused:
        base.full_clean(exclude=["resources"] if model is Service else None)
    assert field in refused.value.message_dict
