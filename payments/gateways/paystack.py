"""Paystack: hosted checkout through the Transaction API, refunds, signed webhooks.

Documented endpoints used (https://paystack.com/docs/api/, base https://api.paystack.co for
both test and live mode: the secret key, sk_test_... or sk_live_..., selects the mode, so
PAYMENT_ENV=test needs no other URL). Every call carries `Authorization: Bearer <secret key>`
and answers `{"status": true|false, "message": ..., "data": ...}`:

- POST /transaction/initialize {email, amount (subunits, integer), currency, reference,
  callback_url, metadata} -> data.authorization_url, data.access_code, data.reference.
- GET /transaction/verify/:reference -> data.status (success, failed, abandoned, ongoing,
  pending, processing, queued, reversed), data.amount (subunits), data.currency,
  data.gateway_response (the bank's or processor's words).
- POST /refund {transaction, amount (subunits), currency, customer_note, merchant_note}
  -> data.id, data.status (pending, processing, processed, failed), data.amount.

Idempotency: the reference we send is unique per transaction at Paystack: a second
initialize with the same reference creates nothing and is refused with "Duplicate Transaction
Reference". So the reference is our idempotency key (made to fit Paystack's alphabet, see
`paystack_reference`), and initialize is safe to retry. Paystack returns the checkout URL
only in the first answer: if that answer was lost, the retry gets the refusal and we raise
GatewayError(code="duplicate_reference"); the caller starts a new checkout with a new key.
POST /refund has no idempotency key, so it is never retried here.

Webhooks (https://paystack.com/docs/payments/webhooks/): header `x-paystack-signature` is
the hex HMAC-SHA512 of the raw body keyed with the secret key. Events carry no event id, so
event_id is the event name and the id of its object (transaction or refund). Paystack wants
a 200 with nothing else: the default WebhookReply. Paystack also publishes the IPs it sends
from; filtering on them is left to the web server.
"""

import contextlib
import hashlib
import hmac
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from core.http import DEFAULT_TIMEOUT
from core.money import MoneyError, from_minor, to_minor
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
from payments.gateways.http import GatewayHTTP

BASE_URL = "https://api.paystack.co"
SIGNATURE_HEADER = "x-paystack-signature"
_REFERENCE_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")

TRANSACTION_STATUSES = {
    "success": Status.SUCCEEDED,
    "failed": Status.FAILED,
    "reversed": Status.REFUNDED,  # refunded in full, or a chargeback was logged
    # Paystack reports a transaction nobody has tried to pay yet as "abandoned": the customer
    # may still pay it, so it stays pending until our own payment deadline gives up on it.
    "abandoned": Status.PENDING,
}  # ongoing, pending, processing, queued and anything new: still pending
REFUND_STATUSES = {"processed": Status.SUCCEEDED, "failed": Status.FAILED}  # else pending, processing
WEBHOOK_HINTS = {"charge.success": Status.SUCCEEDED}  # Paystack sends charge events for successes only


def paystack_reference(idempotency_key: str) -> str:
    """Our key in Paystack's reference alphabet (letters, digits, '-', '.', '='), one-to-one.

    Any other byte becomes '=' and two hex digits, as in quoted-printable: "pay_9f3k:1" ->
    "pay=5F9f3k=3A1". Keys already in the alphabet (UUIDs, for one) pass unchanged.
    """
    return "".join(chr(b) if b in _REFERENCE_CHARS else f"={b:02X}" for b in idempotency_key.encode())


