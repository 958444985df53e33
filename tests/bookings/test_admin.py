"""The staff admin: resources with their hours, the bookings list per resource and day, actions."""

import pytest

from bookings import services
from bookings.models import Booking, OpeningHours
from payments.models import Payment, Refund
from tests.bookings.conftest import local
from tests.factories import SuperuserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(SuperuserFactory())
    return client


@pytest.fixture
def bookings(hall, customer):
    return [
        services.booking_hold(
            customer_id=customer.pk, resource_id=hall.pk, starts_at=local(3, hour), ends_at=local(3, hour + 1)
        )
        for hour in (10, 12, 14)
    ]


def act(admin_client, action, selected):
    return admin_client.post(
        "/admin/bookings/booking/",
        {"action": action, "_selected_action": [b.pk for b in selected]},
        follow=True,
    ).content.decode()


def test_the_bookings_list_per_resource_and_day_and_a_booking_with_payment_and_audit(
    admin_client, hall, bookings
):
    day = local(3, 0)
    listing = admin_client.get(
        "/admin/bookings/booking/",
        {
            "resource__id__exact": hall.pk,
            "starts_at__day": day.day,
            "starts_at__month": day.month,
            "starts_at__year": day.year,
        },
    )
    assert listing.status_code == 200
    page = listing.content.decode()
    assert all(b.public_id in page for b in bookings)
    assert f"{local(3, 10):%Y-%m-%d %H:%M}" in page  # local times

    detail = admin_client.get(f"/admin/bookings/booking/{bookings[0].pk}/change/").content.decode()
    assert bookings[0].payment.public_id in detail
    assert "held until" in detail  # the audit trail
    assert admin_client.get(f"/admin/bookings/resource/{hall.pk}/change/").status_code == 200


def test_actions_confirm_complete_no_show_and_cancel(admin_client, bookings):
    first, second, third = bookings
    assert "3 bookings confirmed" in act(admin_client, "confirm", bookings)
    assert "1 bookings completed" in act(admin_client, "mark_completed", [first])
    assert "1 bookings marked no-show" in act(admin_client, "mark_no_show", [second])
    assert "1 bookings cancelled without a refund" in act(admin_client, "cancel_without_refund", [third])
    assert dict(Booking.objects.values_list("pk", "status")) == {
        first.pk: "completed", second.pk: "no_show", third.pk: "cancelled",
    }  # fmt: skip
    refused = act(admin_client, "cancel_with_refund", [first])
    assert "cannot go from completed to cancelled" in refused


def test_cancel_with_refund_refunds_what_was_paid_online(admin_client, bookings, celery_app_without_worker):
    booking = bookings[0]
    Payment.objects.filter(pk=booking.payment_id).update(status="succeeded")
    services.booking_apply_payment_completed(
        booking_public_id=booking.public_id, payment_public_id=booking.payment.public_id
    )

    assert "1 bookings cancelled with a refund" in act(admin_client, "cancel_with_refund", [booking])

    assert Booking.objects.get(pk=booking.pk).status == "cancelled"
    assert Refund.objects.get(payment_id=booking.payment_id).status == "pending"


def test_confirm_paid_in_cash_and_resolve_attention(admin_client, bookings):
    booking = bookings[0]
    Booking.objects.filter(pk=booking.pk).update(needs_attention=True, attention_note="check")
    act(admin_client, "confirm_paid_in_cash", [booking])
    act(admin_client, "resolve_attention", [booking])
    booking.refresh_from_db()
    assert (booking.status, booking.payment_status, booking.needs_attention) == ("confirmed", "paid", False)


def test_overlapping_opening_hours_are_refused_in_the_admin(admin_client, hall):
    OpeningHours.objects.filter(resource=hall).delete()
    form = {
        "kind": "hall", "name": hall.name, "slug": hall.slug, "timezone": "Europe/Berlin", "currency": "EUR",
        "price_per_hour": "40.00", "min_booking_minutes": 60, "max_booking_minutes": 480, "active": "on",
        "opening_hours-TOTAL_FORMS": 2, "opening_hours-INITIAL_FORMS": 0,
        "opening_hours-0-weekday": 0, "opening_hours-0-opens": "09:00", "opening_hours-0-closes": "13:00",
        "opening_hours-1-weekday": 0, "opening_hours-1-opens": "12:00", "opening_hours-1-closes": "18:00",
        "exceptions-TOTAL_FORMS": 0, "exceptions-INITIAL_FORMS": 0,
    }  # fmt: skip

    response = admin_client.post(f"/admin/bookings/resource/{hall.pk}/change/", form)

    assert response.status_code == 200 and "Opening hours of Monday overlap" in response.content.decode()
    form["opening_hours-1-opens"] = "13:00"
    form["timezone"] = "Mars/Olympus"
    assert (
        "is not an IANA time zone"
        in admin_client.post(f"/admin/bookings/resource/{hall.pk}/change/", form).content.decode()
    )
    form["timezone"] = "Europe/Berlin"
    saved = admin_client.post(f"/admin/bookings/resource/{hall.pk}/change/", form)
    assert saved.status_code == 302
    assert OpeningHours.objects.filter(resource=hall).count() == 2
