"""Stripe: one hosted Checkout Session per payment, verified by reading it back.

Why a Checkout Session rather than a bare PaymentIntent: a PaymentIntent has no page of its
own (its card form is Stripe.js on our site), while a Session's `url` is a Stripe-hosted
payment page to redirect the customer to. The Session id (cs_...) is our reference. Stripe
creates the Session's PaymentIntent only when the customer submits the page (API change
2022-08-01), so verify() and refund() reach the PaymentIntent through the Session.

Endpoints (https://docs.stripe.com/api), form-encoded, `Authorization: Bearer <secret key>`,
response shapes pinned by `Stripe-Version`:
  POST /v1/checkout/sessions        create_checkout  (Idempotency-Key header)
  GET  /v1/checkout/sessions/{id}   verify, refund   (expand[]=payment_intent.latest_charge)
  POST /v1/refunds                  refund           (payment_intent, amount, Idempotency-Key)
Stripe has no separate test host (an sk_test_ key selects test mode), so PAYMENT_ENV changes
nothing here. Errors are {"error": {"type", "code", "message", "param"}}; a 409 means another
request holds the same idempotency key (https://docs.stripe.com/api/errors).

Webhooks (https://docs.stripe.com/webhooks#verify-manually): `Stripe-Signature:
t=<unix time>,v1=<hex>[,v1=<hex>...]`, each v1 an HMAC-SHA256 of f"{t}.{raw body}" under the
endpoint's signing secret (whsec_...); refused when no v1 matches or t is more than 300 s from
now. Subscribe the endpoint to checkout.session.completed, .async_payment_succeeded,
.async_payment_failed and .expired: those carry the Session, i.e. our reference. Any other
event comes back with its object's own id and no status hint, for the ledger only. Stripe
wants any 2xx back, which is the default WebhookReply (200, empty body).
"""

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from core.http import DEFAULT_TIMEOUT
from core.money import from_minor, to_minor
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

BASE_URL = "https://api.stripe.com"
API_VERSION = "2024-06-20"  # needs >= 2022-11-15 for PaymentIntent.latest_charge
SIGNATURE_TOLERANCE = 300  # seconds, Stripe's documented default
REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
REFUND_STATUSES = {
    "succeeded": Status.SUCCEEDED,
    "pending": Status.PENDING,
    "requires_action": Status.PENDING,
    "failed": Status.FAILED,
    "canceled": Status.FAILED,
}
SESSION_EVENT_HINTS = {
    "checkout.session.async_payment_succeeded": Status.SUCCEEDED,
    "checkout.session.async_payment_failed": Status.FAILED,
    "checkout.session.expired": Status.CANCELLED,
}


