"""What must hold once a chaos run has settled, each check answering what it found wrong.

Every check reads the database (and RabbitMQ's dead-letter queues) as staff would, in few
queries whatever the number of flows; `settled()` is the cheap part the run polls for.
"""

from collections import Counter, defaultdict
from decimal import Decimal

from django.db.models import Count, Q, Sum
from kombu import Queue

from bookings.models import Booking
from config.celery import app as celery_app
from core.models import DeadLetter, OutboxEvent
from notifications.channels import CHANNELS
from notifications.models import Notification
from notifications.rules import RULES
from orders.models import Order, OrderLine, Variant
from payments.models import Payment, PaymentAllocation, PaymentLedgerEntry, SandboxCharge, WebhookEvent
from subscriptions.models import Invoice, Toybox
from tests.chaos.faults import queue_depths
from tests.chaos.shop import STOCK, Shop
from tests.conftest import rabbitmq_queues

SHOWN = 5  # examples per problem
# What each paid thing ends in, the event that says so and the rule that tells the customer.
TOLD = {"order": "order.paid", "booking": "booking.confirmed", "subscription": "toybox.created"}


def _examples(items) -> str:
    items = list(items)
    more = f" (and {len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return ", ".join(map(str, items[:SHOWN])) + more


def _counted(*kinds: tuple[str, list]) -> list[str]:
    """A problem line per kind of wrong thing found: how many, and a few of them."""
    return [f"{len(bad)} {what}: {_examples(bad)}" for what, bad in kinds if bad]


def customer_channels(rule: str) -> set[str]:
    """The channels a customer hears on for `rule` here: its channels that are configured."""
    return {name for name in RULES[rule].channels if CHANNELS[name].configured()}


def settled(shop: Shop) -> bool:
    """Whether the run looks done: every item in its final state, every event published, every
    customer told. (check() then says what, if anything, is wrong.)"""
    orders = [f.item for f in shop.by_kind("order") if f.item]
    bookings = [f.item for f in shop.by_kind("booking") if f.item]
    subscriptions = [f.item for f in shop.by_kind("subscription") if f.item]
    told = sum(len(customer_channels(rule)) * len(shop.by_kind(kind)) for kind, rule in TOLD.items())
    return (
        Order.objects.filter(number__in=orders, status="paid").count() == len(orders)
        and Booking.objects.filter(public_id__in=bookings, status="confirmed").count() == len(bookings)
        and Toybox.objects.filter(subscription__public_id__in=subscriptions, status="ready").count()
        == len(subscriptions)
        and not OutboxEvent.objects.filter(published_at__isnull=True).exists()
        and Notification.objects.filter(rule__in=TOLD.values()).count() >= told
    )


def check(shop: Shop, webhook_event_ids: set[str], dlq_before: dict[str, int]) -> tuple[list[str], list[str]]:
    """(problems, known bugs seen): what is wrong after the run, and which known bug it met."""
    known, problems = dead_lettered(dlq_before)
    problems += [f"flow {f.n} ({f.kind}) failed: {f.error}" for f in shop.flows if f.error]
    for check_one in (items_final, events_once, ledgers, stock_sold_once, nothing_left):
        problems += check_one(shop)
    # A dead letter alerts staff: expected of the dead letters a known bug leaves.
    problems += customers_told(shop, staff_alerted=any("dead-lettered" in k for k in known))
    problems += webhooks_processed(webhook_event_ids)
    return problems, known


def items_final(shop: Shop) -> list[str]:
    """Every paid order `paid`, booking `confirmed`, invoice `paid` with exactly one toybox, ready."""
    problems = []
    orders = dict(
        Order.objects.filter(number__in=[f.item for f in shop.by_kind("order")]).values_list(
            "number", "status"
        )
    )
    unpaid = [f"{n}={s}" for n, s in orders.items() if s != "paid"]
    bookings = dict(
        Booking.objects.filter(public_id__in=[f.item for f in shop.by_kind("booking")]).values_list(
            "public_id", "status"
        )
    )
    unconfirmed = [f"{b}={s}" for b, s in bookings.items() if s != "confirmed"]
    subscriptions = [f.item for f in shop.by_kind("subscription")]
    invoices = list(
        Invoice.objects.filter(subscription__public_id__in=subscriptions).values_list(
            "number", "status", "subscription__public_id", "subscription__status", "toybox__status"
        )
    )
    boxes = Counter(
        Toybox.objects.filter(subscription__public_id__in=subscriptions).values_list(
            "subscription__public_id", flat=True
        )
    )
    bad_invoices = [
        f"{number}: invoice {status}, subscription {sub}, box {box}, {boxes[public_id]} box(es) in all"
        for number, status, public_id, sub, box in invoices
        if (status, sub, box, boxes[public_id]) != ("paid", "active", "ready", 1)
    ]
    problems += _counted(("orders not paid", unpaid), ("bookings not confirmed", unconfirmed))
    if bad_invoices:
        problems.append(
            f"{len(bad_invoices)} paid invoices without one ready toybox: {_examples(bad_invoices)}"
        )
    expected = {"order": len(orders), "booking": len(bookings), "subscription": len(invoices)}
    for kind, found in expected.items():
        bought = sum(1 for f in shop.by_kind(kind) if f.item)
        if found != bought:
            problems.append(f"{bought} {kind}s bought, {found} found")
    return problems


