"""The staff dashboard: one function per panel, each a few GROUP BY aggregates, never a loop of
queries over rows, so the page costs the same number of queries however much data there is.

Every figure carries the admin list of exactly the rows it counts: the model's changelist
filtered with lookups on its own fields (`?status__exact=paid&created_at__gte=...`), so a
figure and the list behind it agree (tests/console/test_dashboard.py checks each link).

Days: "today" and "this week" (from Monday) are days of the site's timezone,
settings.TIME_ZONE; today's bookings are each resource's own day, in its timezone.
"""

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.urls import reverse
from django.utils import timezone

from bookings.models import Booking, Resource
from console.charts import Point, bar_chart
from console.figures import (
    Figure,
    Panel,
    Row,
    Table,
    admin_list,
    duration,
    minor_digits,
    money_sums,
    site_days,
)
from core.admin import money_display
from core.events.relay import outbox_lag_seconds
from core.models import DeadLetter, Heartbeat, OutboxEvent
from core.services import BEAT_HEARTBEAT
from notifications.models import Notification
from orders.models import Order
from payments.models import FlaggedPayment, Payment
from subscriptions.models import Subscription
from subscriptions.services.billing import RENEWABLE

# Payments whose money was taken (some or all of it may have been refunded since).
CAPTURED = (Payment.Status.SUCCEEDED, Payment.Status.PARTIALLY_REFUNDED, Payment.Status.REFUNDED)
REVENUE_DAYS = 30
# Bookings that hold, or held, their time: not cancelled, not expired.
BOOKED = (
    Booking.Status.PENDING_PAYMENT,
    Booking.Status.CONFIRMED,
    Booking.Status.COMPLETED,
    Booking.Status.NO_SHOW,
)
FAILED_MESSAGES = (Notification.Status.FAILED, Notification.Status.UNDELIVERED)
FAILED_MESSAGES_WINDOW = timedelta(hours=24)
RENEWALS_AHEAD = timedelta(days=7)


# --- panels ---------------------------------------------------------------------------------
def _payments_cell(period: str, gateway: str, status: str, start: datetime, end: datetime, totals) -> Figure:
    """Payments opened in [start, end) at `gateway` in `status` ("" for any)."""
    lookups = {"created_at__gte": start, "created_at__lt": end}
    if gateway:
        lookups["gateway__exact"] = gateway
    if status:
        lookups["status__exact"] = status
    count, amounts = totals[gateway, status]
    what = f"{status.replace('_', ' ') or 'all'} payments" + (f" via {gateway}" if gateway else "")
    return Figure(
        key=f"payments.{period}.{gateway or 'all'}.{status or 'all'}",
        label=f"{what}, opened {'today' if period == 'today' else 'this week'}",
        count=count,
        url=admin_list(Payment, **lookups),
        amounts=money_sums(amounts),
    )


def payments_panel(now: datetime) -> Panel:
    """Payments opened today and this week, by gateway and status: counts and sums per currency."""
    periods = site_days(now).periods
    _, today_start, today_end = periods["today"]
    _, week_start, week_end = periods["week"]
    today = Q(created_at__gte=today_start, created_at__lt=today_end)
    rows = list(
        Payment.objects.filter(created_at__gte=week_start, created_at__lt=week_end)
        .values("gateway", "status", "currency")
        .annotate(
            week=Count("pk"),
            week_amount=Sum("amount"),
            today=Count("pk", filter=today),
            today_amount=Sum("amount", filter=today),
        )
        .order_by()
    )
    gateways = [*sorted({r["gateway"] for r in rows}), ""]  # "": all gateways
    statuses = [*(s for s in Payment.Status.values if any(r["status"] == s for r in rows)), ""]
    panel = Panel(
        key="payments",
        title="Payments",
        note=f"By the time they were opened, in {settings.TIME_ZONE}. Amounts per currency, never added "
        "across currencies.",
    )
    for period, (caption, start, end) in periods.items():
        # (gateway, status) -> (count, {currency: amount}), "" standing for all of them
        totals: dict[tuple[str, str], tuple[int, dict[str, Decimal]]] = defaultdict(
            lambda: (0, defaultdict(Decimal))
        )
        for r in rows:
            if not r[period]:
                continue
            for key in {(r["gateway"], r["status"]), (r["gateway"], ""), ("", r["status"]), ("", "")}:
                count, amounts = totals[key]
                amounts[r["currency"]] += r[f"{period}_amount"]
                totals[key] = (count + r[period], amounts)
        panel.tables.append(
            Table(
                key=f"payments-{period}",
                caption=f"Opened {caption}",
                row_header="Gateway",
                columns=[s.replace("_", " ") or "all" for s in statuses],
                rows=[
                    Row(
                        label=gateway or "all gateways",
                        cells=[_payments_cell(period, gateway, s, start, end, totals) for s in statuses],
                    )
                    for gateway in gateways
                ],
            )
        )
    return panel


