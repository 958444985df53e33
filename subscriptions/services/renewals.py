"""Renewal (beat): subscriptions due get their next period's invoice, charged by a task.

`renewals_dispatch` is beat's side: it reads due subscriptions and invoices due for another
attempt in keyset-paginated batches of SUBSCRIPTION_RENEWAL_BATCH ids (bounded memory, however
many are due) and sends tasks: one `renew_batch` per batch of subscriptions, one
`invoice_charge` per invoice due for another attempt. `subscriptions_renew` renews a batch: per
subscription, in its own transaction, it ends one cancelled at its period's end, advances a
skipped period, or opens the next period's invoice and has a task charge it.
"""

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core import events
from core.errors import BusinessRuleViolation
from subscriptions.models import Invoice, Subscription
from subscriptions.services.billing import ATTEMPT_LEASE, RENEWABLE
from subscriptions.services.common import lock_subscription, period_end, subscription_data
from subscriptions.services.lifecycle import invoice_open, subscription_end

logger = logging.getLogger("subscriptions.services")
RENEW_TASK = "subscriptions.renew_batch"
CHARGE_TASK = "subscriptions.invoice_charge"
RENEWAL_GRACE = timedelta(days=1)


def _keyset(queryset, time_field: str, now: datetime, batch: int) -> Iterator[list[int]]:
    """Ids of the rows due by `now`, oldest first, `batch` at a time (never all in memory)."""
    after: tuple[datetime, int] | None = None
    while True:
        page = queryset.filter(**{f"{time_field}__lte": now})
        if after is not None:
            page = page.filter(
                Q(**{f"{time_field}__gt": after[0]}) | Q(**{time_field: after[0], "pk__gt": after[1]})
            )
        rows = list(page.order_by(time_field, "pk").values_list(time_field, "pk")[:batch])
        if not rows:
            return
        yield [pk for _, pk in rows]
        after = rows[-1]


def due_subscriptions(now: datetime, batch: int) -> Iterator[list[int]]:
    return _keyset(Subscription.objects.filter(status__in=RENEWABLE), "next_renewal_at", now, batch)


def due_invoices(now: datetime, batch: int) -> Iterator[list[int]]:
    """Open invoices due for another attempt, of subscriptions that renew (not paused)."""
    invoices = Invoice.objects.filter(status=Invoice.Status.OPEN, subscription__status__in=RENEWABLE)
    return _keyset(invoices, "next_attempt_at", now, batch)


def renewals_dispatch(*, now: datetime | None = None, batch: int | None = None) -> tuple[int, int]:
    """Beat: send the renewal of every due subscription and the next attempt of every invoice
    due for one; (subscriptions, invoices) sent. Idempotent: the tasks check again under lock."""
    now, batch = now or timezone.now(), batch or settings.SUBSCRIPTION_RENEWAL_BATCH
    subscriptions = invoices = 0
    for ids in due_subscriptions(now, batch):
        current_app.send_task(RENEW_TASK, args=[ids])
        subscriptions += len(ids)
    for ids in due_invoices(now, batch):
        # Each attempt carries the number of failed attempts it follows (see billing._claim_attempt).
        for pk, attempts in Invoice.objects.filter(pk__in=ids).values_list("pk", "attempts"):
            current_app.send_task(CHARGE_TASK, args=[pk], kwargs={"attempt": attempts})
        invoices += len(ids)
    return subscriptions, invoices


def invoice_charge_request(*, invoice_id: int) -> Invoice:
    """Staff's "charge now": a worker charges the open invoice to the saved method, even when
    an earlier charge is held for staff with its outcome unknown (a new attempt, a new key)."""
    invoice = Invoice.objects.get(pk=invoice_id)
    if invoice.status != Invoice.Status.OPEN:
        raise BusinessRuleViolation(f"Invoice {invoice.number} is {invoice.status}: nothing to charge.")
    current_app.send_task(
        CHARGE_TASK,
        args=[invoice.pk],
        kwargs={"force": True, "attempt": invoice.attempts, "release_hold": True},
    )
    return invoice


def subscription_renew(
    *, subscription_id: int, now: datetime | None = None, send_charge: bool = True
) -> Invoice | None:
    """Renew one due subscription; the invoice to charge (its charge task is sent on commit,
    unless the caller charges it itself), or None (not due, ended at its period's end, or a
    skipped period)."""
    now = now or timezone.now()
    with transaction.atomic():
        subscription = lock_subscription(subscription_id)
        due = subscription.next_renewal_at
        if subscription.status not in RENEWABLE or due is None or due > now:
            return None
        if subscription.cancel_at_period_end:
            subscription_end(subscription, reason="cancelled at the end of the period")
            return None
        if subscription.skip_next:
            start = max(subscription.current_period_end or due, due)
            subscription.current_period_start = start
            subscription.current_period_end = period_end(start, subscription.plan.period_months)
            subscription.next_renewal_at = subscription.current_period_end
            subscription.skip_next = False
            subscription.save(
                update_fields=[
                    "current_period_start",
                    "current_period_end",
                    "next_renewal_at",
                    "skip_next",
                    "updated_at",
                ]
            )
            events.publish("subscription.renewed", subscription_data(subscription, skipped=True))
            return None
        # A renewal run late (beat stopped for days, a resumed subscription) starts its period
        # now: the customer is never charged for several periods at once.
        start = due if due > now - RENEWAL_GRACE else now
        # Leased to the charge task sent on commit (forced: it need not wait for the lease);
        # should that task be lost or refused, the dispatcher finds the invoice due when the
        # lease ends (robust: a refused send does not undo or fail the renewal committed).
        invoice = invoice_open(subscription, period_start=start, next_attempt_at=now + ATTEMPT_LEASE)
        subscription.next_renewal_at = None  # renewed: the invoice's attempts take over
        subscription.save(update_fields=["next_renewal_at", "updated_at"])
        if send_charge:
            pk = invoice.pk
            transaction.on_commit(
                lambda: current_app.send_task(CHARGE_TASK, args=[pk], kwargs={"force": True, "attempt": 0}),
                robust=True,
            )
    return invoice


def subscriptions_renew(*, subscription_ids: list[int], now: datetime | None = None) -> int:
    """Renew each (one's failure does not stop the others); how many invoices were opened."""
    opened = 0
    for subscription_id in subscription_ids:
        try:
            opened += subscription_renew(subscription_id=subscription_id, now=now) is not None
        except Exception:
            logger.exception("could not renew subscription", extra={"subscription": subscription_id})
    return opened
