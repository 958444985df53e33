"""The built-in sandbox gateway: a hosted page with Pay, Decline and Cancel, and real webhooks.

It behaves like a provider: create_checkout records a charge and points the customer at
/pay/sandbox/<reference>; the page's buttons change the charge and a task POSTs a signed
webhook (header X-Sandbox-Signature: hex HMAC-SHA256 of the raw body, keyed with the hex
SHA-256 of "sandbox-webhooks:<SANDBOX_WEBHOOK_SECRET or SECRET_KEY>") to
/api/payments/webhook/sandbox; verify() answers from the charge.

Saved methods: a checkout with save_method keeps the card when Pay is pressed (a
SandboxMethod, token "sbxm_..."), and verify() returns it. charge_saved charges it at once,
de-duplicated by the idempotency key like a provider; the method's `behaviour` (set in the
admin, or by a test) makes its charges succeed, be declined, or meet a 503 outage.
"""

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from core.money import quantize
from payments.gateways.base import (
    CheckoutRequest,
    CheckoutSession,
    GatewayError,
    PaymentGateway,
    PaymentState,
    RefundRequest,
    RefundResult,
    SavedChargeRequest,
    SavedMethod,
    Status,
    WebhookAuthError,
    WebhookNotice,
)
from payments.models import SandboxCharge, SandboxMethod

SIGNATURE_HEADER = "X-Sandbox-Signature"


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def method_save(charge: SandboxCharge) -> SandboxMethod:
    """The card a save_method charge was paid with, kept (the Pay button of such a charge)."""
    return SandboxMethod.objects.create(
        token=f"sbxm_{secrets.token_hex(10)}",
        customer_key=charge.customer_key,
        label=f"sandbox card •••• 4242, expires 12/{timezone.now().year + 3}",
    )


def _charge_once(request: CheckoutRequest | SavedChargeRequest, **fields) -> SandboxCharge:
    """The charge of this idempotency key: made now, or the one a retried call made before."""
    try:
        with transaction.atomic():
            return SandboxCharge.objects.create(
                reference=f"sbx_{secrets.token_hex(10)}",
                idempotency_key=request.idempotency_key,
                payment_public_id=request.payment_id,
                amount=quantize(request.amount, request.currency),
                currency=request.currency,
                description=request.description[:255],
                **fields,
            )
    except IntegrityError:  # the same key again, or concurrently
        return SandboxCharge.objects.get(idempotency_key=request.idempotency_key)


def _saved(method: SandboxMethod) -> SavedMethod:
    return SavedMethod(
        token=method.token,
        customer_reference=method.customer_key,
        label=method.label,
        raw={"token": method.token, "label": method.label},
    )


