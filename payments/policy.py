"""The one payment policy that every app selling something uses (orders, bookings, ...).

- payment_open: open (or reuse) the payment for items of a registered purpose, priced by
  that purpose server-side, refused whole if any item cannot be paid;
- item_payments_close: close the item's payments that can still be paid;
- item_payment_received: whether a payment for the item succeeded and its completion is
  still on its way;
- completion_claim / completion_accept / completion_hold / completion_refuse: what an item
  does when its payment completes, recorded on the allocation, so that a repeated
  completion is recognised by data and changes nothing;
- allocation_refund: refund money an item no longer wants: what is already refunded or on
  its way counts, one idempotency key per cause, and staff are flagged when it is refused.

Checkouts are opened with payments.services.payment_checkout_open (a gateway refusal
cancels the payment: payment.cancelled with reason "gateway_refused").

Locks: the caller holds its item's row lock; these functions then lock the payment, then
its allocation (item, payment, allocation, everywhere).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from core.errors import ApplicationError
from core.money import quantize
from payments import services
from payments.errors import PaymentErrorCode, PaymentRefused
from payments.models import Payment, PaymentAllocation, Refund
from payments.purposes import Payable, items_priced

OPEN = (Payment.Status.CREATED, Payment.Status.PENDING)
PAID = (Payment.Status.SUCCEEDED, Payment.Status.PARTIALLY_REFUNDED)


@dataclass(frozen=True)
class Completion:
    """A completed payment's allocation to one item, locked, not settled yet."""

    allocation_id: int
    payment_pk: int
    payment_id: str  # the public id
    customer_id: int
    amount: Decimal  # what the payment brought for this item
    currency: str
    kind: str
    succeeded: bool  # the payment still stands (False: failed, or refunded, since it completed)


@dataclass(frozen=True)
class RefundOutcome:
    requested: bool  # a refund of what was left is on its way (asked now, or earlier for this cause)
    flagged: bool  # the refund could not be asked for: staff must act (the payment is flagged)
    note: str  # what happened, for the item's audit trail
    refund_id: str = ""
    nothing_paid: bool = False  # the payment took no money (or none is left of it): nothing to refund