def revenue_panel(now: datetime) -> Panel:
    """Net revenue per day for REVENUE_DAYS days, one chart per currency."""
    days = site_days(now)
    first = days.today - timedelta(days=REVENUE_DAYS - 1)
    rows = (
        Payment.objects.filter(
            status__in=CAPTURED,
            created_at__gte=days.start(first),
            created_at__lt=days.start(days.today + timedelta(days=1)),
        )
        .annotate(day=TruncDate("created_at", tzinfo=days.tz))
        .values("currency", "day")
        .annotate(payments=Count("pk"), taken=Sum("amount"), refunded=Sum("refunded_amount"))
        .order_by()
    )
    by_currency: dict[str, dict[date, dict]] = defaultdict(dict)
    for r in rows:
        by_currency[r["currency"]][r["day"]] = r
    # The currency with the most payments first: the main one.
    currencies = sorted(by_currency, key=lambda c: (-sum(r["payments"] for r in by_currency[c].values()), c))
    panel = Panel(
        key="revenue",
        title=f"Net revenue per day, last {REVENUE_DAYS} days",
        note="What payments that succeeded took, less what was refunded of them since, by the day the "
        f"payment was opened ({settings.TIME_ZONE}); one chart per currency. A bar links to its payments.",
    )
    nothing = {"payments": 0, "taken": Decimal(0), "refunded": Decimal(0)}
    for currency in currencies:
        points = []
        for offset in range(REVENUE_DAYS):
            day = first + timedelta(days=offset)
            r = by_currency[currency].get(day, nothing)
            net = r["taken"] - r["refunded"]
            figure = Figure(
                key=f"revenue.{currency}.{day.isoformat()}",
                label=f"{day:%a %d %b %Y}: {money_display(net, currency)} net "
                f"({money_display(r['taken'], currency)} taken, {money_display(r['refunded'], currency)} "
                f"refunded) from {r['payments']} payments",
                count=r["payments"],
                url=admin_list(
                    Payment,
                    status__in=CAPTURED,
                    currency__exact=currency,
                    created_at__gte=days.start(day),
                    created_at__lt=days.start(day + timedelta(days=1)),
                ),
                text=money_display(net, currency),
            )
            label = f"{day:%d %b}" if (REVENUE_DAYS - 1 - offset) % 5 == 0 else ""  # today, and every 5th
            points.append(Point(value=net, label=label, figure=figure))
        total = sum((p.value for p in points), Decimal(0))
        panel.charts.append(
            bar_chart(
                f"{currency}: {money_display(total, currency)} net in {REVENUE_DAYS} days",
                key=currency,
                points=points,
                digits=minor_digits(currency),
            )
        )
    return panel


def _by_status(model, key: str, statuses: list[str], attention: str = "") -> list[Figure]:
    """One figure per status (all rows of the model), and those needing attention: one query."""
    counts = model.objects.aggregate(
        **{s: Count("pk", filter=Q(status=s)) for s in statuses},
        **({"_attention": Count("pk", filter=Q(needs_attention=True))} if attention else {}),
    )
    plural = model._meta.verbose_name_plural
    figures = [
        Figure(
            key=f"{key}.{s}",
            label=f"{plural} {s.replace('_', ' ')}",
            count=counts[s],
            url=admin_list(model, status__exact=s),
        )
        for s in statuses
    ]
    if attention:
        figures.append(
            Figure(
                key=f"{key}.attention",
                label=attention,
                count=counts["_attention"],
                url=admin_list(model, needs_attention__exact=1),
                alert=counts["_attention"] > 0,
            )
        )
    return figures


def orders_panel(now: datetime) -> Panel:
    return Panel(
        key="orders",
        title="Orders by status",
        note="All orders.",
        figures=_by_status(Order, "orders", Order.Status.values, attention="orders needing attention"),
    )


def bookings_panel(now: datetime) -> Panel:
    return Panel(
        key="bookings",
        title="Bookings by status",
        note="All bookings.",
        figures=_by_status(
            Booking, "bookings", Booking.Status.values, attention="bookings needing attention"
        ),
    )


