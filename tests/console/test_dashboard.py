"""The staff dashboard on the admin index: each figure equals a count taken straight from the
database, and its link opens the admin list of exactly those rows.

The clock is stopped at Wednesday 11 March 2026, 15:00 UTC, so that "today", "this week" and
the boundaries between them are known: this week began on Monday 9 March.
"""

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.contrib.staticfiles import finders
from django.db import connection
from django.db.models import F, Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bookings.models import Booking
from console.dashboard import CAPTURED, Dashboard
from console.figures import Figure
from core.models import DeadLetter, Heartbeat, OutboxEvent
from notifications.models import Notification
from orders.models import Order
from payments.models import Payment
from subscriptions.models import Subscription
from tests.factories import ResourceFactory, StaffFactory, SuperuserFactory, UserFactory
from tests.notifications.factories import NotificationFactory
from tests.subscriptions.factories import ChildFactory, PlanFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 11, 15, 0, tzinfo=UTC)  # a Wednesday
TODAY = datetime(2026, 3, 11, tzinfo=UTC)
WEEK = datetime(2026, 3, 9, tzinfo=UTC)  # Monday


@pytest.fixture(autouse=True)
def stopped_clock(monkeypatch):
    """timezone.now() is NOW throughout (Django's, the dashboard's and the seeding's)."""
    monkeypatch.setattr(timezone, "now", lambda: NOW)


@pytest.fixture
def staff_client(client):
    client.force_login(SuperuserFactory())
    return client


# --- seeding ----------------------------------------------------------------------------------
def payment(at: datetime, gateway: str, status: str, amount: str, currency: str, **fields) -> Payment:
    paid = Payment.objects.create(
        customer=UserFactory(),
        amount=Decimal(amount),
        currency=currency,
        gateway=gateway,
        purpose="gadget",
        deadline=at + timedelta(minutes=30),
    )
    Payment.objects.filter(pk=paid.pk).update(created_at=at, status=status, **fields)
    return paid


def seed_payments() -> None:
    today, monday = TODAY + timedelta(hours=9), WEEK + timedelta(hours=10)
    payment(today, "paystack", "succeeded", "1000.00", "NGN")
    payment(TODAY, "paystack", "succeeded", "1000.00", "NGN")  # the first instant of today
    payment(today, "paystack", "failed", "500.00", "NGN")
    payment(today, "stripe", "succeeded", "20.00", "USD")
    payment(today, "stripe", "pending", "30.00", "USD")
    payment(today, "sandbox", "partially_refunded", "50.00", "USD", refunded_amount=Decimal("20.00"))
    payment(today, "yookassa", "refunded", "300.00", "RUB", refunded_amount=Decimal("300.00"))
    payment(today, "stripe", "succeeded", "15.00", "EUR", flagged_reason="paid after it expired")
    payment(TODAY - timedelta(seconds=1), "paystack", "succeeded", "250.00", "NGN")  # yesterday, this week
    payment(monday, "paystack", "succeeded", "2500.00", "NGN")
    payment(monday, "stripe", "cancelled", "10.00", "USD")
    payment(WEEK - timedelta(minutes=30), "paystack", "succeeded", "700.00", "NGN")  # last week
    payment(TODAY - timedelta(days=40), "stripe", "succeeded", "99.00", "USD")  # before the 30 days


def seed_orders() -> None:
    for status, attention in [
        ("pending_payment", False),
        ("paid", False),
        ("paid", True),
        ("cancelled", False),
    ]:
        Order.objects.create(
            customer=UserFactory(),
            currency="USD",
            total=Decimal("10.00"),
            deadline=NOW,
            status=status,
            needs_attention=attention,
        )


def booking(resource, starts_at: datetime, status: str) -> Booking:
    return Booking.objects.create(
        resource=resource,
        customer=UserFactory(),
        starts_at=starts_at,
        ends_at=starts_at + timedelta(hours=1),
        status=status,
        payment_kind="full",
        amount_total=Decimal("40.00"),
        amount_due=Decimal("40.00"),
        currency="EUR",
    )


