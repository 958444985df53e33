"""Writes on payments. Each owns its transaction, locks the payment row, follows
payments.transitions, appends to the ledger and publishes payment.* events.

Gateway calls happen outside these transactions (a slow provider must not hold row locks):
callers call the gateway, then hand its answer to payment_apply_state / refund_apply_result.
"""

from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from core import events, http
from core.errors import BusinessRuleViolation, InvalidInput, Unavailable
from core.money import MoneyError, exponent, quantize
from payments.errors import PaymentErrorCode
from payments.event_data import payment_event_data
from payments.gateways.base import CheckoutRequest, GatewayError, PaymentState, RefundResult, Status
from payments.methods import customer_key, method_keep, purpose_saves_methods
from payments.models import (
    Payment,
    PaymentAllocation,
    PaymentLedgerEntry,
    Refund,
    RefundShare,
)
from payments.purposes import Payable
from payments.registry import gateway_for
from payments.transitions import PAYMENT, REFUND

EVENT_BY_STATUS = {
    Payment.Status.SUCCEEDED: "payment.completed",
    Payment.Status.FAILED: "payment.failed",
    Payment.Status.CANCELLED: "payment.cancelled",
}


def _ledger(payment: Payment, source: str, *, state: PaymentState | None = None, note: str = "", raw=None):
    PaymentLedgerEntry.objects.create(
        payment=payment,
        source=source,
        reported_status=state.status if state else "",
        amount=state.amount if state else None,
        currency=state.currency if state else "",
        note=note,
        raw=raw if raw is not None else (state.raw if state else {}),
    )


def _move(payment: Payment, target: str, *, fields: tuple[str, ...] = ()) -> None:
    PAYMENT.check(payment.status, target)
    payment.status = target
    payment.save(update_fields=["status", "updated_at", *fields])


def payment_flag(payment: Payment, reason: str) -> None:
    """Put the payment on the staff's mismatch list, keeping what it was flagged for before,
    and tell staff (payment.flagged) once per reason."""
    if reason in payment.flagged_reason:
        return
    payment.flagged_reason = "\n".join(filter(None, [payment.flagged_reason, reason]))[:4000]
    with transaction.atomic():
        Payment.objects.filter(pk=payment.pk).update(
            flagged_reason=payment.flagged_reason, updated_at=timezone.now()
        )
        events.publish("payment.flagged", payment_event_data(payment, reason=reason))