def _told_events(shop: Shop) -> dict[str, list[OutboxEvent]]:
    """Event type -> its events about this run's items (aggregate: order number, booking id, box id)."""
    boxes = list(
        Toybox.objects.filter(
            subscription__public_id__in=[f.item for f in shop.by_kind("subscription")]
        ).values_list("public_id", flat=True)
    )
    items = {
        "order.paid": [f.item for f in shop.by_kind("order")],
        "booking.confirmed": [f.item for f in shop.by_kind("booking")],
        "toybox.created": boxes,
    }
    return {
        event_type: list(
            OutboxEvent.objects.filter(type=event_type, aggregate_id__in=ids).only("event_id", "aggregate_id")
        )
        for event_type, ids in items.items()
    }


def events_once(shop: Shop) -> list[str]:
    """One order.paid per order, booking.confirmed per booking, toybox.created per box."""
    problems = []
    for event_type, rows in _told_events(shop).items():
        repeated = [a for a, n in Counter(r.aggregate_id for r in rows).items() if n > 1]
        if repeated:
            problems.append(f"{event_type} published more than once for {_examples(repeated)}")
    return problems


def customers_told(shop: Shop, *, staff_alerted: bool = False) -> list[str]:
    """Each event's rule wrote one message per configured channel, none failed; no staff alert,
    no payment.failed message (nothing went wrong that a person must hear about)."""
    problems = []
    for event_type, rows in _told_events(shop).items():
        channels = customer_channels(event_type)
        kinds = [k for k, rule in TOLD.items() if rule == event_type]
        if len(rows) < len(shop.by_kind(kinds[0])):
            problems.append(f"{len(shop.by_kind(kinds[0])) - len(rows)} {event_type} events missing")
        messages = defaultdict(list)
        for event_id, channel, status in Notification.objects.filter(
            event_id__in=[r.event_id for r in rows], rule=event_type
        ).values_list("event_id", "channel", "status"):
            messages[event_id].append((channel, status))
        wrong = [
            f"{r.aggregate_id}: {sorted(messages[r.event_id])}"
            for r in rows
            if sorted(c for c, _ in messages[r.event_id]) != sorted(channels)
        ]
        if wrong:
            problems.append(
                f"{len(wrong)} {event_type} events not told once on {sorted(channels)}: {_examples(wrong)}"
            )
    failed = Notification.objects.filter(status=Notification.Status.FAILED)
    if failed.exists():
        problems.append(
            f"{failed.count()} messages failed: {_examples(failed.values_list('rule', 'last_error'))}"
        )
    alerts = Notification.objects.filter(Q(rule__startswith="staff.") | Q(rule="payment.failed"))
    if staff_alerted:
        alerts = alerts.exclude(rule="staff.dead_letter")
    if alerts.exists():
        problems.append(f"unexpected messages: {_examples(alerts.values_list('rule', 'event_type'))}")
    return problems


def _ledger_problem(payment: Payment, entries: list[tuple], charge: tuple | None) -> str:
    """Why the payment's ledger does not add up to its status ("" if it does).

    Paid per the ledger: what the gateway's API reported succeeded (the amount, once, however
    many times it was asked); refunded per the ledger: nothing was refunded. So the status must
    be `succeeded` with nothing refunded, and the gateway's own charge must agree.
    """
    sources = Counter(source for source, *_ in entries)
    reported = [(status, amount, currency) for _, status, amount, currency in entries if status]
    successes = {(amount, currency) for status, amount, currency in reported if status == "succeeded"}
    paid = next(iter(successes))[0] if len(successes) == 1 else None
    if payment.status != Payment.Status.SUCCEEDED or payment.refunded_amount or payment.flagged_reason:
        return (
            f"status {payment.status}, refunded {payment.refunded_amount}, flagged {payment.flagged_reason!r}"
        )
    if sources[PaymentLedgerEntry.Source.CHECKOUT] != 1 or sources[PaymentLedgerEntry.Source.REFUND]:
        return f"ledger sources {dict(sources)}"
    if successes != {(payment.amount, payment.currency)} or paid - payment.refunded_amount != payment.amount:
        return f"ledger reports {sorted(successes)} succeeded for {payment.amount} {payment.currency}"
    if reported[-1][0] != "succeeded":
        return f"the ledger's last report is {reported[-1][0]}"
    if charge != ("succeeded", payment.amount, payment.currency):
        return f"the gateway's charge is {charge}"
    return ""