class PaystackGateway(PaymentGateway):
    name = "paystack"
    webhook_settings = ("secret_key",)

    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        self.secret_key: str = config.get("secret_key") or ""
        if not self.secret_key:
            raise ValueError("paystack: secret_key is not configured")
        self.http = GatewayHTTP(
            self.name,
            config.get("base_url") or BASE_URL,
            timeout=tuple(config.get("timeout") or DEFAULT_TIMEOUT),
            retries=config.get("retries", 2),
            headers={"Authorization": f"Bearer {self.secret_key}"},
        )

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        reference = paystack_reference(request.idempotency_key)
        payload = {
            "email": request.customer_email,
            "amount": to_minor(request.amount, request.currency),
            "currency": request.currency,
            "reference": reference,
            "callback_url": request.return_url,
            "metadata": {
                **request.metadata,
                "payment_id": request.payment_id,
                "description": request.description,
            },
        }
        try:
            data = self._call("POST", "/transaction/initialize", retry_safe=True, json=payload)
        except GatewayError as exc:
            if exc.transient or "duplicate" not in str(exc).lower():
                raise
            raise GatewayError(
                f"paystack: reference {reference} is already initialized and Paystack gives its checkout "
                "URL only once; start a new checkout with a new idempotency key",
                transient=False,
                code="duplicate_reference",
                status=exc.status,
            ) from exc
        return CheckoutSession(reference=data["reference"], redirect_url=data["authorization_url"], raw=data)

    def verify(self, reference: str) -> PaymentState:
        data = self._call("GET", f"/transaction/verify/{quote(reference, safe='')}", retry_safe=True)
        status = TRANSACTION_STATUSES.get(data.get("status"), Status.PENDING)
        amount, currency = self._money(data)
        error = (data.get("gateway_response") or data.get("message") or "") if status == Status.FAILED else ""
        return PaymentState(
            reference=data.get("reference") or reference,
            status=status,
            amount=amount,
            currency=currency,
            error=error,
            raw=data,
        )

    def refund(self, request: RefundRequest) -> RefundResult:
        payload = {
            "transaction": request.reference,
            "amount": to_minor(request.amount, request.currency),
            "currency": request.currency,
            "customer_note": request.reason,
            "merchant_note": f"{request.reason} [{request.idempotency_key}]",
        }
        data = self._call("POST", "/refund", retry_safe=False, json=payload)
        amount, currency = self._money(data)
        return RefundResult(
            refund_reference=str(data.get("id", "")),
            status=REFUND_STATUSES.get(data.get("status"), Status.PENDING),
            amount=amount,
            currency=currency,
            raw=data,
        )

    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        signature = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER), "")
        expected = hmac.new(self.secret_key.encode(), body, hashlib.sha512).hexdigest()
        if not signature or not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
            raise WebhookAuthError(f"paystack: missing or wrong {SIGNATURE_HEADER}")
        try:
            payload = json.loads(body)
            event, data = str(payload["event"]), dict(payload["data"])
        except (ValueError, TypeError, KeyError) as exc:
            raise GatewayError("paystack: signed webhook is not an event", transient=False) from exc
        # Refund events name the transaction in transaction_reference, charge events in reference.
        reference = str(data.get("transaction_reference") or data.get("reference") or "")
        amount = currency = None
        if event.startswith("charge."):  # a refund event's amount is the refund's, not the payment's
            with contextlib.suppress(GatewayError):  # without a usable amount it still names its payment
                amount, currency = self._money(data)
        return WebhookNotice(
            event_id=f"{event}:{data.get('id') or reference}",
            reference=reference,
            status_hint=WEBHOOK_HINTS.get(event),
            amount=amount,
            currency=currency,
            raw=payload,
        )

    def _call(self, method: str, path: str, *, retry_safe: bool, json: Any = None) -> dict[str, Any]:
        """One API call; anything but `status: true` with a data object raises GatewayError."""
        response = self.http.request(method, path, retry_safe=retry_safe, json=json)
        body = self.http.json(response)
        if not isinstance(body, dict):
            body = {}
        if response.ok and body.get("status") is True and isinstance(body.get("data"), dict):
            return body["data"]
        raise GatewayError(
            f"paystack: {body.get('message') or 'unexpected answer'} (HTTP {response.status_code} on {path})",
            transient=False,
            code=str(body.get("code") or body.get("type") or f"http_{response.status_code}"),
            status=response.status_code,
        )

    @staticmethod
    def _money(data: Mapping[str, Any]) -> tuple[Decimal, str]:
        try:
            currency = str(data["currency"])
            return from_minor(data["amount"], currency), currency
        except (KeyError, MoneyError, ArithmeticError) as exc:
            raise GatewayError(f"paystack: no usable amount in {dict(data)!r:.200}", transient=False) from exc