def payment_flag_resolve(*, payment_id: int, note: str, by: str) -> Payment:
    """Take a payment off the staff's mismatch list once they have dealt with it. The ledger
    keeps what it was flagged for, who resolved it and how; a new mismatch flags it again."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if not payment.flagged_reason:
            raise BusinessRuleViolation("This payment is not flagged.")
        _ledger(
            payment,
            PaymentLedgerEntry.Source.STAFF,
            note=f"flag resolved by {by}: {note}\nit was flagged for: {payment.flagged_reason}",
        )
        payment.flagged_reason = ""
        payment.save(update_fields=["flagged_reason", "updated_at"])
    return payment


def payment_create(
    *,
    customer_id: int,
    purpose: str,
    items: list[Payable],
    gateway: str,
    deadline: datetime | None = None,
    saved_method_id: int | None = None,
) -> Payment:
    """A new payment in `created` for `items` (priced by their purpose), and payment.created.

    Its amount is the sum of the items' amounts; it expires at the earliest of the items'
    deadlines, or after PAYMENT_DEADLINE_MINUTES. Callers go through payments.policy, which
    prices and checks the items first. The checkout is started by the caller.
    """
    currency = items[0].currency
    try:
        amounts = [quantize(item.amount, currency) for item in items]
    except MoneyError as exc:  # the item's app priced it wrongly
        raise InvalidInput(str(exc), extra={"fields": {"amount": [str(exc)]}}) from exc
    if any(amount <= 0 for amount in amounts):
        raise InvalidInput(
            "Every item's amount must be positive.", extra={"fields": {"amount": ["positive"]}}
        )
    deadlines = [item.deadline for item in items if item.deadline is not None]
    if deadline is None:
        deadline = min(
            deadlines, default=timezone.now() + timedelta(minutes=settings.PAYMENT_DEADLINE_MINUTES)
        )
    with transaction.atomic(savepoint=False):  # inside payment_open's, all or nothing anyway
        payment = Payment.objects.create(
            customer_id=customer_id,
            amount=sum(amounts, Decimal(0)),
            currency=currency,
            purpose=purpose,
            gateway=gateway,
            # Each allocation keeps its own kind; the payment's is theirs when they agree.
            kind=kinds.pop() if len(kinds := {item.kind for item in items}) == 1 else Payment.Kind.FULL,
            deadline=deadline,
            saved_method_id=saved_method_id,
        )
        allocations = PaymentAllocation.objects.bulk_create(
            PaymentAllocation(
                payment=payment, purpose=purpose, purpose_id=item.item_id, amount=amount, kind=item.kind
            )
            for item, amount in zip(items, amounts, strict=True)
        )
        events.publish("payment.created", payment_event_data(payment, allocations))
    return payment


def payment_checkout_started(*, payment_id: int, reference: str, checkout_url: str, raw: dict) -> Payment:
    """The gateway accepted the checkout: remember its reference and wait for the customer."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.status == Payment.Status.PENDING and payment.gateway_reference == reference:
            return payment  # repeated
        payment.gateway_reference = reference
        payment.checkout_url = checkout_url
        _move(payment, Payment.Status.PENDING, fields=("gateway_reference", "checkout_url"))
        _ledger(payment, PaymentLedgerEntry.Source.CHECKOUT, note="checkout created", raw=raw)
    return payment


def payment_record_error(*, payment_id: int, error: str) -> None:
    """A gateway call failed (it will be retried, or reconciliation picks it up)."""
    Payment.objects.filter(pk=payment_id).update(last_error=error[:2000], updated_at=timezone.now())


def payment_apply_state(*, payment_id: int, state: PaymentState, source: str, reference: str = "") -> Payment:
    """Apply what the gateway's API says about the payment (after a webhook, or on reconciliation).

    A success whose amount or currency differs from ours is not a success: the payment is
    flagged for staff. A success after the payment expired or was cancelled is recorded and
    flagged, and still completes it (payment.completed with "late": true), so that the order
    or booking decides what to do; anything else follows the transition table, and repeats
    are no-ops.
    """
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if reference and payment.status == Payment.Status.CREATED:
            # A charge made without the customer (payments.charges): its reference at the
            # gateway, and pending, before its outcome is applied in the same transaction.
            payment.gateway_reference = reference
            _move(payment, Payment.Status.PENDING, fields=("gateway_reference",))
        _ledger(payment, source, state=state)
        if state.status == Status.SUCCEEDED and (
            state.amount != payment.amount or state.currency != payment.currency
        ):
            reason = (
                f"gateway reports {state.amount} {state.currency} paid, "
                f"payment is for {payment.amount} {payment.currency}"
            )
            payment_flag(payment, reason)
            return payment
        target = {
            Status.SUCCEEDED: Payment.Status.SUCCEEDED,
            Status.FAILED: Payment.Status.FAILED,
            Status.CANCELLED: Payment.Status.CANCELLED,
            Status.PENDING: Payment.Status.PENDING,
        }.get(state.status)
        if target is None or PAYMENT.is_repeat(payment.status, target):
            return payment  # refunds are applied by refund_apply_result; repeats change nothing
        late = target == Payment.Status.SUCCEEDED and payment.status in (
            Payment.Status.EXPIRED,
            Payment.Status.CANCELLED,
            Payment.Status.FAILED,
        )
        if late:
            reason = f"paid after it was {payment.status}"
            payment.status = Payment.Status.SUCCEEDED
            payment.save(update_fields=["status", "updated_at"])
            payment_flag(payment, reason)
        elif not PAYMENT.allowed(payment.status, target):
            return payment  # e.g. a "pending" report about a payment that has moved on
        else:
            payment.last_error = state.error if target == Payment.Status.FAILED else payment.last_error
            _move(payment, target, fields=("last_error",))
        if target == Payment.Status.SUCCEEDED and state.saved_method is not None:
            method_keep(payment=payment, saved=state.saved_method)
        event = EVENT_BY_STATUS.get(target)
        if event:
            extra = {"late": True} if late else {}
            if target == Payment.Status.FAILED:
                extra["error"] = state.error
            events.publish(event, payment_event_data(payment, **extra))
    return payment


