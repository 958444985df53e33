"""The staff admin for bookings: resources with their hours, the list and its CSV, read-only
booking pages whose buttons call the services (asking first where money is at stake), and
the day calendar per resource."""

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission

from bookings import services
from bookings.models import Booking, OpeningHours
from bookings.resources import BookingResource
from payments.models import Payment, Refund
from tests.bookings.conftest import local
from tests.factories import ResourceFactory, StaffFactory, SuperuserFactory
from tests.orders.test_admin import export_csv

pytestmark = pytest.mark.django_db
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def admin_client(client):
    client.force_login(SuperuserFactory())
    return client


def hold(resource, customer, start, hours: int = 1) -> Booking:
    return services.booking_hold(
        customer_id=customer.pk,
        resource_id=resource.pk,
        starts_at=start,
        ends_at=start + timedelta(hours=hours),
    )


@pytest.fixture
def bookings(hall, customer):
    return [hold(hall, customer, local(3, hour)) for hour in (10, 12, 14)]


def paid(booking: Booking) -> Booking:
    """Its online deposit succeeded and the booking took it (as payment.completed does)."""
    Payment.objects.filter(pk=booking.payment_id).update(status="succeeded")
    services.booking_apply_payment_completed(
        booking_public_id=booking.public_id, payment_public_id=booking.payment.public_id
    )
    return Booking.objects.get(pk=booking.pk)