def seed_bookings() -> dict:
    """Berlin's today is 11 March; Kiritimati's (UTC+14) is already 12 March at 15:00 UTC."""
    berlin = ResourceFactory(name="Berlin hall")
    island = ResourceFactory(name="Island hall", timezone="Pacific/Kiritimati")
    closed = ResourceFactory(name="Closed hall", active=False)
    ResourceFactory(name="Retired hall", active=False)  # no booking today: not shown
    at = TODAY + timedelta(hours=8)  # 09:00 in Berlin
    booking(berlin, at, "confirmed")
    booking(berlin, at + timedelta(hours=2), "pending_payment")
    booking(berlin, at + timedelta(hours=2), "cancelled")
    booking(berlin, at + timedelta(days=1), "confirmed")  # tomorrow
    booking(island, NOW + timedelta(hours=4), "confirmed")  # 12 March 09:00 on the island
    booking(island, NOW - timedelta(hours=19), "completed")  # 11 March on the island: yesterday
    booking(closed, at, "no_show")
    return {"berlin": berlin, "island": island, "closed": closed}


def seed_subscriptions() -> None:
    plan = PlanFactory()
    for status, renewal in [
        ("active", NOW - timedelta(hours=1)),  # due now
        ("active", NOW + timedelta(days=3)),  # due in the next 7 days
        ("past_due", NOW + timedelta(days=6, hours=23)),  # due in the next 7 days
        ("past_due", NOW + timedelta(days=10)),
        ("paused", NOW - timedelta(days=1)),  # paused: never renewed
        ("cancelled", None),
        ("pending_payment", None),
    ]:
        child = ChildFactory()
        Subscription.objects.create(
            customer=child.customer, child=child, plan=plan, status=status, next_renewal_at=renewal
        )


def seed_operations() -> None:
    for resolved in (None, None, NOW):
        DeadLetter.objects.create(
            event_id=uuid.uuid4(),
            event_type="order.paid",
            subscriber="orders.notify",
            envelope={},
            error="boom",
            first_failed_at=NOW,
            last_failed_at=NOW,
            resolved_at=resolved,
        )
    for occurred, published in ((NOW - timedelta(seconds=90), None), (NOW - timedelta(hours=1), NOW)):
        OutboxEvent.objects.create(
            event_id=uuid.uuid4(),
            type="order.paid",
            source="orders",
            occurred_at=occurred,
            data={},
            published_at=published,
        )
    NotificationFactory(status="failed", failed_at=NOW - timedelta(hours=1))
    NotificationFactory(status="undelivered", failed_at=NOW - timedelta(hours=23))
    NotificationFactory(status="failed", failed_at=NOW - timedelta(hours=25))  # older than a day
    NotificationFactory(status="delivered")
    Heartbeat.objects.create(name="beat", last_seen=NOW - timedelta(minutes=5))
    Heartbeat.objects.create(name="roundtrip", last_seen=NOW)


@pytest.fixture
def seeded():
    seed_payments()
    seed_orders()
    resources = seed_bookings()
    seed_subscriptions()
    seed_operations()
    return resources


def dashboard_of(response) -> Dashboard:
    assert response.status_code == 200
    return response.context["console"]


def figures_of(response) -> dict[str, Figure]:
    return {f.key: f for f in dashboard_of(response).figures()}