def payment_expire(*, payment_id: int) -> Payment:
    """A payment not paid by its deadline expires (payment.cancelled with reason "expired")."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.status not in (Payment.Status.CREATED, Payment.Status.PENDING):
            return payment  # expired already, or settled meanwhile (a webhook won the race)
        _move(payment, Payment.Status.EXPIRED)
        _ledger(payment, PaymentLedgerEntry.Source.STAFF, note="deadline passed")
        events.publish("payment.cancelled", payment_event_data(payment, reason="expired"))
    return payment


def refund_reserve(
    *,
    payment_id: int,
    amount: Decimal | str | None,
    reason: str,
    idempotency_key: str,
    requested_by_id: int | None,
    allocation_id: int | None = None,
) -> Refund:
    """Reserve a refund of `amount` (None: everything left) before asking the gateway.

    The refund comes out of one allocation (`allocation_id`) or, by default, out of all of
    them in proportion to what is left of each. The payment row is locked, so two concurrent
    refunds cannot together exceed what was captured: pending refunds count against the
    refundable amount. The same idempotency key returns the same refund.
    """
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        existing = Refund.objects.filter(idempotency_key=idempotency_key).first()
        if existing:
            if existing.payment_id != payment.pk:
                raise BusinessRuleViolation(
                    "This idempotency key was used for another refund.", code=PaymentErrorCode.KEY_REUSED
                )
            return existing
        if payment.status not in (Payment.Status.SUCCEEDED, Payment.Status.PARTIALLY_REFUNDED):
            raise BusinessRuleViolation(
                f"Only a paid payment can be refunded; this one is {payment.status}.",
                code=PaymentErrorCode.NOT_REFUNDABLE,
            )
        room = refundable_by_allocation(payment)
        if allocation_id is not None:
            if allocation_id not in room:
                raise InvalidInput(
                    "The payment pays for no such item.",
                    code=PaymentErrorCode.UNKNOWN_ALLOCATION,
                    extra={"fields": {"item_id": ["not paid by this payment"]}},
                )
            room = {allocation_id: room[allocation_id]}
        left = quantize(sum(room.values(), Decimal(0)), payment.currency)
        try:
            amount = left if amount is None else quantize(amount, payment.currency)
        except MoneyError as exc:
            raise InvalidInput(str(exc), extra={"fields": {"amount": [str(exc)]}}) from exc
        if amount <= 0 or amount > left:
            raise BusinessRuleViolation(
                f"At most {left} {payment.currency} can be refunded.",
                code=PaymentErrorCode.REFUND_TOO_LARGE,
                extra={"refundable": str(left), "currency": payment.currency},
            )
        refund = Refund.objects.create(
            payment=payment,
            amount=amount,
            currency=payment.currency,
            full=amount == payment.amount - payment.refunded_amount,
            reason=reason,
            idempotency_key=idempotency_key,
            requested_by_id=requested_by_id,
        )
        RefundShare.objects.bulk_create(
            RefundShare(refund=refund, allocation_id=pk, amount=share)
            for pk, share in _shares(amount, room, payment.currency).items()
        )
        return refund


def refundable_by_allocation(payment: Payment) -> dict[int, Decimal]:
    """What is left to refund of each allocation: its amount less what is refunded or pending."""
    pending = dict(
        RefundShare.objects.filter(refund__payment=payment, refund__status=Refund.Status.PENDING)
        .values_list("allocation")
        .annotate(s=Sum("amount"))
    )
    return {
        a.pk: a.amount - a.refunded_amount - pending.get(a.pk, 0)
        for a in PaymentAllocation.objects.filter(payment=payment).order_by("pk")
    }


def _shares(amount: Decimal, room: dict[int, Decimal], currency: str) -> dict[int, Decimal]:
    """Split `amount` over the allocations in proportion to their room, in the currency's units,
    never past any allocation's room (the remainder goes, unit by unit, where there is room)."""
    total = sum(room.values(), Decimal(0))
    unit = Decimal(1).scaleb(-exponent(currency))
    shares = {pk: (amount * left / total).quantize(unit, rounding=ROUND_DOWN) for pk, left in room.items()}
    rest = amount - sum(shares.values(), Decimal(0))
    while rest > 0:
        for pk, left in room.items():
            if rest > 0 and shares[pk] < left:
                step = min(unit, rest, left - shares[pk])
                shares[pk] += step
                rest -= step
    return {pk: share for pk, share in shares.items() if share > 0}