# --- Opening and closing ---------------------------------------------------------------------
def _lock_items(purpose: str, item_ids: Sequence[str]) -> None:
    """Serialise the opening of payments for the same items (two tabs, two retries...).

    A transaction-scoped advisory lock per item, taken in a fixed order; on SQLite the
    transaction already holds the database's write lock.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for key in sorted(f"{purpose}:{item_id}" for item_id in item_ids):
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])


def _paid_elsewhere(purpose: str, item_ids: Sequence[str]) -> str | None:
    """An item that a succeeded payment already pays (and that did not refuse it)."""
    return (
        PaymentAllocation.objects.filter(
            purpose=purpose, purpose_id__in=list(item_ids), payment__status__in=PAID
        )
        .exclude(outcome=PaymentAllocation.Outcome.REFUSED)
        .values_list("purpose_id", flat=True)
        .first()
    )


def _open_payment_for(
    *, customer_id: int, purpose: str, items: list[Payable], gateway: str, saved_method_id: int | None
) -> Payment | None:
    """An open payment at `gateway` for exactly these items at these amounts, to be reused: a
    checkout for a checkout, a charge of the same saved method for a charge."""
    currency = items[0].currency
    wanted = {(item.item_id, Decimal(item.amount)) for item in items}
    candidates = Payment.objects.filter(
        customer_id=customer_id,
        purpose=purpose,
        gateway=gateway,
        status__in=OPEN,
        currency=currency,
        saved_method_id=saved_method_id,
        allocations__purpose_id=items[0].item_id,
    ).order_by("-created_at")
    for payment in candidates:
        if {(a.purpose_id, a.amount) for a in payment.allocations.all()} == wanted:
            return payment
    return None


def payment_open(
    *,
    customer_id: int,
    purpose: str,
    item_ids: Sequence[str],
    gateway: str | None = None,
    saved_method_id: int | None = None,
) -> Payment:
    """The payment for `item_ids` of `purpose`: an open one for exactly them at `gateway`, or a
    new one (payment.created), priced by the purpose, never by the caller. With
    `saved_method_id`, a payment to be charged to that method (payments.charges), reused until
    the gateway has answered, so that a charge whose answer was lost is never made twice.

    Refused whole (PaymentRefused, nothing created) when the purpose is not registered, or an
    item is repeated, unknown, another customer's, not payable now or already paid.
    """
    item_ids = [str(item_id) for item_id in item_ids]
    with transaction.atomic():
        _lock_items(purpose, item_ids)
        items = items_priced(purpose=purpose, item_ids=item_ids, customer_id=customer_id)
        paid = _paid_elsewhere(purpose, item_ids)
        if paid is not None:
            raise PaymentRefused(
                f"{purpose} {paid} is paid already.",
                code=PaymentErrorCode.ITEM_ALREADY_PAID,
                extra={"purpose": purpose, "item_id": paid},
            )
        gateway = services.payment_gateway_choose(gateway)
        reused = _open_payment_for(
            customer_id=customer_id,
            purpose=purpose,
            items=items,
            gateway=gateway,
            saved_method_id=saved_method_id,
        )
        if reused is not None:
            return reused
        return services.payment_create(
            customer_id=customer_id,
            purpose=purpose,
            items=items,
            gateway=gateway,
            saved_method_id=saved_method_id,
        )


def _unsettled_payments(purpose: str, item_id: str, statuses: tuple[str, ...]) -> list[Payment]:
    """The item's payments in `statuses` whose allocation to it is not settled, locked in pk order."""
    ids = PaymentAllocation.objects.filter(
        purpose=purpose,
        purpose_id=item_id,
        outcome=PaymentAllocation.Outcome.OPEN,
        payment__status__in=statuses,
    ).values_list("payment_id", flat=True)
    return list(Payment.objects.select_for_update().filter(pk__in=list(ids)).order_by("pk"))


def item_payments_close(*, purpose: str, item_id: str) -> list[str]:
    """Close every payment that pays only this item and can still be paid (payment.cancelled,
    reason "expired"); their public ids. A payment that also pays other items stays open for
    them: if it completes, this item refuses its share, which is refunded. One that succeeded
    meanwhile is left alone: its payment.completed is on its way, and the item's completion
    handler refuses it if the item no longer wants it."""
    closed = []
    for payment in _unsettled_payments(purpose, item_id, OPEN):
        if payment.allocations.exclude(purpose=purpose, purpose_id=item_id).exists():
            continue
        services.payment_expire(payment_id=payment.pk)
        closed.append(payment.public_id)
    return closed


def item_payment_received(*, purpose: str, item_id: str) -> bool:
    """Whether a payment for the item succeeded and its completion is still to be applied.

    Locks the item's unsettled payments, open ones included, so that none completes while
    the caller decides (to expire or cancel the item, say).
    """
    return any(p.status in PAID for p in _unsettled_payments(purpose, item_id, OPEN + PAID))


def payment_is_open(*, payment_id: int) -> bool:
    return Payment.objects.filter(pk=payment_id, status__in=OPEN).exists()


# --- Completion ------------------------------------------------------------------------------
def _allocation_locked(**filters) -> PaymentAllocation | None:
    """An allocation and its payment, both locked: the payment first, as everywhere."""
    found = PaymentAllocation.objects.filter(**filters).values_list("pk", "payment_id").first()
    if found is None:
        return None
    payment = Payment.objects.select_for_update().get(pk=found[1])
    allocation = PaymentAllocation.objects.select_for_update().get(pk=found[0])
    allocation.payment = payment
    return allocation


