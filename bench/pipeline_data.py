"""The pipeline benchmark's data (bench/pipeline.py): catalogue, customers, what a flow buys,
the webhooks that pay it, and what the database says about each flow afterwards.

Everything a run makes is named with the run's token (customers `c<i>@<batch>.<token>.pipeline.bench.invalid`,
SKUs `PL-<token>-...`, halls and the plan `pl-<token>-...`): nothing of an earlier run is
touched or deleted, so the bench's own database grows by each run's rows (drop it to reclaim).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

KINDS = ("order", "booking", "subscription")
# The notification rule that ends each kind's flow (notifications/rules.py): order.paid and
# booking.confirmed tell the customer directly; invoice.paid has no rule, the paid period's
# toybox.created (built when invoice.paid arrives) is the subscription's message.
RULE_OF = {"order": "order.paid", "booking": "booking.confirmed", "subscription": "toybox.created"}
# The bench's customers have an e-mail address only: no phone (no SMS), no linked Telegram chat.
CUSTOMER_CHANNELS = ("email", "inapp")
ORDER_VARIANTS = 8  # spread over a few rows: the stock of one variant is a row lock per sale
TOYS = 6
STOCK = 100_000_000
UNUSABLE = "!"  # Django's mark of an unusable password: the customers log in with tokens
HALL_TZ = ZoneInfo("Europe/Berlin")
HALL_HOURS = range(9, 21)  # one-hour slots 09:00-21:00
FIRST_DAY, LAST_DAY = 2, 88  # days ahead (BOOKING_MAX_DAYS_AHEAD is 90)
SLOTS_PER_HALL = len(HALL_HOURS) * (LAST_DAY - FIRST_DAY + 1)


@dataclass
class Catalogue:
    token: str
    variant_ids: list[int]
    plan_id: int
    hall_ids: list[int] = field(default_factory=list)
    bookings_made: int = 0  # slots handed out so far (hall, day, hour in order)


@dataclass
class Flow:
    """One customer's purchase: what the API answered, then the webhook that pays it."""

    index: int
    kind: str
    user_id: int
    token: str  # DRF token
    email: str
    request: dict[str, Any]  # what the purchase client posts (see pipeline_load.buy)
    key: str = ""  # order number, booking id or subscription id, from the API's answers
    reference: str = ""  # the sandbox charge, from the checkout URL


def catalogue_create(token: str) -> Catalogue:
    """Products for the orders, toys for the boxes (huge stock: no flow runs out), one plan."""
    from orders.models import Category, Product, Variant
    from subscriptions.models import Plan

    category, _ = Category.objects.get_or_create(slug="bench-pipeline", defaults={"name": "Bench pipeline"})
    variants = []
    for k in range(ORDER_VARIANTS + TOYS):
        toy = k >= ORDER_VARIANTS
        product = Product.objects.create(
            category=category, name=f"{'Toy' if toy else 'Train'} {k}", slug=f"pl-{token}-{k}"
        )
        variants.append(
            Variant.objects.create(
                product=product,
                sku=f"PL-{token}-{k}",
                name="Ages 0-12" if toy else "Wooden",
                price=Decimal("10.00") if toy else Decimal("24.50"),
                currency="USD",
                stock_on_hand=STOCK,
                age_min_months=0 if toy else None,
                age_max_months=144 if toy else None,
                tags=["stem"] if toy and k % 2 else [],
            )
        )
    plan = Plan.objects.create(
        name=f"Pipeline {token}", slug=f"pl-{token}", price=Decimal("30.00"), currency="USD",
        toys_per_box=2, age_min_months=12, age_max_months=144,
    )  # fmt: skip
    return Catalogue(token, [v.pk for v in variants[:ORDER_VARIANTS]], plan.pk)


def _hall(catalogue: Catalogue) -> int:
    from bookings.models import OpeningHours, Resource

    n = len(catalogue.hall_ids)
    hall = Resource.objects.create(
        kind="hall", name=f"Pipeline hall {n}", slug=f"pl-{catalogue.token}-hall-{n}",
        timezone=str(HALL_TZ), currency="EUR", price_per_hour=Decimal("40.00"),
        min_booking_minutes=60, max_booking_minutes=480,
    )  # fmt: skip
    OpeningHours.objects.bulk_create(
        OpeningHours(resource=hall, weekday=day, opens=time(HALL_HOURS[0]), closes=time(HALL_HOURS[-1] + 1))
        for day in range(7)
    )
    catalogue.hall_ids.append(hall.pk)
    return hall.pk