def page(client, booking: Booking) -> str:
    response = client.get(f"/admin/bookings/booking/{booking.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def press(client, booking: Booking, action: str, data=None) -> str:
    url = f"/admin/bookings/booking/{booking.pk}/actions/{action}/"
    return client.post(url, data or {}, follow=True).content.decode()


def buttons(html: str) -> set[str]:
    return set(re.findall(r"/admin/bookings/booking/\d+/actions/(\w+)/", html))


def status(booking: Booking) -> str:
    return Booking.objects.get(pk=booking.pk).status


def test_the_list_per_resource_and_day_with_local_times_and_amounts(admin_client, hall, bookings):
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
    html = listing.content.decode()
    assert all(b.public_id in html for b in bookings)
    assert f"{local(3, 10):%Y-%m-%d %H:%M}-11:00" in html  # on the resource's wall clock
    assert "40.00 EUR" in html and "12.00 EUR (deposit)" in html and "40.000" not in html
    assert "/admin/bookings/booking/calendar/" in html  # the list links to the calendar
    confirmed_only = admin_client.get("/admin/bookings/booking/?status__exact=confirmed").content.decode()
    assert bookings[0].public_id not in confirmed_only
    assert bookings[0].public_id in admin_client.get("/admin/bookings/booking/?when=week").content.decode()
    assert (
        bookings[0].public_id not in admin_client.get("/admin/bookings/booking/?when=past").content.decode()
    )


def test_the_booking_page_is_read_only_with_payment_audit_and_the_buttons_that_apply(
    admin_client, hall, bookings
):
    html = page(admin_client, bookings[0])
    assert 'name="_save"' not in html
    assert bookings[0].payment.public_id in html and "held until" in html  # payment and audit trail
    assert f"/admin/bookings/booking/calendar/?resource={hall.pk}&amp;date={local(3, 0):%Y-%m-%d}" in html
    assert buttons(html) == {"confirm", "confirm_paid_in_cash", "cancel"}  # nothing paid: no refund choice
    assert admin_client.get(f"/admin/bookings/resource/{hall.pk}/change/").status_code == 200


def test_confirm_complete_and_no_show_buttons_and_a_refusal_shown_as_a_message(admin_client, bookings):
    first, second, _ = bookings
    assert "confirmed." in press(admin_client, first, "confirm")
    assert status(first) == "confirmed"
    assert {"mark_completed", "mark_no_show", "cancel"} <= buttons(page(admin_client, first))

    press(admin_client, first, "mark_completed")
    assert status(first) == "completed"
    refused = press(admin_client, second, "mark_no_show")  # still pending payment
    assert "A booking cannot go from pending_payment to no_show." in refused
    assert status(second) == "pending_payment"
    refused = admin_client.post(
        f"/admin/bookings/booking/{first.pk}/actions/cancel/", {"reason": "x"}, follow=True
    ).content.decode()
    assert "A booking cannot go from completed to cancelled." in refused


def test_cancel_per_policy_asks_first_then_refunds_what_was_paid_online(
    admin_client, bookings, celery_app_without_worker
):
    booking = paid(bookings[0])  # three days ahead: a free cancellation
    assert {"cancel", "cancel_without_refund", "cancel_with_refund"} <= buttons(page(admin_client, booking))
    url = f"/admin/bookings/booking/{booking.pk}/actions/cancel/"

    asked = admin_client.get(url).content.decode()
    assert "is refunded in full" in asked and "12.00 EUR" in asked and 'name="reason"' in asked
    assert status(booking) == "confirmed" and not Refund.objects.exists()

    done = admin_client.post(url, {"reason": "studio flooded"}, follow=True).content.decode()

    assert f"Booking {booking.public_id} cancelled." in done
    assert status(booking) == "cancelled"
    assert Refund.objects.get(payment_id=booking.payment_id).status == "pending"
    assert "studio flooded" in booking.audit.last().note


def test_cancel_without_refund_keeps_the_money(admin_client, bookings):
    booking = paid(bookings[0])
    asked = admin_client.get(f"/admin/bookings/booking/{booking.pk}/actions/cancel_without_refund/")
    assert "nothing is refunded" in asked.content.decode()

    press(admin_client, booking, "cancel_without_refund")

    assert status(booking) == "cancelled" and not Refund.objects.exists()
    assert "no refund (staff decision)" in booking.audit.last().note


def test_within_the_notice_staff_may_refund_in_full_anyway(
    admin_client, bookings, settings, celery_app_without_worker
):
    settings.BOOKING_FREE_CANCEL_HOURS = 24 * 7
    booking = paid(bookings[0])
    per_policy = admin_client.get(f"/admin/bookings/booking/{booking.pk}/actions/cancel/").content.decode()
    assert "nothing is refunded" in per_policy

    press(admin_client, booking, "cancel_with_refund")

    assert status(booking) == "cancelled"
    assert Refund.objects.get(payment_id=booking.payment_id).status == "pending"


def test_confirm_paid_at_the_desk_and_resolve_attention_ask_first(admin_client, bookings):
    booking = bookings[0]
    Booking.objects.filter(pk=booking.pk).update(needs_attention=True, attention_note="check the deposit")
    asked = admin_client.get(f"/admin/bookings/booking/{booking.pk}/actions/confirm_paid_in_cash/")
    assert "Yes, it is paid" in asked.content.decode() and status(booking) == "pending_payment"

    press(admin_client, booking, "confirm_paid_in_cash", {"note": "paid 40 EUR cash"})
    assert (
        "check the deposit"
        in admin_client.get(
            f"/admin/bookings/booking/{booking.pk}/actions/resolve_attention/"
        ).content.decode()
    )
    press(admin_client, booking, "resolve_attention", {"note": "deposit found"})

    booking.refresh_from_db()
    assert (booking.status, booking.payment_status, booking.needs_attention) == ("confirmed", "paid", False)
    assert booking.payment.status == "expired"  # the online payment cannot take the money again
    assert booking.audit.last().note == "deposit found"


def test_bulk_actions_move_no_money(admin_client, bookings):
    first, second, third = bookings

    def bulk(action, selected):
        return admin_client.post(
            "/admin/bookings/booking/",
            {"action": action, "_selected_action": [b.pk for b in selected]},
            follow=True,
        ).content.decode()

    assert "3 bookings confirmed" in bulk("confirm_selected", bookings)
    assert "1 bookings completed" in bulk("complete_selected", [first])
    assert "1 bookings marked no-show" in bulk("no_show_selected", [second, first])  # first: refused
    assert (status(first), status(second), status(third)) == ("completed", "no_show", "confirmed")
    actions = re.findall(
        r'<option value="(\w+)"', admin_client.get("/admin/bookings/booking/").content.decode()
    )
    assert not [name for name in actions if "cancel" in name or "refund" in name]


def test_staff_without_the_change_permission_see_no_button_and_are_refused(client, bookings):
    viewer = StaffFactory()
    viewer.user_permissions.add(Permission.objects.get(codename="view_booking"))
    client.force_login(viewer)
    booking = bookings[0]

    html = page(client, booking)

    assert not buttons(html) and 'name="_save"' not in html
    assert client.post(f"/admin/bookings/booking/{booking.pk}/actions/confirm/").status_code == 403
    assert client.get(f"/admin/bookings/booking/{booking.pk}/actions/cancel/").status_code == 403
    assert status(booking) == "pending_payment"
    assert client.get("/admin/bookings/booking/calendar/").status_code == 200

    client.force_login(StaffFactory())  # no permission on bookings at all
    assert client.get("/admin/bookings/booking/calendar/").status_code == 403


def test_the_csv_export_has_the_filtered_bookings(admin_client, hall, customer, bookings):
    other = hold(ResourceFactory(), customer, local(3, 10))

    rows = export_csv(
        admin_client, "/admin/bookings/booking/", BookingResource, f"?resource__id__exact={hall.pk}"
    )

    assert [row["booking_id"] for row in rows] == [b.public_id for b in bookings]
    assert other.public_id not in {row["booking_id"] for row in rows}
    row = rows[0]
    assert (row["resource"], row["starts_at_local"], row["ends_at_local"], row["timezone"]) == (
        hall.name,
        local(3, 10).isoformat(),  # the hall's wall clock with its offset: "...T10:00:00+01:00"
        local(3, 11).isoformat(),
        "Europe/Berlin",
    )
    assert (row["customer_email"], row["status"], row["payment_kind"]) == (
        customer.email,
        "pending_payment",
        "deposit",
    )
    assert (row["amount_total"], row["amount_due"], row["currency"]) == ("40.00", "12.00", "EUR")
    assert row["payment_id"] == bookings[0].payment.public_id


def test_the_calendar_shows_a_resources_day_at_its_local_times_linked_to_the_bookings(
    admin_client, hall, customer, bookings
):
    manhattan = ResourceFactory(name="Manhattan loft", timezone="America/New_York", currency="USD")
    ny_start = datetime.combine(
        local(3, 0).date(), time(10), tzinfo=NEW_YORK
    )  # the hall's day, New York's 10:00
    ny_booking = hold(manhattan, customer, ny_start, hours=2)
    services.booking_cancel(booking_id=bookings[2].pk, actor_id=None, by_staff=True, reason="x")
    tomorrow = hold(hall, customer, local(4, 10))
    day = f"{local(3, 0):%Y-%m-%d}"

    html = admin_client.get(
        f"/admin/bookings/booking/calendar/?resource={hall.pk}&date={day}"
    ).content.decode()

    for booking in bookings:
        assert f"/admin/bookings/booking/{booking.pk}/change/" in html
    # 10:00 on the hall's wall clock: 60 px (minutes) below the grid's first hour, 09:00.
    assert re.search(
        rf'href="/admin/bookings/booking/{bookings[0].pk}/change/" style="top: 60px; height: 60px"', html
    )
    assert "10:00-11:00" in html and "12:00-13:00" in html and ">09:00<" in html
    cancelled = html.split('class="others"')[1]
    assert bookings[2].public_id in cancelled  # listed under the grid, not drawn on it
    assert ny_booking.public_id not in html and tomorrow.public_id not in html
    assert f"?resource={hall.pk}&amp;date={local(4, 0):%Y-%m-%d}" in html  # next day
    assert f"?resource={hall.pk}&amp;date={local(2, 0):%Y-%m-%d}" in html  # previous day
    assert f'<option value="{hall.pk}" selected>' in html

    every = admin_client.get(f"/admin/bookings/booking/calendar/?date={day}").content.decode()
    assert f'data-resource="{hall.pk}"' in every and f'data-resource="{manhattan.pk}"' in every
    assert "10:00-12:00" in every  # New York's booking on New York's clock
    assert re.search(
        rf'href="/admin/bookings/booking/{ny_booking.pk}/change/" style="top: 60px; height: 120px"', every
    )

    next_day = admin_client.get(
        f"/admin/bookings/booking/calendar/?resource={hall.pk}&date={local(4, 0):%Y-%m-%d}"
    )
    assert tomorrow.public_id in next_day.content.decode()
    assert admin_client.get("/admin/bookings/booking/calendar/?resource=999999").status_code == 404
    assert (
        "The date is YYYY-MM-DD"
        in admin_client.get("/admin/bookings/booking/calendar/?date=tomorrow", follow=True).content.decode()
    )


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