# --- the figures ------------------------------------------------------------------------------
def test_every_figure_equals_the_database_and_links_to_exactly_its_rows(staff_client, seeded):
    response = staff_client.get("/admin/")
    page = response.content.decode()
    figures = figures_of(response)

    expected = {}  # key -> (count, amounts), taken straight from the database
    periods = {"today": (TODAY, TODAY + timedelta(days=1)), "week": (WEEK, WEEK + timedelta(days=7))}
    for period, (start, end) in periods.items():
        opened = Payment.objects.filter(created_at__gte=start, created_at__lt=end)
        for gateway in ["all", *opened.values_list("gateway", flat=True).distinct()]:
            for status in ["all", *opened.values_list("status", flat=True).distinct()]:
                rows = opened.filter(**({} if gateway == "all" else {"gateway": gateway}))
                rows = rows.filter(**({} if status == "all" else {"status": status}))
                sums = rows.values("currency").annotate(total=Sum("amount")).order_by("currency")
                expected[f"payments.{period}.{gateway}.{status}"] = (
                    rows.count(),
                    tuple(f"{s['total']:,.2f} {s['currency']}" for s in sums),
                )
    for model, key in ((Order, "orders"), (Booking, "bookings"), (Subscription, "subscriptions")):
        for status in model.Status.values:
            expected[f"{key}.{status}"] = (model.objects.filter(status=status).count(), ())
    for model, key in ((Order, "orders"), (Booking, "bookings")):
        expected[f"{key}.attention"] = (model.objects.filter(needs_attention=True).count(), ())
    renewable = Subscription.objects.filter(status__in=["active", "past_due"])
    expected["subscriptions.renewals-due"] = (renewable.filter(next_renewal_at__lte=NOW).count(), ())
    expected["subscriptions.renewals-soon"] = (
        renewable.filter(next_renewal_at__gt=NOW, next_renewal_at__lte=NOW + timedelta(days=7)).count(),
        (),
    )
    expected["ops.dead-letters"] = (DeadLetter.objects.filter(resolved_at=None).count(), ())
    expected["ops.outbox"] = (OutboxEvent.objects.filter(published_at=None).count(), ())
    expected["ops.flagged-payments"] = (Payment.objects.exclude(flagged_reason="").count(), ())
    expected["ops.notifications-failed"] = (
        Notification.objects.filter(
            status__in=["failed", "undelivered"], failed_at__gte=NOW - timedelta(days=1)
        ).count(),
        (),
    )
    expected["ops.heartbeat"] = (Heartbeat.objects.filter(name="beat").count(), ())

    for key, (count, amounts) in expected.items():
        assert (figures[key].count, figures[key].amounts) == (count, amounts), key

    # the seeded set, so that the comparisons above are not all zeros
    assert expected["payments.today.paystack.succeeded"] == (2, ("2,000.00 NGN",))
    assert expected["payments.week.paystack.succeeded"] == (4, ("4,750.00 NGN",))
    assert expected["payments.today.all.all"] == (
        8,
        ("15.00 EUR", "2,500.00 NGN", "300.00 RUB", "100.00 USD"),
    )
    assert figures["payments.today.stripe.pending"].count == 1
    assert "payments.today.all.cancelled" in figures and figures["payments.today.all.cancelled"].count == 0
    assert [f.count for k, f in figures.items() if k.startswith("orders.")] == [1, 2, 0, 1, 0, 0, 1]
    assert expected["subscriptions.renewals-due"][0] == 1 and expected["subscriptions.renewals-soon"][0] == 2
    assert (expected["ops.dead-letters"][0], expected["ops.notifications-failed"][0]) == (2, 2)

    # every figure: on the page, and its link lists exactly what it counts
    for figure in figures.values():
        assert f'data-figure="{figure.key}"' in page, figure.key
        listing = staff_client.get(figure.url)
        assert listing.status_code == 200, (figure.key, figure.url)
        assert listing.context["cl"].result_count == figure.count, (figure.key, figure.url)