def refund_apply_result(*, refund_id: int, result: RefundResult | None, error: str = "") -> Refund:
    """Apply the gateway's answer: a succeeded refund moves the payment and publishes payment.refunded."""
    with transaction.atomic():
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        payment = Payment.objects.select_for_update().get(pk=refund.payment_id)
        if refund.status != Refund.Status.PENDING:
            return refund  # already applied
        if result is None or result.status == Status.FAILED:
            REFUND.check(refund.status, Refund.Status.FAILED)
            refund.status, refund.error = Refund.Status.FAILED, error or "refused by the gateway"
            refund.save(update_fields=["status", "error", "updated_at"])
            _ledger(
                payment,
                PaymentLedgerEntry.Source.REFUND,
                note=f"refund {refund.public_id} failed: {refund.error}",
            )
            payment_flag(payment, f"refund {refund.public_id} failed: {refund.error}; refund by hand")
            return refund
        refund.gateway_refund_id = result.refund_reference
        if result.status == Status.PENDING:
            refund.save(update_fields=["gateway_refund_id", "updated_at"])
            return refund
        REFUND.check(refund.status, Refund.Status.SUCCEEDED)
        refund.status = Refund.Status.SUCCEEDED
        refund.save(update_fields=["status", "gateway_refund_id", "updated_at"])
        payment.refunded_amount += refund.amount
        full = payment.refunded_amount == payment.amount
        allocations = {a.pk: a for a in PaymentAllocation.objects.filter(payment=payment).order_by("pk")}
        shares = list(refund.shares.all())
        for share in shares:
            allocation = allocations[share.allocation_id]
            allocation.refunded_amount += share.amount
            allocation.save(update_fields=["refunded_amount"])
        _move(
            payment,
            Payment.Status.REFUNDED if full else Payment.Status.PARTIALLY_REFUNDED,
            fields=("refunded_amount",),
        )
        _ledger(
            payment,
            PaymentLedgerEntry.Source.REFUND,
            note=f"refund {refund.public_id} succeeded",
            raw=result.raw,
        )
        data = payment_event_data(
            payment, list(allocations.values()), payment_amount=quantize(payment.amount, payment.currency)
        )
        data |= {
            "refund_id": refund.public_id,
            "amount": quantize(refund.amount, refund.currency),
            "reason": refund.reason,
            "full": full,
            # What this refund took from each item; `allocations` says what each has had back in all.
            "refund_allocations": [
                {
                    "purpose": allocations[share.allocation_id].purpose,
                    "purpose_id": allocations[share.allocation_id].purpose_id,
                    "amount": quantize(share.amount, refund.currency),
                }
                for share in shares
            ],
        }
        events.publish("payment.refunded", data)
    return refund