def _next_slot(catalogue: Catalogue) -> tuple[int, str, str]:
    """(hall id, start, end) of the next free one-hour slot: a new hall when one is full."""
    n = catalogue.bookings_made
    catalogue.bookings_made += 1
    hall_index, slot = divmod(n, SLOTS_PER_HALL)
    while len(catalogue.hall_ids) <= hall_index:
        _hall(catalogue)
    day, hour = divmod(slot, len(HALL_HOURS))
    today = datetime.now(HALL_TZ).date()
    start = datetime.combine(today + timedelta(days=FIRST_DAY + day), time(HALL_HOURS[hour]), tzinfo=HALL_TZ)
    return catalogue.hall_ids[hall_index], start.isoformat(), (start + timedelta(hours=1)).isoformat()


def customers_create(
    catalogue: Catalogue, batch: str, first_index: int, n: int, kinds: list[str]
) -> list[Flow]:
    """N customers (unusable passwords, a DRF token each) and what each will buy, kinds in turn."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from rest_framework.authtoken.models import Token

    User = get_user_model()
    domain = batch_domain(catalogue.token, batch)
    with transaction.atomic():
        users = User.objects.bulk_create(
            [
                User(email=f"c{first_index + i}@{domain}", first_name=f"Customer{i}", password=UNUSABLE)
                for i in range(n)
            ],
            batch_size=2000,
        )
        tokens = Token.objects.bulk_create(
            [Token(key=Token.generate_key(), user=user) for user in users], batch_size=2000
        )
    flows = []
    for i, (user, token) in enumerate(zip(users, tokens, strict=True)):
        index = first_index + i
        kind = kinds[index % len(kinds)]
        flows.append(Flow(index, kind, user.pk, token.key, user.email, _request(catalogue, kind, index)))
    return flows


def _request(catalogue: Catalogue, kind: str, index: int) -> dict[str, Any]:
    if kind == "order":
        variant = catalogue.variant_ids[index % len(catalogue.variant_ids)]
        return {"variant_id": variant, "quantity": 1}
    if kind == "booking":
        hall, start, end = _next_slot(catalogue)
        return {"hall_id": hall, "start": start, "end": end}
    birth = date.today() - timedelta(days=4 * 365 + 30)
    return {"child": {"name": f"Kid {index}", "birth_date": birth.isoformat(), "interests": ["stem"]},
            "plan_id": catalogue.plan_id}  # fmt: skip


def batch_domain(token: str, batch: str) -> str:
    return f"{batch}.{token}.pipeline.bench.invalid"


def expected_messages() -> dict[str, int]:
    """Notification rows each kind's flow ends with: its rule's channels a customer with only an
    e-mail address can get (staff may have changed the rule's channels, or turned it off)."""
    from notifications.channels import CHANNELS
    from notifications.models import Rule

    rules = {rule.key: rule for rule in Rule.objects.filter(key__in=RULE_OF.values())}
    expected = {}
    for kind, key in RULE_OF.items():
        rule = rules.get(key)
        channels = [c for c in (rule.channels if rule and rule.enabled else []) if c in CUSTOMER_CHANNELS]
        expected[kind] = sum(1 for c in channels if CHANNELS[c].configured())
    return expected


# --- Paying --------------------------------------------------------------------------------------
def charges_paid(flows: list[Flow]) -> None:
    """The customers press Pay on the sandbox page: their charges succeed (a card kept where the
    checkout asked to save it, as the page does). No webhook is sent: the bench sends them."""
    from django.db import transaction

    from payments.gateways.sandbox import method_save
    from payments.models import SandboxCharge

    references = [flow.reference for flow in flows]
    with transaction.atomic():
        for charge in SandboxCharge.objects.filter(reference__in=references, save_method=True, method=None):
            charge.method = method_save(charge)
            charge.save(update_fields=["method", "updated_at"])
        SandboxCharge.objects.filter(reference__in=references, status=SandboxCharge.Status.PENDING).update(
            status=SandboxCharge.Status.SUCCEEDED
        )


def webhook_requests(flows: list[Flow], port: int) -> list[bytes]:
    """The sandbox's signed webhook for each flow's charge, as raw HTTP/1.1 requests (in flow order)."""
    from payments.gateways.sandbox import SIGNATURE_HEADER, sign
    from payments.models import SandboxCharge
    from payments.registry import gateway_for

    gateway = gateway_for("sandbox")
    charges = SandboxCharge.objects.in_bulk([flow.reference for flow in flows], field_name="reference")
    raws = []
    for flow in flows:
        body = gateway.webhook_body(charges[flow.reference])
        head = (
            f"POST /api/payments/webhook/sandbox HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"User-Agent: bench-pipeline\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{SIGNATURE_HEADER}: {sign(body, gateway.secret)}\r\n\r\n"
        )
        raws.append(head.encode("latin-1") + body)
    return raws


# --- What the database says ----------------------------------------------------------------------
def confirmed_at(flows: list[Flow]) -> dict[int, float]:
    """Flow index -> when it was confirmed (epoch seconds): the order's paid_at, the booking's
    audit row to `confirmed`, the subscription's first invoice paid_at (which activates it, in
    the same transaction)."""
    from bookings.models import BookingAudit
    from orders.models import Order
    from subscriptions.models import Invoice

    by_key = {(flow.kind, flow.key): flow.index for flow in flows}
    keys = {kind: [flow.key for flow in flows if flow.kind == kind] for kind in KINDS}
    orders = Order.objects.filter(number__in=keys["order"], paid_at__isnull=False)
    audits = BookingAudit.objects.filter(booking__public_id__in=keys["booking"], to_status="confirmed")
    invoices = Invoice.objects.filter(subscription__public_id__in=keys["subscription"], paid_at__isnull=False)
    rows = {
        "order": orders.values_list("number", "paid_at"),
        "booking": audits.values_list("booking__public_id", "at"),
        "subscription": invoices.values_list("subscription__public_id", "paid_at"),
    }
    return {by_key[(kind, key)]: at.timestamp() for kind, pairs in rows.items() for key, at in pairs}


def messages_state(flows: list[Flow]) -> dict[str, Any]:
    """The flows' customers' Notification rows of the flows' rules: counts by status, the
    latest sent_at (epoch seconds), and the first failure's error. (A batch's customers are
    one bulk insert: their ids are a range, which the inbox index serves.)"""
    from django.db.models import Count, Max

    from notifications.models import Notification

    ids = [flow.user_id for flow in flows]
    domain = flows[0].email.partition("@")[2]
    rows = Notification.objects.filter(
        user_id__gte=min(ids),
        user_id__lte=max(ids),
        user__email__endswith=f"@{domain}",
        rule__in=RULE_OF.values(),
    )
    counts = dict(rows.values_list("status").annotate(n=Count("pk")).order_by())
    last = rows.aggregate(last=Max("sent_at"))["last"]
    failed = rows.filter(status=Notification.Status.FAILED).values_list("last_error", flat=True).first()
    return {"counts": counts, "last_sent": last.timestamp() if last else None, "failed": failed}


def outbox_waiting() -> int:
    from core.models import OutboxEvent

    return OutboxEvent.objects.filter(published_at__isnull=True).count()


def dead_letters() -> int:
    from core.models import DeadLetter

    return DeadLetter.objects.count()


def first_dead_letter() -> str:
    from core.models import DeadLetter

    letter = DeadLetter.objects.order_by("-pk").first()
    return f"{letter.subscriber}: {letter.error[:300]}" if letter else ""


def webhook_errors(flows: list[Flow]) -> list[str]:
    """Errors kept on the flows' webhooks (a disagreement with the gateway, no such payment)."""
    from payments.models import WebhookEvent

    return list(
        WebhookEvent.objects.filter(reference__in=[f.reference for f in flows])
        .exclude(error="")
        .values_list("error", flat=True)[:5]
    )


def summary_of(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of latencies in seconds, as milliseconds."""
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {
        "p50_ms": round(at(0.50) * 1000, 1),
        "p90_ms": round(at(0.90) * 1000, 1),
        "p99_ms": round(at(0.99) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