def test_revenue_per_day_is_net_of_refunds_per_currency_over_30_days(staff_client, seeded):
    dashboard = dashboard_of(staff_client.get("/admin/"))
    (revenue,) = [p for p in dashboard.panels if p.key == "revenue"]
    charts = {chart.key: chart for chart in revenue.charts}
    assert list(charts) == ["NGN", "USD", "EUR", "RUB"]  # the most payments first, never summed together
    first_day = date(2026, 2, 10)
    for currency, chart in charts.items():
        assert len(chart.bars) == 30
        for offset, bar in enumerate(chart.bars):
            day = first_day + timedelta(days=offset)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            rows = Payment.objects.filter(
                status__in=CAPTURED,
                currency=currency,
                created_at__gte=start,
                created_at__lt=start + timedelta(1),
            )
            net = rows.aggregate(net=Sum(F("amount") - F("refunded_amount")))["net"] or Decimal(0)
            assert (bar.point.value, bar.point.figure.count) == (net, rows.count()), (currency, day)
            assert bar.point.figure.key == f"revenue.{currency}.{day}"
    ngn = {bar.point.figure.key: bar.point for bar in charts["NGN"].bars}
    assert ngn["revenue.NGN.2026-03-11"].value == Decimal("2000.00")
    assert ngn["revenue.NGN.2026-03-10"].value == Decimal("250.00")
    assert ngn["revenue.NGN.2026-03-08"].value == Decimal("700.00")
    assert "2,000.00 NGN net (2,000.00 NGN taken, 0.00 NGN refunded) from 2 payments" in (
        ngn["revenue.NGN.2026-03-11"].figure.label
    )
    usd_today = charts["USD"].bars[-1].point
    assert (usd_today.value, usd_today.figure.count) == (Decimal("50.00"), 2)  # 20 + (50 - 20); not pending
    assert charts["RUB"].bars[-1].point.value == 0  # refunded in full, still one payment
    assert charts["USD"].title == "USD: 50.00 USD net in 30 days"  # the 40-day-old one is left out
    # the axis goes up to 2,500 in steps of 500: Monday's 2,500 reaches the top, today's 2,000 4/5 of it
    assert [tick.label for tick in charts["NGN"].ticks] == ["0", "500", "1,000", "1,500", "2,000", "2,500"]
    assert (charts["NGN"].bars[-3].height, charts["NGN"].bars[-1].height) == ("174.0", "139.2")


def test_todays_bookings_per_resource_in_its_own_timezone(staff_client, seeded):
    response = staff_client.get("/admin/")
    figures = figures_of(response)
    berlin, island, closed = seeded["berlin"], seeded["island"], seeded["closed"]
    counted = {
        (name, status): figures[f"bookings-today.{resource.slug}.{status}"].count
        for name, resource in (("berlin", berlin), ("island", island), ("closed", closed))
        for status in ("booked", "confirmed", "pending_payment", "cancelled", "completed", "no_show")
    }
    assert counted == {
        ("berlin", "booked"): 2, ("berlin", "confirmed"): 1, ("berlin", "pending_payment"): 1,
        ("berlin", "cancelled"): 1, ("berlin", "completed"): 0, ("berlin", "no_show"): 0,
        ("island", "booked"): 1, ("island", "confirmed"): 1, ("island", "pending_payment"): 0,
        ("island", "cancelled"): 0, ("island", "completed"): 0, ("island", "no_show"): 0,
        ("closed", "booked"): 1, ("closed", "confirmed"): 0, ("closed", "pending_payment"): 0,
        ("closed", "cancelled"): 0, ("closed", "completed"): 0, ("closed", "no_show"): 1,
    }  # fmt: skip
    assert not [key for key in figures if key.startswith("bookings-today.retired")]
    (panel,) = [p for p in dashboard_of(response).panels if p.key == "bookings-today"]
    rows = {row.label: row for row in panel.tables[0].rows}
    assert list(rows) == ["Berlin hall", "Closed hall", "Island hall"]
    assert rows["Island hall"].note == "Thu 12 Mar, Pacific/Kiritimati"
    calendar = rows["Island hall"].extra_link[1]
    assert calendar == f"/admin/bookings/booking/calendar/?resource={island.pk}&date=2026-03-12"
    assert staff_client.get(calendar).status_code == 200