def completion_claim(*, payment_id: str, purpose: str, item_id: str) -> Completion | None:
    """The completed payment's allocation to this item, locked; None when there is none or it
    was settled already (a repeated payment.completed)."""
    allocation = _allocation_locked(payment__public_id=payment_id, purpose=purpose, purpose_id=item_id)
    if allocation is None or allocation.outcome != PaymentAllocation.Outcome.OPEN:
        return None
    payment = allocation.payment
    return Completion(
        allocation_id=allocation.pk,
        payment_pk=payment.pk,
        payment_id=payment.public_id,
        customer_id=payment.customer_id,
        amount=quantize(allocation.amount, payment.currency),
        currency=payment.currency,
        kind=allocation.kind,
        # Still paid, and nothing of this item's part refunded since (a partial refund of
        # another item's part leaves this one standing).
        succeeded=payment.status in PAID and allocation.refunded_amount == 0,
    )


def _settle(allocation_id: int, outcome: str, note: str) -> None:
    PaymentAllocation.objects.filter(pk=allocation_id).update(
        outcome=outcome, outcome_note=note[:2000], settled_at=timezone.now()
    )


def completion_accept(completion: Completion, *, note: str = "") -> None:
    """The item took the money."""
    _settle(completion.allocation_id, PaymentAllocation.Outcome.ACCEPTED, note)


def completion_hold(completion: Completion, *, reason: str) -> None:
    """The item holds the money until staff accept it (completion_accept_held) or refund it."""
    _settle(completion.allocation_id, PaymentAllocation.Outcome.HELD, reason)
    services.payment_flag(Payment.objects.get(pk=completion.payment_pk), reason)


def held_accept(*, payment_id: int, purpose: str, item_id: str, note: str = "") -> bool:
    """Staff accepted money an item held; False if there was none held for it."""
    return bool(
        PaymentAllocation.objects.filter(
            payment_id=payment_id,
            purpose=purpose,
            purpose_id=item_id,
            outcome=PaymentAllocation.Outcome.HELD,
            payment__status__in=PAID,
        ).update(
            outcome=PaymentAllocation.Outcome.ACCEPTED, outcome_note=note[:2000], settled_at=timezone.now()
        )
    )


def held_refuse(*, payment_id: int, purpose: str, item_id: str, reason: str) -> RefundOutcome:
    """Staff refund money an item held: it is refunded in full, as a refused completion is."""
    allocation = PaymentAllocation.objects.filter(
        payment_id=payment_id, purpose=purpose, purpose_id=item_id
    ).first()
    if allocation is None:
        return RefundOutcome(False, False, "nothing was paid online for it", nothing_paid=True)
    _settle(allocation.pk, PaymentAllocation.Outcome.REFUSED, reason)
    return allocation_refund(allocation_id=allocation.pk, reason=reason, cause="unwanted")


def completion_refuse(completion: Completion, *, reason: str) -> RefundOutcome:
    """The item cannot take the money: it is refunded in full and the payment flagged for staff."""
    _settle(completion.allocation_id, PaymentAllocation.Outcome.REFUSED, reason)
    outcome = allocation_refund(allocation_id=completion.allocation_id, reason=reason, cause="unwanted")
    payment = Payment.objects.get(pk=completion.payment_pk)
    services.payment_flag(payment, f"{reason}: {outcome.note}")
    return outcome