def payment_verify(*, payment_id: int) -> Payment:
    """Ask the gateway now (the API's /process, and reconciliation)."""
    from payments.registry import gateway_for

    payment = Payment.objects.get(pk=payment_id)
    if not payment.gateway_reference:
        return payment
    state = gateway_for(payment.gateway).verify(payment.gateway_reference)
    return payment_apply_state(payment_id=payment.pk, state=state, source=PaymentLedgerEntry.Source.VERIFY)


def payment_start_checkout(
    *, payment_id: int, return_url: str, description: str, customer_email: str
) -> Payment:
    """Open the checkout at the payment's gateway (outside any transaction: a network call).

    Raises GatewayError; the error is kept on the payment, which stays `created`, so the same
    call can be made again (the gateway de-duplicates by the payment's idempotency key).
    """
    payment = Payment.objects.get(pk=payment_id)
    if payment.status != Payment.Status.CREATED:
        return payment
    request = CheckoutRequest(
        payment_id=payment.public_id,
        amount=quantize(payment.amount, payment.currency),
        currency=payment.currency,
        description=description or f"Payment {payment.public_id}",
        customer_email=customer_email,
        return_url=return_url,
        idempotency_key=payment.public_id,
        # A purpose that charges again later (subscriptions) has the gateway keep the method.
        save_method=purpose_saves_methods(payment.purpose),
        customer_key=customer_key(payment.customer_id),
    )
    try:
        session = gateway_for(payment.gateway).create_checkout(request)
    except GatewayError as exc:
        payment_record_error(payment_id=payment.pk, error=str(exc))
        raise
    return payment_checkout_started(
        payment_id=payment.pk, reference=session.reference, checkout_url=session.redirect_url, raw=session.raw
    )


def payment_gateway_choose(requested: str | None = None) -> str:
    """The gateway for a new payment: the sandbox with PAYMENT_ENV=mock, else the one asked for
    or PAYMENT_DEFAULT_GATEWAY."""
    if settings.PAYMENT_ENV == "mock":
        return "sandbox"
    return requested or settings.PAYMENT_DEFAULT_GATEWAY


def payment_checkout_open(
    *, payment_id: int, return_url: str, description: str, customer_email: str
) -> Payment:
    """payment_start_checkout for an API request: a gateway failure becomes the caller's answer.

    A transient failure is a 503 (`gateway_unavailable`, not stored by an idempotent request,
    so the client's retry opens the checkout of the same payment); a refusal cancels the
    payment (payment.cancelled) and is a 422 (`gateway_refused`).

    The gateway's calls share PAYMENT_GATEWAY_REQUEST_BUDGET_SECONDS (core.http.time_budget),
    below the web server's request timeout: a gateway that hangs, or keeps failing, is a 503
    in time rather than a killed request. The payment stays `created` for the retry; one never
    retried expires at its deadline (payments.reconciliation).
    """
    try:
        with http.time_budget(settings.PAYMENT_GATEWAY_REQUEST_BUDGET_SECONDS):
            return payment_start_checkout(
                payment_id=payment_id,
                return_url=return_url,
                description=description,
                customer_email=customer_email,
            )
    except GatewayError as exc:
        public_id = Payment.objects.values_list("public_id", flat=True).get(pk=payment_id)
        if exc.transient:
            raise Unavailable(
                str(exc), code=PaymentErrorCode.GATEWAY_UNAVAILABLE, extra={"payment": public_id}
            ) from exc
        payment_checkout_refused(payment_id=payment_id, error=str(exc))
        raise BusinessRuleViolation(
            f"The gateway refused the payment: {exc}",
            code=PaymentErrorCode.GATEWAY_REFUSED,
            extra={"gateway_code": exc.code, "payment": public_id},
        ) from exc


