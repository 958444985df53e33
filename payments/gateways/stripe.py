"""Stripe: one hosted Checkout Session per payment, verified by reading it back; renewals charge
a saved card with an off-session PaymentIntent.

Why a Checkout Session rather than a bare PaymentIntent: a PaymentIntent has no page of its
own (its card form is Stripe.js on our site), while a Session's `url` is a Stripe-hosted
payment page to redirect the customer to. The Session id (cs_...) is our reference. Stripe
creates the Session's PaymentIntent only when the customer submits the page (API change
2022-08-01), so verify() and refund() reach the PaymentIntent through the Session. A renewal
has no Session: its reference is the PaymentIntent id (pi_...), and verify() and refund()
take either kind, told apart by the prefix.

Endpoints (https://docs.stripe.com/api), form-encoded, `Authorization: Bearer <secret key>`,
response shapes pinned by `Stripe-Version`:
  POST /v1/checkout/sessions              create_checkout  (Idempotency-Key header)
  GET  /v1/checkout/sessions/{id}         verify, refund   (expand[]=payment_intent.latest_charge,
                                                            expand[]=payment_intent.payment_method)
  POST /v1/payment_intents                charge_saved     (Idempotency-Key header)
  GET  /v1/payment_intents/{id}           verify, refund   (expand[]=latest_charge, payment_method)
  POST /v1/refunds                        refund           (payment_intent, amount, Idempotency-Key)
  POST /v1/payment_methods/{id}/detach    method_forget
Stripe has no separate test host (an sk_test_ key selects test mode), so PAYMENT_ENV changes
nothing here. Errors are {"error": {"type", "code", "message", "param"}}; a 409 means another
request holds the same idempotency key (https://docs.stripe.com/api/errors).

Saved methods (https://docs.stripe.com/payments/save-during-payment): a checkout with
save_method sends customer_creation=always and payment_intent_data[setup_future_usage]=
off_session, so Checkout creates a Customer (cus_...) and attaches the card's PaymentMethod
(pm_...) to it; verify() of the paid Session returns SavedMethod(token=pm_..., customer_reference=
cus_...), labelled from the PaymentMethod's card (brand, last4, expiry: never the number).
charge_saved creates and confirms a PaymentIntent with that customer and payment_method and
off_session=true (https://docs.stripe.com/payments/save-and-reuse, "charge the saved payment
method later"). A decline is HTTP 402 with error.type=card_error, error.code (card_declined,
authentication_required, ...), error.decline_code and error.payment_intent, the failed
PaymentIntent: it comes back as FAILED with that PaymentIntent's id. method_forget detaches the
PaymentMethod from its Customer, after which Stripe refuses to charge it.

A renewal charges once (https://docs.stripe.com/api/idempotent_requests): the PaymentIntent is
created with our key as Idempotency-Key, so the HTTP client may retry it on a timeout, a dropped
connection, a 429 or a 5xx, and our caller may send the same request again later with the same
key. Stripe saves the first answer for a key once the call starts executing and replays it (the
same PaymentIntent, or the same 402 decline) instead of charging again; the same key with other
parameters is a 400 idempotency_error, and one still being executed a 409 (transient here). Two
limits: Stripe prunes keys after 24 hours, and a 500 it answered mid-execution is itself replayed,
so the outcome of such a charge is only known from the PaymentIntent (metadata[payment_id]).

Webhooks (https://docs.stripe.com/webhooks#verify-manually): `Stripe-Signature:
t=<unix time>,v1=<hex>[,v1=<hex>...]`, each v1 an HMAC-SHA256 of f"{t}.{raw body}" under the
endpoint's signing secret (whsec_...); refused when no v1 matches or t is more than 300 s from
now. Subscribe the endpoint to checkout.session.completed, .async_payment_succeeded,
.async_payment_failed and .expired: those carry the Session, i.e. our reference. Any other
event comes back with its object's own id and no status hint, for the ledger; subscribe it to
payment_intent.succeeded and .payment_failed as well for renewals Stripe settles later (their id
is the renewal's reference, which is then verified). Stripe wants any 2xx back, which is the
default WebhookReply (200, empty body).
"""

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

import requests

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
    SavedChargeRequest,
    SavedMethod,
    Status,
    WebhookAuthError,
    WebhookNotice,
)
from payments.gateways.http import GatewayHTTP