def calendar_url(resource_id: int, day: date) -> str:
    """The bookings calendar of a resource's day (bookings.admin: the day on its wall clock)."""
    query = urlencode({"resource": resource_id, "date": day.isoformat()})
    return f"{reverse('admin:bookings_booking_calendar')}?{query}"


def bookings_today_panel(now: datetime) -> Panel:
    """Bookings starting today per resource, today being the resource's own day in its timezone."""

    @cache
    def local_day(zone: str) -> tuple[date, datetime, datetime]:
        """Today in `zone`, and its [start, end) instants."""
        tz = ZoneInfo(zone)
        day = now.astimezone(tz).date()
        start, end = (datetime.combine(d, time.min, tzinfo=tz) for d in (day, day + timedelta(days=1)))
        return day, start, end

    when = Q(pk__in=[])
    for zone in Resource.objects.values_list("timezone", flat=True).distinct().order_by():
        _, start, end = local_day(zone)
        when |= Q(resource__timezone=zone, starts_at__gte=start, starts_at__lt=end)
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in Booking.objects.filter(when).values("resource", "status").annotate(n=Count("pk")).order_by():
        counts[r["resource"]][r["status"]] += r["n"]
    resources = Resource.objects.filter(Q(active=True) | Q(pk__in=list(counts))).order_by("name", "pk")
    statuses = Booking.Status.values
    rows = []
    for resource in resources:
        day, start, end = local_day(resource.timezone)
        base = {"resource__id__exact": resource.pk, "starts_at__gte": start, "starts_at__lt": end}
        booked = Figure(
            key=f"bookings-today.{resource.slug}.booked",
            label=f"bookings of {resource.name} starting {day:%a %d %b} (not cancelled or expired)",
            count=sum(counts[resource.pk][s] for s in BOOKED),
            url=admin_list(Booking, **base, status__in=BOOKED),
        )
        cells = [booked] + [
            Figure(
                key=f"bookings-today.{resource.slug}.{s}",
                label=f"bookings of {resource.name} starting {day:%a %d %b}, {s.replace('_', ' ')}",
                count=counts[resource.pk][s],
                url=admin_list(Booking, **base, status__exact=s),
            )
            for s in statuses
        ]
        rows.append(
            Row(
                label=resource.name,
                note=f"{day:%a %d %b}, {resource.timezone}",
                cells=cells,
                extra_link=("calendar", calendar_url(resource.pk, day)),
            )
        )
    return Panel(
        key="bookings-today",
        title="Today's bookings per resource",
        note="Bookings starting today, today being each resource's own day in its timezone. Active "
        "resources, and any other with a booking today.",
        tables=[
            Table(
                key="bookings-today",
                caption="Starting today",
                row_header="Resource",
                columns=["booked", *(s.replace("_", " ") for s in statuses)],
                rows=rows,
            )
        ]
        if rows
        else [],
    )


def subscriptions_panel(now: datetime) -> Panel:
    """Subscriptions by status, and renewals due now and in the next days (one query)."""
    renewable = Q(status__in=RENEWABLE)
    due_now = renewable & Q(next_renewal_at__lte=now)
    ahead = now + RENEWALS_AHEAD
    due_soon = renewable & Q(next_renewal_at__gt=now, next_renewal_at__lte=ahead)
    statuses = Subscription.Status.values
    counts = Subscription.objects.aggregate(
        **{s: Count("pk", filter=Q(status=s)) for s in statuses},
        _due_now=Count("pk", filter=due_now),
        _due_soon=Count("pk", filter=due_soon),
    )
    figures = [
        Figure(
            key=f"subscriptions.{s}",
            label=f"subscriptions {s.replace('_', ' ')}",
            count=counts[s],
            url=admin_list(Subscription, status__exact=s),
        )
        for s in statuses
    ]
    figures += [
        Figure(
            key="subscriptions.renewals-due",
            label="renewals due now (active or past due, next renewal passed; beat renews them)",
            count=counts["_due_now"],
            url=admin_list(Subscription, status__in=RENEWABLE, next_renewal_at__lte=now),
        ),
        Figure(
            key="subscriptions.renewals-soon",
            label=f"renewals due in the next {RENEWALS_AHEAD.days} days",
            count=counts["_due_soon"],
            url=admin_list(
                Subscription, status__in=RENEWABLE, next_renewal_at__gt=now, next_renewal_at__lte=ahead
            ),
        ),
    ]
    return Panel(key="subscriptions", title="Subscriptions", note="All subscriptions.", figures=figures)