def payment_checkout_refused(*, payment_id: int, error: str) -> Payment:
    """The gateway will not take this payment: it is cancelled (payment.cancelled with reason
    "gateway_refused" and the error), so whatever it was for can be paid another way."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.status != Payment.Status.CREATED:
            return payment  # the checkout was opened after all, or it is closed already
        payment.last_error = error[:2000]
        _move(payment, Payment.Status.CANCELLED, fields=("last_error",))
        _ledger(payment, PaymentLedgerEntry.Source.CHECKOUT, note=f"checkout refused: {payment.last_error}")
        events.publish(
            "payment.cancelled", payment_event_data(payment, reason="gateway_refused", error=error)
        )
    return payment


def refund_request(
    *,
    payment_id: int,
    amount: Decimal | str | None,
    reason: str,
    idempotency_key: str,
    requested_by_id: int | None,
    allocation_id: int | None = None,
) -> Refund:
    """Reserve a refund (refund_reserve) and, once committed, have a task ask the gateway.

    If that task is lost after the commit (or the broker refuses it), reconciliation (beat,
    every five minutes) sends the reserved refund.
    """
    from payments.tasks import refund_execute as refund_execute_task

    with transaction.atomic():
        refund = refund_reserve(
            payment_id=payment_id,
            amount=amount,
            reason=reason,
            idempotency_key=idempotency_key,
            requested_by_id=requested_by_id,
            allocation_id=allocation_id,
        )
        if refund.status == Refund.Status.PENDING and not refund.sent_at:
            pk = refund.pk
            # robust: the refund is kept whatever the broker says; a send refused after the
            # commit must not fail the caller (staff would see an error for a refund that
            # stands, a subscriber would be retried after its effect): the sweep sends it.
            transaction.on_commit(lambda: refund_execute_task.delay(pk), robust=True)
    return refund


def refund_execute(*, refund_id: int) -> Refund:
    """Ask the gateway for a reserved refund and apply its answer.

    Raises GatewayError(transient=True) when the call may be tried again: only at gateways
    that de-duplicate refunds; elsewhere the refund stays pending, the payment is flagged,
    and staff check at the provider before anything is sent again.
    """
    from payments.gateways.base import GatewayError, RefundRequest
    from payments.registry import gateway_for

    refund = Refund.objects.select_related("payment").get(pk=refund_id)
    payment = refund.payment
    gateway = gateway_for(payment.gateway)
    with transaction.atomic():
        refund = Refund.objects.select_for_update().select_related("payment").get(pk=refund_id)
        if refund.status != Refund.Status.PENDING:
            return refund
        if refund.sent_at and not gateway.idempotent_refunds:
            # Asked once already (this is a redelivery or a retry): sending again could refund twice.
            payment_flag(
                refund.payment,
                f"refund {refund.public_id}: sent at {refund.sent_at:%Y-%m-%d %H:%M}, outcome "
                f"unknown; check at {payment.gateway}",
            )
            return refund
        refund.sent_at = refund.sent_at or timezone.now()
        refund.save(update_fields=["sent_at", "updated_at"])
    request = RefundRequest(
        reference=payment.gateway_reference,
        amount=quantize(refund.amount, refund.currency),
        currency=refund.currency,
        reason=refund.reason,
        idempotency_key=refund.idempotency_key,
    )
    try:
        result = gateway.refund(request)
    except GatewayError as exc:
        if not exc.transient:
            return refund_apply_result(refund_id=refund.pk, result=None, error=str(exc))
        Refund.objects.filter(pk=refund.pk).update(error=str(exc)[:2000], updated_at=timezone.now())
        if gateway.idempotent_refunds:
            raise
        payment_flag(
            Payment.objects.get(pk=payment.pk),
            f"refund {refund.public_id}: outcome unknown ({exc}); check at {payment.gateway}",
        )
        return refund
    return refund_apply_result(refund_id=refund.pk, result=result)