def ledgers(shop: Shop) -> list[str]:
    """Each flow paid by exactly one payment, whose allocations it accepted and whose ledger sums
    to its status (docs/payments.md: what each gateway call and webhook reported)."""
    references = [f.reference for f in shop.flows if f.reference]
    payments = {p.pk: p for p in Payment.objects.filter(gateway="sandbox", gateway_reference__in=references)}
    problems = []
    if len(payments) != len(references):
        problems.append(f"{len(references)} checkouts, {len(payments)} payments found for them")
    entries = defaultdict(list)
    for row in (
        PaymentLedgerEntry.objects.filter(payment_id__in=payments)
        .order_by("payment_id", "created_at", "pk")
        .values_list("payment_id", "source", "reported_status", "amount", "currency")
    ):
        entries[row[0]].append(row[1:])
    charges = {
        ref: (status, amount, currency)
        for ref, status, amount, currency in SandboxCharge.objects.filter(
            reference__in=references
        ).values_list("reference", "status", "amount", "currency")
    }
    wrong = []
    for pk, payment in payments.items():
        problem = _ledger_problem(payment, entries[pk], charges.get(payment.gateway_reference))
        if problem:
            wrong.append(f"{payment.public_id}: {problem}")
    if wrong:
        problems.append(
            f"{len(wrong)} payments whose ledger does not sum to their status: {_examples(wrong)}"
        )
    allocations = PaymentAllocation.objects.filter(payment_id__in=payments)
    totals = dict(
        allocations.order_by().values("payment_id").annotate(s=Sum("amount")).values_list("payment_id", "s")
    )
    unbalanced = [p.public_id for pk, p in payments.items() if totals.get(pk, Decimal(0)) != p.amount]
    refused = list(
        allocations.exclude(outcome=PaymentAllocation.Outcome.ACCEPTED).values_list("purpose_id", "outcome")
    )
    twice = list(
        PaymentAllocation.objects.filter(payment__status=Payment.Status.SUCCEEDED)
        .order_by()
        .values("purpose", "purpose_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .values_list("purpose", "purpose_id")
    )
    return problems + _counted(
        ("payments whose allocations do not sum to them", unbalanced),
        ("allocations not accepted", refused),
        ("items paid twice", twice),
    )


def stock_sold_once(shop: Shop) -> list[str]:
    """Each paid order took its units from stock once, and nothing is left reserved for them."""
    sold = dict(
        OrderLine.objects.filter(
            order__number__in=[f.item for f in shop.by_kind("order")], order__status="paid"
        )
        .order_by()
        .values("variant_id")
        .annotate(q=Sum("quantity"))
        .values_list("variant_id", "q")
    )
    wrong = [
        f"{v.sku}: on hand {v.stock_on_hand}, reserved {v.stock_reserved}, sold {sold.get(v.pk, 0)}"
        for v in Variant.objects.filter(pk__in=[v.pk for v in shop.variants])
        if (v.stock_on_hand, v.stock_reserved) != (STOCK - sold.get(v.pk, 0), 0)
    ]
    return [f"stock not sold exactly once: {_examples(wrong)}"] if wrong else []


def nothing_left(shop: Shop) -> list[str]:
    """No event left unpublished."""
    waiting = OutboxEvent.objects.filter(published_at__isnull=True)
    if waiting.exists():
        return [
            f"{waiting.count()} events unpublished: {_examples(waiting.values_list('type', 'last_error'))}"
        ]
    return []


def webhooks_processed(event_ids: set[str]) -> list[str]:
    """Every webhook the site took is stored once and processed without an error; none refused."""
    problems = []
    stored = list(
        WebhookEvent.objects.filter(signature_valid=True).values_list("event_id", "processed_at", "error")
    )
    missing = event_ids - {event_id for event_id, *_ in stored}
    unprocessed = [e for e, processed_at, _ in stored if processed_at is None]
    errors = [f"{e}: {error}" for e, processed_at, error in stored if processed_at and error]
    refused = list(WebhookEvent.objects.filter(signature_valid=False).values_list("error", flat=True))
    return problems + _counted(
        ("webhooks taken but not stored", missing),
        ("webhooks never processed", unprocessed),
        ("webhooks processed with an error", errors),
        ("webhooks refused", refused),
    )


def dead_letter_queue_depths() -> dict[str, int]:
    """Messages on every dead-letter queue of the test vhost (tasks' `<q>.dlq`, events' `G.events.dlq`)."""
    return {q["name"]: q["messages"] for q in rabbitmq_queues("messages") if q["name"].endswith(".dlq")}


def queued_tasks(queue: str) -> Counter:
    """The task names of the messages on `queue` (read without acknowledging: they stay there)."""
    names: Counter = Counter()
    with celery_app.connection_for_write() as conn:
        channel = conn.channel()
        try:
            bound = Queue(queue, no_declare=True)(channel)
            while (message := bound.get(no_ack=False)) is not None:
                names[message.headers.get("task") or "(an event)"] += 1
        finally:
            channel.close()  # what it read goes back to the queue
    return names


# What a known bug leaves behind -> the test of tests/chaos/test_found_bugs.py that reproduces it.
KNOWN_BUGS = {
    "payments.webhook_process failed for good": "test_a_webhook_whose_task_lost_its_database_connection_"
    "is_processed_after_a_retry",
    "subscriptions.toybox_build failed for good": "test_a_toybox_whose_build_lost_its_database_connection_"
    "is_built_after_a_retry",
    "subscriptions.on_payment_completed dead-lettered after its effect committed": "test_a_subscriber_that_"
    "committed_while_the_broker_refused_leaves_nothing_undone_on_its_return",
}


def _committed_then_refused(letter: DeadLetter) -> bool:
    """A dead letter of the subscriber whose on_commit hook could not send its task to the broker."""
    return letter.subscriber == "subscriptions.on_payment_completed" and "send_task" in letter.traceback


def dead_lettered(before: dict[str, int]) -> tuple[list[str], list[str]]:
    """(known bugs seen, other problems): DeadLetter rows, and tasks that failed for good (messages
    added to a task queue's `.dlq`; an event's `G.events.dlq` copy goes with its DeadLetter row)."""
    known, problems = set(), []
    letters = list(DeadLetter.objects.all())
    for letter in letters:
        if _committed_then_refused(letter):
            known.add("subscriptions.on_payment_completed dead-lettered after its effect committed")
        else:
            problems.append(f"dead letter: {letter.subscriber} on {letter.event_type}: {letter.error[:300]}")
    grown = [q for q, n in dead_letter_queue_depths().items() if n > before.get(q, 0)]
    for queue in grown:
        if queue.endswith(".events.dlq"):
            continue
        for task, n in queued_tasks(queue).items():
            trace = f"{task} failed for good"
            if trace in KNOWN_BUGS:
                known.add(trace)
            else:
                problems.append(f"{n} messages of {task} on {queue}: failed for good")
    return sorted(known), problems


def stragglers(shop: Shop) -> list[str]:
    """What an unsettled run still waits for, to say where it waits: the items not yet in their
    final state, with their payment and its webhooks (dispatched? checked? error?), and every
    queue's depth."""
    from django.utils import timezone

    now = timezone.now()
    lines = [f"straggling: {p}" for p in items_final(shop)]
    references = [f.reference for f in shop.flows if f.reference]
    paid = set(
        Payment.objects.filter(
            gateway="sandbox", gateway_reference__in=references, status="succeeded"
        ).values_list("gateway_reference", flat=True)
    )
    unpaid = [r for r in references if r not in paid]
    for reference in unpaid[:SHOWN]:
        payment = (
            Payment.objects.filter(gateway="sandbox", gateway_reference=reference)
            .values("status", "last_error", "updated_at")
            .first()
        )
        charge = SandboxCharge.objects.filter(reference=reference).values_list("status", flat=True).first()
        lines.append(f"payment {reference}: {payment}; at the gateway: {charge}")
        for hook in WebhookEvent.objects.filter(reference=reference).values(
            "event_id", "claimed_status", "received_at", "dispatched_at", "processed_at", "checks", "error"
        ):
            ages = {
                k: round((now - hook[k]).total_seconds(), 1) if hook[k] else None
                for k in ("received_at", "dispatched_at", "processed_at")
            }
            lines.append(
                f"  webhook {hook['event_id']} ({hook['claimed_status']}) s ago: {ages}, "
                f"checks {hook['checks']}, error {hook['error'][:200]!r}"
            )
    lines.append(f"payments not succeeded: {len(unpaid)}")
    waiting = WebhookEvent.objects.filter(signature_valid=True, processed_at__isnull=True)
    lines.append(
        f"webhooks unprocessed: {waiting.count()} "
        f"(never dispatched: {waiting.filter(dispatched_at__isnull=True).count()})"
    )
    lines.append(f"events unpublished: {OutboxEvent.objects.filter(published_at__isnull=True).count()}")
    lines.append(f"queues with messages (ready, unacknowledged, consumers): {queue_depths()}")
    return lines
