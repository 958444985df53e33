"""Writes on payments. Each owns its transaction, locks the payment row, follows
payments.transitions, appends to the ledger and publishes payment.* events.

Gateway calls happen outside these transactions (a slow provider must not hold row locks):
callers call the gateway, then hand its answer to payment_apply_state / refund_apply_result.
"""

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from core import events
from core.errors import BusinessRuleViolation, InvalidInput, Unavailable
from core.money import MoneyError, quantize
from payments.gateways.base import PaymentState, RefundResult, Status
from payments.models import Payment, PaymentLedgerEntry, Refund
from payments.transitions import PAYMENT, REFUND

EVENT_BY_STATUS = {
    Payment.Status.SUCCEEDED: "payment.completed",
    Payment.Status.FAILED: "payment.failed",
    Payment.Status.CANCELLED: "payment.cancelled",
}


def _event_data(payment: Payment, **extra: Any) -> dict[str, Any]:
    return {
        "payment_id": payment.public_id,
        "purpose": payment.purpose,
        "purpose_id": payment.purpose_ids[0] if payment.purpose_ids else None,
        "purpose_ids": payment.purpose_ids,
        "customer_id": payment.customer_id,
        "amount": quantize(payment.amount, payment.currency),  # the column keeps 3 decimals for all
        "currency": payment.currency,
        "kind": payment.kind,
        "status": payment.status,
        **extra,
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


def payment_create(
    *,
    customer_id: int,
    amount: Decimal | str,
    currency: str,
    purpose: str,
    purpose_ids: list[str],
    gateway: str,
    kind: str = Payment.Kind.FULL,
    deadline_minutes: int | None = None,
) -> Payment:
    """A new payment in `created`, and payment.created. The checkout is started by the caller."""
    try:
        amount = quantize(amount, currency)
    except MoneyError as exc:
        raise InvalidInput(str(exc), extra={"fields": {"amount": [str(exc)]}}) from exc
    if amount <= 0:
        raise InvalidInput("The amount must be positive.", extra={"fields": {"amount": ["must be positive"]}})
    if purpose not in Payment.Purpose.values:
        raise InvalidInput(f"Unknown purpose {purpose!r}.", extra={"fields": {"purpose": ["unknown"]}})
    if not purpose_ids or (purpose != Payment.Purpose.SUBSCRIPTION and len(purpose_ids) != 1):
        raise InvalidInput(
            "A payment is for one order or booking, or for one or more subscriptions.",
            extra={"fields": {"purpose_ids": ["one id, or several subscriptions"]}},
        )
    minutes = deadline_minutes or settings.PAYMENT_DEADLINE_MINUTES
    with transaction.atomic():
        payment = Payment.objects.create(
            customer_id=customer_id,
            amount=amount,
            currency=currency,
            purpose=purpose,
            purpose_ids=[str(i) for i in purpose_ids],
            gateway=gateway,
            kind=kind,
            deadline=timezone.now() + timedelta(minutes=minutes),
        )
        events.publish("payment.created", _event_data(payment))
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


def payment_apply_state(*, payment_id: int, state: PaymentState, source: str) -> Payment:
    """Apply what the gateway's API says about the payment (after a webhook, or on reconciliation).

    A success whose amount or currency differs from ours is not a success: the payment is
    flagged for staff. A success after the payment expired or was cancelled is recorded and
    flagged, and still completes it (payment.completed with "late": true), so that the order
    or booking decides what to do; anything else follows the transition table, and repeats
    are no-ops.
    """
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        _ledger(payment, source, state=state)
        if state.status == Status.SUCCEEDED and (
            state.amount != payment.amount or state.currency != payment.currency
        ):
            reason = (
                f"gateway reports {state.amount} {state.currency} paid, "
                f"payment is for {payment.amount} {payment.currency}"
            )
            if payment.flagged_reason != reason:
                payment.flagged_reason = reason
                payment.save(update_fields=["flagged_reason", "updated_at"])
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
            payment.flagged_reason = f"paid after it was {payment.status}"
            payment.status = Payment.Status.SUCCEEDED
            payment.save(update_fields=["status", "flagged_reason", "updated_at"])
        elif not PAYMENT.allowed(payment.status, target):
            return payment  # e.g. a "pending" report about a payment that has moved on
        else:
            payment.last_error = state.error if target == Payment.Status.FAILED else payment.last_error
            _move(payment, target, fields=("last_error",))
        event = EVENT_BY_STATUS.get(target)
        if event:
            extra = {"late": True} if late else {}
            if target == Payment.Status.FAILED:
                extra["error"] = state.error
            events.publish(event, _event_data(payment, **extra))
    return payment


def payment_expire(*, payment_id: int) -> Payment:
    """A payment not paid by its deadline expires (payment.cancelled with reason "expired")."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.status not in (Payment.Status.CREATED, Payment.Status.PENDING):
            return payment  # expired already, or settled meanwhile (a webhook won the race)
        _move(payment, Payment.Status.EXPIRED)
        _ledger(payment, PaymentLedgerEntry.Source.STAFF, note="deadline passed")
        events.publish("payment.cancelled", _event_data(payment, reason="expired"))
    return payment


def refund_reserve(
    *,
    payment_id: int,
    amount: Decimal | str | None,
    reason: str,
    idempotency_key: str,
    requested_by_id: int | None,
) -> Refund:
    """Reserve a refund of `amount` (None: everything left) before asking the gateway.

    The payment row is locked, so two concurrent refunds cannot together exceed what was
    captured: pending refunds count against the refundable amount. The same idempotency key
    returns the same refund.
    """
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        existing = Refund.objects.filter(idempotency_key=idempotency_key).first()
        if existing:
            if existing.payment_id != payment.pk:
                raise BusinessRuleViolation(
                    "This idempotency key was used for another refund.", code="key_reused"
                )
            return existing
        if payment.status not in (Payment.Status.SUCCEEDED, Payment.Status.PARTIALLY_REFUNDED):
            raise BusinessRuleViolation(
                f"Only a paid payment can be refunded; this one is {payment.status}.", code="not_refundable"
            )
        pending = Refund.objects.filter(payment=payment, status=Refund.Status.PENDING).aggregate(
            s=Sum("amount")
        )["s"]
        left = quantize(payment.amount - payment.refunded_amount - (pending or 0), payment.currency)
        try:
            amount = left if amount is None else quantize(amount, payment.currency)
        except MoneyError as exc:
            raise InvalidInput(str(exc), extra={"fields": {"amount": [str(exc)]}}) from exc
        if amount <= 0 or amount > left:
            raise BusinessRuleViolation(
                f"At most {left} {payment.currency} can be refunded.",
                code="refund_too_large",
                extra={"refundable": str(left), "currency": payment.currency},
            )
        return Refund.objects.create(
            payment=payment,
            amount=amount,
            currency=payment.currency,
            full=amount == payment.amount - payment.refunded_amount,
            reason=reason,
            idempotency_key=idempotency_key,
            requested_by_id=requested_by_id,
        )


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
        data = _event_data(payment, payment_amount=quantize(payment.amount, payment.currency))
        data |= {
            "refund_id": refund.public_id,
            "amount": quantize(refund.amount, refund.currency),
            "reason": refund.reason,
            "full": full,
        }
        events.publish("payment.refunded", data)
    return refund


def webhook_verify(*, webhook_event_id: int) -> None:
    """Confirm a stored webhook with the gateway's API and apply what the API says.

    The webhook's own claims are never applied: only verify()'s answer is. Raises
    GatewayError(transient=True) for the caller to retry; a refusal is kept on the event.
    """
    from payments.models import WebhookEvent
    from payments.registry import gateway_for

    event = WebhookEvent.objects.select_related("payment").get(pk=webhook_event_id)
    if event.processed_at:
        return
    if event.payment is None:
        event.payment = Payment.objects.filter(
            gateway=event.gateway, gateway_reference=event.reference
        ).first()
        if event.payment is None:
            WebhookEvent.objects.filter(pk=event.pk).update(
                processed_at=timezone.now(), error=f"no payment with reference {event.reference!r}"
            )
            return
        WebhookEvent.objects.filter(pk=event.pk).update(payment=event.payment)
    state = gateway_for(event.gateway).verify(event.payment.gateway_reference)
    with transaction.atomic():
        payment_apply_state(payment_id=event.payment_id, state=state, source=PaymentLedgerEntry.Source.VERIFY)
        WebhookEvent.objects.filter(pk=event.pk).update(processed_at=timezone.now(), error="")


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
    from payments.gateways.base import CheckoutRequest, GatewayError
    from payments.registry import gateway_for

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
    so the client's retry opens the checkout of the same payment); a refusal is a 422
    (`gateway_refused`).
    """
    from payments.gateways.base import GatewayError

    try:
        return payment_start_checkout(
            payment_id=payment_id,
            return_url=return_url,
            description=description,
            customer_email=customer_email,
        )
    except GatewayError as exc:
        public_id = Payment.objects.values_list("public_id", flat=True).get(pk=payment_id)
        if exc.transient:
            raise Unavailable(str(exc), code="gateway_unavailable", extra={"payment": public_id}) from exc
        raise BusinessRuleViolation(
            f"The gateway refused the payment: {exc}",
            code="gateway_refused",
            extra={"gateway_code": exc.code, "payment": public_id},
        ) from exc


def refund_request(
    *,
    payment_id: int,
    amount: Decimal | str | None,
    reason: str,
    idempotency_key: str,
    requested_by_id: int | None,
) -> Refund:
    """Reserve a refund (refund_reserve) and, once committed, have a task ask the gateway.

    If that task is lost after the commit, reconciliation sends the reserved refund.
    """
    from payments.tasks import refund_execute as refund_execute_task

    with transaction.atomic():
        refund = refund_reserve(
            payment_id=payment_id,
            amount=amount,
            reason=reason,
            idempotency_key=idempotency_key,
            requested_by_id=requested_by_id,
        )
        if refund.status == Refund.Status.PENDING and not refund.sent_at:
            refund_execute_task.delay_on_commit(refund.pk)
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
            Payment.objects.filter(pk=payment.pk).update(
                flagged_reason=f"refund {refund.public_id}: sent at {refund.sent_at:%Y-%m-%d %H:%M}, outcome "
                f"unknown; check at {payment.gateway}"
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
        Payment.objects.filter(pk=payment.pk).update(
            flagged_reason=f"refund {refund.public_id}: outcome unknown ({exc}); check at {payment.gateway}"
        )
        return refund
    return refund_apply_result(refund_id=refund.pk, result=result)