# --- Refunds ---------------------------------------------------------------------------------
def allocation_refund(
    *,
    allocation_id: int | None = None,
    payment_id: int | None = None,
    purpose: str = "",
    item_id: str = "",
    reason: str,
    cause: str,
    requested_by_id: int | None = None,
) -> RefundOutcome:
    """Refund all that is left of what a payment brought for one item (by allocation id, or by
    payment and item), because the item no longer wants it for `cause` ("cancelled", ...).

    What is already refunded, or on its way, counts; under one cause the refund is asked for
    once (its idempotency key). When it cannot be asked for, the payment is flagged.
    """
    if allocation_id is not None:
        allocation = _allocation_locked(pk=allocation_id)
    else:
        allocation = _allocation_locked(payment_id=payment_id, purpose=purpose, purpose_id=item_id)
        if allocation is None:
            return RefundOutcome(False, False, "nothing was paid online for it", nothing_paid=True)
    payment = allocation.payment
    key = f"{allocation.purpose}:{allocation.purpose_id}:{payment.public_id}:{cause}"
    existing = Refund.objects.filter(idempotency_key=key).first()
    if existing is not None and existing.status != Refund.Status.FAILED:
        return RefundOutcome(
            True, False, f"a refund was already requested ({existing.public_id})", existing.public_id
        )
    if existing is not None:  # the key would only return the failed refund
        note = f"the refund {existing.public_id} failed: refund by hand"
        services.payment_flag(payment, f"{allocation.purpose} {allocation.purpose_id}: {note}")
        return RefundOutcome(False, True, note, existing.public_id)
    if payment.status not in PAID:
        if payment.status == Payment.Status.REFUNDED:
            return RefundOutcome(False, False, "already refunded in full")
        return RefundOutcome(False, False, "nothing was paid online for it", nothing_paid=True)
    left = services.refundable_by_allocation(payment).get(allocation.pk, Decimal(0))
    if left <= 0:
        pending = (
            Refund.objects.filter(shares__allocation=allocation, status=Refund.Status.PENDING)
            .values_list("public_id", flat=True)
            .first()
        )
        if pending:
            return RefundOutcome(False, False, f"a refund was already requested ({pending})", pending)
        amount = quantize(allocation.amount, payment.currency)
        return RefundOutcome(False, False, f"already refunded in full ({amount} {payment.currency})")
    try:
        refund = services.refund_request(
            payment_id=payment.pk,
            amount=left,
            reason=reason,
            idempotency_key=key,
            requested_by_id=requested_by_id,
            allocation_id=allocation.pk,
        )
    except ApplicationError as exc:
        note = f"refund refused ({exc.message}): refund by hand"
        services.payment_flag(payment, f"{allocation.purpose} {allocation.purpose_id}: {note}")
        return RefundOutcome(False, True, note)
    full = "full refund" if left == allocation.amount else f"refund of the {left} {payment.currency} left"
    return RefundOutcome(True, False, f"{full} requested ({refund.public_id})", refund.public_id)


# --- Reading what a payment event says about one's items --------------------------------------
def event_allocations(data: dict, purpose: str) -> list[dict]:
    """The allocations of a payment.* event's data that are for `purpose`, by item id (so that
    a subscriber handling several locks its items in one order); data from before allocations
    name one `purpose_id`."""
    allocations = data.get("allocations")
    if allocations is None and data.get("purpose") == purpose and data.get("purpose_id"):
        return [{"purpose": purpose, "purpose_id": data["purpose_id"], "amount": data.get("amount")}]
    return sorted(
        (a for a in allocations or () if a.get("purpose") == purpose), key=lambda a: a["purpose_id"]
    )


@dataclass(frozen=True)
class ItemRefund:
    """What one payment.refunded did to one item of a purpose."""

    item_id: str
    amount: str  # what this refund took from the item
    full: bool  # the item has had all of its part back
    refused: bool  # the item never took that money (its completion refused it)


def event_refunds(data: dict, purpose: str) -> list[ItemRefund]:
    """The items of `purpose` a payment.refunded took money from, by item id (data from
    before allocations: the payment's one item, `full` as the payment's)."""
    taken = {a["purpose_id"]: a["amount"] for a in data.get("refund_allocations", ())}
    refunds = []
    for allocation in event_allocations(data, purpose):
        item_id = allocation["purpose_id"]
        if "refund_allocations" in data and item_id not in taken:
            continue  # this refund took nothing from that item
        full = bool(data.get("full"))
        if "refunded_amount" in allocation:
            full = Decimal(allocation["refunded_amount"]) == Decimal(allocation["amount"])
        refunds.append(
            ItemRefund(
                item_id=item_id,
                amount=str(taken.get(item_id, data.get("amount", ""))),
                full=full,
                refused=allocation.get("outcome") == PaymentAllocation.Outcome.REFUSED,
            )
        )
    return refunds