def test_operations_in_red_when_they_need_a_look(staff_client, seeded):
    response = staff_client.get("/admin/")
    figures = figures_of(response)
    outbox, heartbeat = figures["ops.outbox"], figures["ops.heartbeat"]
    assert (outbox.shown, outbox.alert) == ("90 s (1 waiting)", True)  # above EVENTS_LAG_WARNING_SECONDS
    assert (heartbeat.shown, heartbeat.alert) == ("5 min ago (stale)", True)
    assert all(
        figures[k].alert for k in ("ops.dead-letters", "ops.flagged-payments", "ops.notifications-failed")
    )
    page = response.content.decode()
    assert re.search(
        r'class="console-figure console-alert" href="[^"]+" title="[^"]+" data-figure="ops.heartbeat"', page
    )

    Heartbeat.objects.filter(name="beat").update(last_seen=NOW - timedelta(seconds=20))
    OutboxEvent.objects.update(published_at=NOW)
    figures = figures_of(staff_client.get("/admin/"))
    assert (figures["ops.heartbeat"].shown, figures["ops.heartbeat"].alert) == ("20 s ago", False)
    assert (figures["ops.outbox"].shown, figures["ops.outbox"].alert) == ("0 s (none waiting)", False)


def test_today_and_this_week_are_days_of_the_sites_timezone(staff_client, settings):
    """In Tokyo (UTC+9) it is Thursday 12 March 00:00 at NOW: a payment a minute earlier was yesterday."""
    settings.TIME_ZONE = "Asia/Tokyo"
    payment(NOW, "stripe", "succeeded", "10.00", "USD")
    payment(NOW - timedelta(minutes=1), "stripe", "succeeded", "20.00", "USD")
    figures = figures_of(staff_client.get("/admin/"))
    assert figures["payments.today.all.all"].count == 1
    assert figures["payments.week.all.all"].count == 2  # the week began on Monday 9 March in Tokyo
    assert figures["revenue.USD.2026-03-12"].count == 1 and figures["revenue.USD.2026-03-11"].count == 1
    for key in ("payments.today.all.all", "revenue.USD.2026-03-11"):
        assert staff_client.get(figures[key].url).context["cl"].result_count == 1


# --- the page ---------------------------------------------------------------------------------
def test_only_staff_see_it(client):
    assert client.get("/admin/").url == "/admin/login/?next=/admin/"
    client.force_login(UserFactory())
    assert client.get("/admin/").url == "/admin/login/?next=/admin/"


def test_staff_see_the_panels_whose_lists_they_may_view(client, seeded):
    clerk = StaffFactory()
    clerk.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(clerk)
    dashboard = dashboard_of(client.get("/admin/"))
    assert [p.key for p in dashboard.panels] == ["orders"]


def test_the_page_works_offline_and_keeps_the_app_list(staff_client, seeded):
    page = staff_client.get("/admin/").content.decode()
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert links and all(link.startswith(("/", "#", "?")) and not link.startswith("//") for link in links)
    dashboard = page.split('id="console-dashboard"')[1].split('id="content-main"')[0]
    assert "http://" not in dashboard and "https://" not in dashboard
    assert '<svg viewBox="0 0 600 220"' in dashboard and "<script" not in dashboard
    assert "/admin/payments/payment/" in page.split('id="content-main"')[1]  # the app list is still there
    assert "url(" not in Path(finders.find("console/dashboard.css")).read_text()


def test_the_number_of_queries_does_not_grow_with_the_data(staff_client, seeded):
    staff_client.get("/admin/")  # sessions, content types: cached from here on

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff_client.get("/admin/").status_code == 200
        return len(captured)

    before = queries()
    for n in range(3):  # more gateways, currencies, statuses, days, resources and timezones
        for gateway, currency in (("tinkoff", "RUB"), ("sberpay", "KZT"), (f"gw{n}", "GBP")):
            payment(NOW - timedelta(days=n), gateway, "expired", "5.00", currency)
            payment(NOW - timedelta(days=n + 3), gateway, "succeeded", "5.00", currency)
        resource = ResourceFactory(timezone=["Asia/Tokyo", "America/Lima", "Europe/Moscow"][n])
        booking(resource, NOW + timedelta(hours=1), "confirmed")
        seed_orders()
    assert queries() == before <= 30