class StripeGateway(PaymentGateway):
    name = "stripe"
    webhook_settings = ("webhook_secret",)
    idempotent_refunds = True

    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        self.http = GatewayHTTP(
            self.name,
            config.get("base_url") or BASE_URL,
            timeout=config.get("timeout", DEFAULT_TIMEOUT),
            retries=config.get("retries", 2),
            headers={"Authorization": f"Bearer {config['secret_key']}", "Stripe-Version": API_VERSION},
        )

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        price = "line_items[0][price_data]"
        form = {
            "mode": "payment",
            "success_url": request.return_url,
            "cancel_url": request.return_url,
            "client_reference_id": request.payment_id,
            "line_items[0][quantity]": "1",
            f"{price}[currency]": request.currency.lower(),
            f"{price}[unit_amount]": str(to_minor(request.amount, request.currency)),
            f"{price}[product_data][name]": request.description or request.payment_id,
            **{f"metadata[{key}]": value for key, value in request.metadata.items()},
            "metadata[payment_id]": request.payment_id,
            "payment_intent_data[metadata][payment_id]": request.payment_id,
        }
        if request.customer_email:
            form["customer_email"] = request.customer_email
        session = self._call(
            "POST", "/v1/checkout/sessions", data=form, idempotency_key=request.idempotency_key
        )
        return CheckoutSession(reference=session["id"], redirect_url=session["url"], raw=session)

    def verify(self, reference: str) -> PaymentState:
        session = self._session(reference, expand="payment_intent.latest_charge")
        failure = (session.get("payment_intent") or {}).get("last_payment_error") or {}
        currency = session["currency"].upper()
        return PaymentState(
            reference=session["id"],
            status=_session_status(session),
            amount=from_minor(session["amount_total"], currency),
            currency=currency,
            error=failure.get("message") or failure.get("code", ""),
            raw=session,
        )

    def refund(self, request: RefundRequest) -> RefundResult:
        session = self._session(request.reference)
        if not session.get("payment_intent"):
            raise GatewayError(
                f"stripe: checkout session {request.reference} has no payment to refund",
                transient=False,
                code="no_payment",
            )
        if session["currency"].upper() != request.currency:
            raise GatewayError(
                f"stripe: refund in {request.currency} of a {session['currency'].upper()} payment",
                transient=False,
                code="currency_mismatch",
            )
        form = {
            "payment_intent": session["payment_intent"],
            "amount": str(to_minor(request.amount, request.currency)),
        }
        if request.reason in REFUND_REASONS:
            form["reason"] = request.reason
        elif request.reason:
            form["metadata[reason]"] = request.reason  # Stripe's `reason` is an enum: free text goes here
        refund = self._call("POST", "/v1/refunds", data=form, idempotency_key=request.idempotency_key)
        currency = refund["currency"].upper()
        return RefundResult(
            refund_reference=refund["id"],
            status=REFUND_STATUSES.get(refund["status"], Status.PENDING),
            amount=from_minor(refund["amount"], currency),
            currency=currency,
            raw=refund,
        )

    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        signature = next((value for name, value in headers.items() if name.lower() == "stripe-signature"), "")
        _check_signature(signature, body, self.config.get("webhook_secret", ""), now=time.time())
        try:
            event = json.loads(body)
            event_id, target = event["id"], event["data"]["object"]
            if not isinstance(event_id, str) or not isinstance(target, dict):
                raise TypeError("an event has a string id and an object")
            if target.get("object") != "checkout.session":
                return WebhookNotice(
                    event_id=event_id,
                    reference=str(target.get("id", "")),
                    status_hint=None,
                    amount=None,
                    currency=None,
                    raw=event,
                )
            currency = target["currency"].upper()
            return WebhookNotice(
                event_id=event_id,
                reference=str(target["id"]),
                status_hint=_event_hint(event["type"], target),
                amount=from_minor(target["amount_total"], currency),
                currency=currency,
                raw=event,
            )
        except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError) as exc:
            message = f"stripe: signed webhook is not an event: {exc!r:.200}"
            raise GatewayError(message, transient=False) from exc

    def _session(self, reference: str, *, expand: str = "") -> dict[str, Any]:
        params = {"expand[]": expand} if expand else None
        return self._call("GET", f"/v1/checkout/sessions/{reference}", params=params)

    def _call(
        self,
        method: str,
        path: str,
        *,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        idempotency_key: str = "",
    ) -> dict[str, Any]:
        response = self.http.request(
            method,
            path,
            retry_safe=method == "GET" or bool(idempotency_key),  # Stripe replays a POST's first answer
            data=data,
            params=params,
            headers={"Idempotency-Key": idempotency_key} if idempotency_key else None,
        )
        answer = self.http.json(response)
        if response.status_code >= 400:
            error = answer.get("error", {}) if isinstance(answer, dict) else {}
            raise GatewayError(
                f"stripe: {error.get('message') or f'HTTP {response.status_code}'}",
                transient=response.status_code == 409,  # a concurrent request holds the idempotency key
                code=error.get("code") or error.get("type", ""),
                status=response.status_code,
            )
        return answer


def _session_status(session: Mapping[str, Any]) -> Status:
    intent = session.get("payment_intent") or {}
    if intent.get("status") == "succeeded":
        charge = intent.get("latest_charge") or {}
        refunded = charge.get("amount_refunded", 0)
        if refunded and refunded >= charge["amount"]:
            return Status.REFUNDED
        return Status.PARTIALLY_REFUNDED if refunded else Status.SUCCEEDED
    if session["status"] == "expired" or intent.get("status") == "canceled":
        return Status.CANCELLED
    if intent.get("last_payment_error"):  # declined; the customer may still retry until the Session expires
        return Status.FAILED
    return Status.PENDING  # open, processing, or requires_action (3-D Secure)


def _event_hint(event_type: str, session: Mapping[str, Any]) -> Status | None:
    if event_type == "checkout.session.completed":  # "unpaid" here: a delayed method is still settling
        return Status.SUCCEEDED if session.get("payment_status") == "paid" else Status.PENDING
    return SESSION_EVENT_HINTS.get(event_type)


def _check_signature(header: str, body: bytes, secret: str, *, now: float) -> None:
    pairs = [part.strip().split("=", 1) for part in header.split(",") if "=" in part]
    timestamps = [value for key, value in pairs if key == "t"]
    signatures = [value.encode() for key, value in pairs if key == "v1"]
    if not secret or len(timestamps) != 1 or not timestamps[0].isdigit() or not signatures:
        raise WebhookAuthError("stripe: missing or malformed Stripe-Signature header")
    if abs(now - int(timestamps[0])) > SIGNATURE_TOLERANCE:
        raise WebhookAuthError("stripe: Stripe-Signature timestamp is more than 300 s from now")
    signed = timestamps[0].encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest().encode()
    if not any(hmac.compare_digest(expected, signature) for signature in signatures):
        raise WebhookAuthError("stripe: no v1 signature matches the body")