# --- operations: one figure each, shown to staff who may see its list --------------------------
def outbox_figure(now: datetime) -> Figure:
    waiting = OutboxEvent.objects.filter(published_at__isnull=True).count()
    lag = outbox_lag_seconds()
    return Figure(
        key="ops.outbox",
        label=f"outbox lag: age of the oldest of {waiting} unpublished events",
        count=waiting,
        url=admin_list(OutboxEvent, published_at__isnull=True),
        text=f"{duration(lag)} ({waiting} waiting)" if waiting else "0 s (none waiting)",
        alert=lag > settings.EVENTS_LAG_WARNING_SECONDS,
    )


def dead_letters_figure(now: datetime) -> Figure:
    waiting = DeadLetter.objects.filter(resolved_at__isnull=True).count()
    return Figure(
        key="ops.dead-letters",
        label="dead letters waiting (not resolved)",
        count=waiting,
        url=admin_list(DeadLetter, resolved_at__isnull=True),
        alert=waiting > 0,
    )


def flagged_payments_figure(now: datetime) -> Figure:
    flagged = Payment.objects.exclude(flagged_reason="").count()
    return Figure(
        key="ops.flagged-payments",
        label="payments flagged for staff (mismatches)",
        count=flagged,
        url=admin_list(FlaggedPayment),
        alert=flagged > 0,
    )


def failed_notifications_figure(now: datetime) -> Figure:
    since = now - FAILED_MESSAGES_WINDOW
    failed = Notification.objects.filter(status__in=FAILED_MESSAGES, failed_at__gte=since).count()
    return Figure(
        key="ops.notifications-failed",
        label="messages failed or undelivered in the last 24 hours",
        count=failed,
        url=admin_list(Notification, status__in=FAILED_MESSAGES, failed_at__gte=since),
        alert=failed > 0,
    )


def heartbeat_figure(now: datetime) -> Figure:
    """Beat sends core.heartbeat("beat") every 30 s through the broker and a worker records it:
    its age is how long since a worker last ran what beat sent (as /readyz judges it)."""
    beat = Heartbeat.objects.filter(name=BEAT_HEARTBEAT).values_list("last_seen", flat=True).first()
    age = (now - beat).total_seconds() if beat else None
    stale = age is None or age > settings.HEARTBEAT_STALE_SECONDS
    return Figure(
        key="ops.heartbeat",
        label=f"worker heartbeat: last beat -> broker -> worker round trip (stale after "
        f"{settings.HEARTBEAT_STALE_SECONDS} s)",
        count=1 if beat else 0,
        url=admin_list(Heartbeat, name__exact=BEAT_HEARTBEAT),
        text=("never" if age is None else f"{duration(max(age, 0))} ago") + (" (stale)" if stale else ""),
        alert=stale,
    )


OPERATIONS: list[tuple[str, Callable[[datetime], Figure]]] = [
    ("core.view_outboxevent", outbox_figure),
    ("core.view_deadletter", dead_letters_figure),
    ("payments.view_flaggedpayment", flagged_payments_figure),
    ("notifications.view_notification", failed_notifications_figure),
    ("core.view_heartbeat", heartbeat_figure),
]

# Each panel with the permissions to view the lists it links to.
PANELS: list[tuple[tuple[str, ...], Callable[[datetime], Panel]]] = [
    (("payments.view_payment",), payments_panel),
    (("payments.view_payment",), revenue_panel),
    (("orders.view_order",), orders_panel),
    (("bookings.view_booking",), bookings_panel),
    (("bookings.view_booking", "bookings.view_resource"), bookings_today_panel),
    (("subscriptions.view_subscription",), subscriptions_panel),
]


@dataclass
class Dashboard:
    now: datetime
    timezone: str
    panels: list[Panel]

    def figures(self) -> Iterator[Figure]:
        for panel in self.panels:
            yield from panel.all_figures()


def dashboard_for(user) -> Dashboard:
    """The panels `user` may see (each links only to lists the user may view), computed now."""
    now = timezone.now()
    panels = []
    if operations := [build(now) for perm, build in OPERATIONS if user.has_perm(perm)]:
        panels.append(
            Panel(
                key="operations",
                title="Operations",
                note=f"Red: needs a look. Outbox lag above {settings.EVENTS_LAG_WARNING_SECONDS} s, any "
                "dead letter, flagged payment or failed message, or no worker heartbeat for "
                f"{settings.HEARTBEAT_STALE_SECONDS} s.",
                figures=operations,
            )
        )
    panels += [build(now) for perms, build in PANELS if user.has_perms(perms)]
    return Dashboard(now=now, timezone=settings.TIME_ZONE, panels=panels)