class SandboxGateway(PaymentGateway):
    name = "sandbox"
    idempotent_refunds = True
    saves_methods = True

    @property
    def secret(self) -> str:
        secret = self.config.get("secret") or settings.SECRET_KEY
        return hashlib.sha256(f"sandbox-webhooks:{secret}".encode()).hexdigest()

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        charge = _charge_once(
            request,
            return_url=request.return_url,
            save_method=request.save_method,
            customer_key=request.customer_key[:100],
        )
        url = settings.SITE_URL.rstrip("/") + reverse("sandbox-pay", args=[charge.reference])
        return CheckoutSession(
            reference=charge.reference, redirect_url=url, raw={"reference": charge.reference}
        )

    def _charge(self, reference: str) -> SandboxCharge:
        charge = SandboxCharge.objects.filter(reference=reference).first()
        if charge is None:
            raise GatewayError(
                f"sandbox: no charge {reference}", transient=False, code="not_found", status=404
            )
        return charge

    def verify(self, reference: str) -> PaymentState:
        return self._state(self._charge(reference))

    def _state(self, charge: SandboxCharge) -> PaymentState:
        status = Status(charge.status)
        if charge.refunded_amount and charge.refunded_amount == charge.amount:
            status = Status.REFUNDED
        elif charge.refunded_amount:
            status = Status.PARTIALLY_REFUNDED
        return PaymentState(
            reference=charge.reference,
            status=status,
            amount=quantize(charge.amount, charge.currency),
            currency=charge.currency,
            error=charge.decline_reason,
            raw={"reference": charge.reference, "status": charge.status},
            saved_method=_saved(charge.method)
            if charge.save_method and charge.method and status == Status.SUCCEEDED
            else None,
        )

    def charge_saved(self, request: SavedChargeRequest) -> PaymentState:
        existing = SandboxCharge.objects.filter(idempotency_key=request.idempotency_key).first()
        if existing is not None:  # the same charge asked again: its outcome, not a second charge
            return self.verify(existing.reference)
        method = SandboxMethod.objects.filter(
            token=request.method.token, customer_key=request.method.customer_reference, forgotten=False
        ).first()
        if method is None:
            raise GatewayError(
                "sandbox: no such saved method", transient=False, code="invalid_method", status=400
            )
        if method.behaviour == SandboxMethod.Behaviour.UNAVAILABLE:
            raise GatewayError("sandbox: 503 service unavailable", transient=True, status=503)
        declined = method.behaviour == SandboxMethod.Behaviour.DECLINE
        charge = _charge_once(
            request,
            customer_key=method.customer_key,
            method=method,
            status=SandboxCharge.Status.FAILED if declined else SandboxCharge.Status.SUCCEEDED,
            decline_reason="Insufficient funds (sandbox card set to decline)" if declined else "",
        )
        return self._state(charge)

    def method_forget(self, method: SavedMethod) -> None:
        SandboxMethod.objects.filter(token=method.token).update(forgotten=True)

    def refund(self, request: RefundRequest) -> RefundResult:
        with transaction.atomic():
            charge = SandboxCharge.objects.select_for_update().get(pk=self._charge(request.reference).pk)
            left = charge.amount - charge.refunded_amount
            if request.idempotency_key in charge.refund_keys:
                pass  # the same refund asked again: already made
            elif charge.status != SandboxCharge.Status.SUCCEEDED or request.amount > left:
                raise GatewayError(
                    f"sandbox: cannot refund {request.amount} {request.currency}; {left} left",
                    transient=False,
                    code="refund_refused",
                )
            else:
                charge.refunded_amount += request.amount
                charge.refund_keys = [*charge.refund_keys, request.idempotency_key]
                charge.save(update_fields=["refunded_amount", "refund_keys", "updated_at"])
        return RefundResult(
            refund_reference=f"sbxr_{request.idempotency_key}",
            status=Status.SUCCEEDED,
            amount=request.amount,
            currency=request.currency,
        )

    def webhook_body(self, charge: SandboxCharge) -> bytes:
        """What the sandbox sends when a button is pressed (like a provider's event)."""
        return json.dumps(
            {
                "id": f"evt_{charge.reference}_{charge.status}",
                "type": f"charge.{charge.status}",
                "data": {
                    "reference": charge.reference,
                    "status": charge.status,
                    "amount": str(quantize(charge.amount, charge.currency)),
                    "currency": charge.currency,
                },
            },
            separators=(",", ":"),
        ).encode()

    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        given = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), "")
        if not given or not hmac.compare_digest(given.encode(), sign(body, self.secret).encode()):
            raise WebhookAuthError("missing or wrong X-Sandbox-Signature")
        try:
            payload = json.loads(body)
            data = payload["data"]
            return WebhookNotice(
                event_id=str(payload["id"]),
                reference=str(data["reference"]),
                status_hint=Status(data["status"]),
                amount=Decimal(data["amount"]),
                currency=str(data["currency"]),
                raw=payload,
            )
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:  # Decimal("x"): InvalidOperation
            message = f"signed but malformed sandbox webhook: {exc!r:.200}"
            raise GatewayError(message, transient=False) from exc