BASE_URL = "https://api.stripe.com"
API_VERSION = "2024-06-20"  # needs >= 2022-11-15 for PaymentIntent.latest_charge
SIGNATURE_TOLERANCE = 300  # seconds, Stripe's documented default
INTENT_PREFIX = "pi_"  # a PaymentIntent id (a renewal); Checkout Session ids start with cs_
SESSION_EXPAND = ("payment_intent.latest_charge", "payment_intent.payment_method")
INTENT_EXPAND = ("latest_charge", "payment_method")
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
    saves_methods = True

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
        if request.save_method:
            # In payment mode Checkout creates a Customer only "if_required" (the default since
            # 2022-08-01), and a PaymentMethod it does not attach to one cannot be used again:
            # "always" gives the card a Customer to be attached to, off_session says what for.
            form["customer_creation"] = "always"
            form["payment_intent_data[setup_future_usage]"] = "off_session"
            if request.customer_key:  # ours, so that a Customer seen in the Dashboard leads back to us
                form["metadata[customer_key]"] = request.customer_key
                form["payment_intent_data[metadata][customer_key]"] = request.customer_key
        session = self._call(
            "POST", "/v1/checkout/sessions", data=form, idempotency_key=request.idempotency_key
        )
        return CheckoutSession(reference=session["id"], redirect_url=session["url"], raw=session)

    def verify(self, reference: str) -> PaymentState:
        if reference.startswith(INTENT_PREFIX):
            return _intent_state(self._intent(reference, expand=INTENT_EXPAND))
        session = self._session(reference, expand=SESSION_EXPAND)
        intent = session.get("payment_intent") or {}
        failure = intent.get("last_payment_error") or {}
        currency = session["currency"].upper()
        return PaymentState(
            reference=session["id"],
            status=_session_status(session),
            amount=from_minor(session["amount_total"], currency),
            currency=currency,
            error=failure.get("message") or failure.get("code", ""),
            raw=session,
            saved_method=_saved_method(intent),
        )

    def refund(self, request: RefundRequest) -> RefundResult:
        if request.reference.startswith(INTENT_PREFIX):
            intent = self._intent(request.reference)
            intent_id, currency = intent["id"], intent["currency"].upper()
        else:
            session = self._session(request.reference)
            if not session.get("payment_intent"):
                raise GatewayError(
                    f"stripe: checkout session {request.reference} has no payment to refund",
                    transient=False,
                    code="no_payment",
                )
            intent_id, currency = session["payment_intent"], session["currency"].upper()
        if currency != request.currency:
            raise GatewayError(
                f"stripe: refund in {request.currency} of a {currency} payment",
                transient=False,
                code="currency_mismatch",
            )
        form = {"payment_intent": intent_id, "amount": str(to_minor(request.amount, request.currency))}
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

    def charge_saved(self, request: SavedChargeRequest) -> PaymentState:
        if not request.method.customer_reference:
            # Every method saved through create_checkout has its Customer; Stripe refuses a
            # PaymentMethod attached to one unless the same Customer is named with it.
            raise GatewayError(
                "stripe: a saved method without its customer (cus_...) cannot be charged",
                transient=False,
                code="no_customer",
            )
        form = {
            "amount": str(to_minor(request.amount, request.currency)),
            "currency": request.currency.lower(),
            "customer": request.method.customer_reference,
            "payment_method": request.method.token,
            "confirm": "true",
            "off_session": "true",  # nobody is there for 3-D Secure: Stripe declines instead of asking
            # Nobody to redirect either; without allow_redirects=never Stripe wants a return_url
            # to confirm a PaymentIntent that accepts the Dashboard's (redirecting) methods.
            "automatic_payment_methods[enabled]": "true",
            "automatic_payment_methods[allow_redirects]": "never",
            **{f"metadata[{key}]": value for key, value in request.metadata.items()},
            "metadata[payment_id]": request.payment_id,
        }
        if request.description:
            form["description"] = request.description
        response, answer = self._send(
            "POST", "/v1/payment_intents", data=form, idempotency_key=request.idempotency_key
        )
        error = _error_of(answer)
        intent = error.get("payment_intent")
        if response.status_code == 402 and error.get("type") == "card_error" and isinstance(intent, dict):
            # A decline: the PaymentIntent exists (requires_payment_method) and is the reference.
            return _intent_state(intent, error=error.get("message") or error.get("code", ""))
        if response.status_code >= 400:
            raise _gateway_error(response, answer)
        return _intent_state(answer)

    def method_forget(self, method: SavedMethod) -> None:
        # Detaching is final (the PaymentMethod cannot be attached or charged again), so a key
        # derived from the token makes the call safe to retry: a repeat replays the first answer.
        self._call(
            "POST", f"/v1/payment_methods/{method.token}/detach", idempotency_key=f"detach:{method.token}"
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

    def _session(self, reference: str, *, expand: tuple[str, ...] = ()) -> dict[str, Any]:
        params = {"expand[]": list(expand)} if expand else None
        return self._call("GET", f"/v1/checkout/sessions/{reference}", params=params)

    def _intent(self, reference: str, *, expand: tuple[str, ...] = ()) -> dict[str, Any]:
        params = {"expand[]": list(expand)} if expand else None
        return self._call("GET", f"/v1/payment_intents/{reference}", params=params)

    def _call(
        self,
        method: str,
        path: str,
        *,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str = "",
    ) -> dict[str, Any]:
        response, answer = self._send(method, path, data=data, params=params, idempotency_key=idempotency_key)
        if response.status_code >= 400:
            raise _gateway_error(response, answer)
        return answer

    def _send(
        self,
        method: str,
        path: str,
        *,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str = "",
    ) -> tuple[requests.Response, Any]:
        response = self.http.request(
            method,
            path,
            retry_safe=method == "GET" or bool(idempotency_key),  # Stripe replays a POST's first answer
            data=data,
            params=params,
            headers={"Idempotency-Key": idempotency_key} if idempotency_key else None,
        )
        return response, self.http.json(response)


def _error_of(answer: Any) -> dict[str, Any]:
    error = answer.get("error") if isinstance(answer, dict) else None
    return error if isinstance(error, dict) else {}


def _gateway_error(response: requests.Response, answer: Any) -> GatewayError:
    error = _error_of(answer)
    return GatewayError(
        f"stripe: {error.get('message') or f'HTTP {response.status_code}'}",
        transient=response.status_code == 409,  # a concurrent request holds the idempotency key
        code=error.get("code") or error.get("type", ""),
        status=response.status_code,
    )


def _intent_state(intent: Mapping[str, Any], *, error: str = "") -> PaymentState:
    failure = intent.get("last_payment_error") or {}
    currency = intent["currency"].upper()
    return PaymentState(
        reference=intent["id"],
        status=_intent_status(intent),
        amount=from_minor(intent["amount"], currency),
        currency=currency,
        error=error or failure.get("message") or failure.get("code", ""),
        raw=dict(intent),
        saved_method=_saved_method(intent),
    )


def _intent_status(intent: Mapping[str, Any]) -> Status:
    if intent.get("status") == "succeeded":
        charge = intent.get("latest_charge")
        charge = charge if isinstance(charge, dict) else {}  # an id unless expanded
        refunded = charge.get("amount_refunded", 0)
        if refunded and refunded >= charge["amount"]:
            return Status.REFUNDED
        return Status.PARTIALLY_REFUNDED if refunded else Status.SUCCEEDED
    if intent.get("status") == "canceled":
        return Status.CANCELLED
    if intent.get("last_payment_error"):  # declined (requires_payment_method)
        return Status.FAILED
    return Status.PENDING  # processing, or requires_action (3-D Secure) with the customer there


def _session_status(session: Mapping[str, Any]) -> Status:
    intent = session.get("payment_intent") or {}
    if intent.get("status") != "succeeded" and session["status"] == "expired":
        return Status.CANCELLED
    # A decline leaves the Session open: the customer may still retry until it expires.
    return _intent_status(intent)


def _saved_method(intent: Mapping[str, Any]) -> SavedMethod | None:
    """The PaymentMethod a paid PaymentIntent saved for off-session use, while it stays attached."""
    method = intent.get("payment_method")
    if (
        intent.get("status") != "succeeded"
        or intent.get("setup_future_usage") != "off_session"
        or not isinstance(method, dict)  # an id unless expanded
        or not method.get("customer")  # detached since, or never attached: not reusable
    ):
        return None
    raw = {key: value for key, value in method.items() if key != "billing_details"}  # the card, no PII
    return SavedMethod(
        token=method["id"], customer_reference=str(method["customer"]), label=_label(method), raw=raw
    )


def _label(method: Mapping[str, Any]) -> str:
    kind = str(method.get("type") or "")
    details = method.get(kind) if isinstance(method.get(kind), dict) else {}
    if kind == "card" and details.get("last4"):
        label = f"{details.get('brand') or 'card'} •••• {details['last4']}"
        month, year = details.get("exp_month"), details.get("exp_year")
        return f"{label}, expires {month:02d}/{year}" if isinstance(month, int) and year else label
    if details.get("last4"):  # sepa_debit, us_bank_account, ...
        return f"{kind.replace('_', ' ')} •••• {details['last4']}"
    return kind


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
