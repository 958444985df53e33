"""The built-in sandbox gateway: a hosted page with Pay, Decline and Cancel, and real webhooks.

It behaves like a provider: create_checkout records a charge and points the customer at
/pay/sandbox/<reference>; the page's buttons change the charge and a task POSTs a signed
webhook (header X-Sandbox-Signature: hex HMAC-SHA256 of the raw body, keyed with the hex
SHA-256 of "sandbox-webhooks:<SANDBOX_WEBHOOK_SECRET or SECRET_KEY>") to
/api/payments/webhook/sandbox; verify() answers from the charge.
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

from core.money import quantize
from payments.gateways.base import (
    CheckoutRequest,
    CheckoutSession,
    GatewayError,
    PaymentGateway,
    PaymentState,
    RefundRequest,
    RefundResult,
    Status,
    WebhookAuthError,
    WebhookNotice,
)
from payments.models import SandboxCharge

SIGNATURE_HEADER = "X-Sandbox-Signature"


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class SandboxGateway(PaymentGateway):
    name = "sandbox"
    idempotent_refunds = True

    @property
    def secret(self) -> str:
        secret = self.config.get("secret") or settings.SECRET_KEY
        return hashlib.sha256(f"sandbox-webhooks:{secret}".encode()).hexdigest()

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        try:
            with transaction.atomic():
                charge = SandboxCharge.objects.create(
                    reference=f"sbx_{secrets.token_hex(10)}",
                    idempotency_key=request.idempotency_key,
                    payment_public_id=request.payment_id,
                    amount=quantize(request.amount, request.currency),
                    currency=request.currency,
                    description=request.description[:255],
                    return_url=request.return_url,
                )
        except IntegrityError:
            charge = SandboxCharge.objects.get(idempotency_key=request.idempotency_key)  # a retried call
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
        charge = self._charge(reference)
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
        )

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
            raise WebhookAuthError(f"signed but malformed sandbox webhook: {exc!r:.200}") from exc
