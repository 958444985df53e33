"""End to end with a real worker on RabbitMQ, everything after the request through events:
availability -> booking -> sandbox deposit payment -> confirmed -> full refund -> cancelled."""

from datetime import timedelta

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from bookings.models import Booking, BookingAudit
from core.models import DeadLetter, OutboxEvent
from payments.models import Payment
from tests.bookings.conftest import local
from tests.conftest import wait_for
from tests.factories import ResourceFactory, StaffFactory, UserFactory

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def site(live_server):
    with override_settings(SITE_URL=live_server.url):
        yield live_server


def as_user(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def booking_events(booking: Booking) -> list[str]:
    return list(
        OutboxEvent.objects.filter(aggregate_id=booking.public_id)
        .order_by("seq")
        .values_list("type", flat=True)
    )


def test_availability_booking_deposit_confirmed_refund_cancelled(site, celery_worker, client):
    hall = ResourceFactory()
    customer, staff = UserFactory(), StaffFactory()
    start = local(5, 14)
    day = start.date().isoformat()
    availability = {"hall_id": hall.pk, "start_date": day, "end_date": day}

    free = as_user(customer).get("/api/bookings/availability", availability).json()["days"][0]
    assert start.isoformat() in free["starts"]

    created = as_user(customer).post(
        "/api/bookings",
        {"hall_id": hall.pk, "start": start.isoformat(), "end": (start + timedelta(hours=3)).isoformat()},
        format="json",
        HTTP_IDEMPOTENCY_KEY="e2e-1",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    booking = Booking.objects.get(public_id=body["id"])
    assert (body["amount_total"], body["amount_due"]) == ("120.00", "36.00")

    taken = as_user(customer).get("/api/bookings/availability", availability).json()["days"][0]
    assert start.isoformat() not in taken["starts"]
    assert (start + timedelta(hours=2, minutes=45)).isoformat() not in taken["starts"]

    # The customer pays the deposit on the sandbox page; its signed webhook comes back to the site.
    page = body["payment"]["checkout_url"].removeprefix(site.url)
    assert b"36.00 EUR" in client.get(page).content
    client.post(page, {"action": "pay"})

    confirmed = wait_for(
        lambda: Booking.objects.filter(pk=booking.pk, status="confirmed").first(),
        timeout=30,
        what="payment.completed to confirm the booking",
    )
    assert confirmed.payment_status == "deposit_paid"

    # Staff refund the payment in full at the payments API: payment.refunded cancels the booking.
    refund = as_user(staff).post(
        f"/api/payments/{body['payment']['id']}/refund",
        {"reason": "studio flooded"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="e2e-refund",
    )
    assert refund.status_code == 202, refund.json()
    cancelled = wait_for(
        lambda: Booking.objects.filter(pk=booking.pk, status="cancelled", payment_status="refunded").first(),
        timeout=30,
        what="payment.refunded to cancel the booking",
    )

    assert Payment.objects.get(pk=cancelled.payment_id).status == "refunded"
    assert booking_events(booking) == ["booking.created", "booking.confirmed", "booking.cancelled"]
    trail = list(BookingAudit.objects.filter(booking=booking).values_list("source", "to_status"))
    assert trail == [("customer", "pending_payment"), ("payment", "confirmed"), ("payment", "cancelled")]
    freed = as_user(customer).get("/api/bookings/availability", availability).json()["days"][0]
    assert start.isoformat() in freed["starts"]
    assert not DeadLetter.objects.exists()


def test_a_declined_payment_keeps_the_error_on_the_booking(site, celery_worker, client):
    hall = ResourceFactory()
    start = local(5, 10)
    body = (
        as_user(UserFactory())
        .post(
            "/api/bookings",
            {"hall_id": hall.pk, "start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()},
            format="json",
            HTTP_IDEMPOTENCY_KEY="e2e-2",
        )
        .json()
    )

    client.post(body["payment"]["checkout_url"].removeprefix(site.url), {"action": "decline"})

    failed = wait_for(
        lambda: Booking.objects.filter(public_id=body["id"], payment_status="failed").first(),
        timeout=30,
        what="payment.failed to reach the booking",
    )
    assert failed.status == "pending_payment"
    assert failed.payment_error == "Declined by the customer on the sandbox page"
