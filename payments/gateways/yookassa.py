"""YooKassa (ЮKassa) API v3: hosted payment page, payment status, refunds, notifications, and
saved payment methods charged without the customer (autopayments).

Documented endpoints used (https://yookassa.ru/developers/api), JSON in and out, HTTP Basic
auth with the shop id as user name and the secret key as password
(https://yookassa.ru/developers/using-api/interaction-format):

- `POST /payments`: `amount`, `capture: true` (one stage: the money is taken when the customer
  pays), `confirmation {"type": "redirect", "return_url"}`, `description`, `metadata` with our
  `payment_id`, `save_payment_method` (true when the method is to be kept for renewals: our
  `customer_key` then goes in `metadata` too); answers the payment with `id` and
  `confirmation.confirmation_url`, the hosted payment page.
- `GET /payments/{id}`: `status` pending | waiting_for_capture | succeeded | canceled,
  `cancellation_details {party, reason}`, `amount`, `refunded_amount` after refunds, and
  `payment_method {type, id, saved, title, card {first6, last4, expiry_month, expiry_year,
  card_type}}` once the customer has paid. Only `saved: true` is reusable: `payment_method.id`
  (the id of the payment that saved it) is then the token of the method.
- `POST /payments` with `payment_method_id` instead of `confirmation`: an autopayment, charged
  without the customer (payment-acceptance/scenario-extensions/recurring-payments/pay-with-saved).
  It answers the new payment: succeeded; canceled with `cancellation_details.reason` (a decline:
  insufficient_funds, card_expired, permission_revoked when the customer withdrew consent...);
  or pending, decided later (verify() or the notification tells). An unknown or unsaved
  `payment_method_id` is refused (400 invalid_request) and charges nothing.
- `POST /refunds`: `payment_id`, `amount`, `description`; answers the refund with `id` and
  `status` pending | succeeded | canceled.

Saved methods belong to the shop, not to a customer: YooKassa has no customer object and does
not check whose method a `payment_method_id` is (payments.charges checks that against our
records before charging). It has no call to delete or deactivate a saved method either (the
payment_methods API only creates and reads them), so method_forget sends nothing: a deleted
method is forgotten on our side only, by never charging it again.

Every POST carries an `Idempotence-Key` header (64 characters at most): for 24 hours YooKassa
answers a repeat with the same key and body with the first result and creates nothing new, so
POSTs are retried like GETs. A 500 means "result unknown: repeat with the same key". Errors
come as {"type": "error", "code": "invalid_request", "description": ..., "parameter": ...}
(using-api/response-handling/http-codes).

A charge of a saved method is charged once however often it is sent: its Idempotence-Key is
the caller's key for that payment attempt, and its body is built from the request alone (no
clock, metadata in sorted order, so a request rebuilt from the database is the same bytes).
A timeout, dropped connection or 5xx is retried here with the same key and body, then raised
as transient; the caller sends the same request with the same key again, and YooKassa answers
the payment it created the first time (or creates it, if the first never arrived). The same
key with another body is refused, never charged. The guarantee lasts the key's 24 hours: a
charge still unresolved after that must be looked up by staff, not sent again.

Amounts: YooKassa takes and returns {"value": "75.00", "currency": "RUB"}, a decimal STRING in
the major unit with exactly the currency's minor digits, not an integer of minor units. The
conversion at this edge is therefore core.money.quantize both ways (it refuses floats and extra
digits), not to_minor / from_minor.

There is a single API URL: a test shop (secret key "test_...") uses it too, so PAYMENT_ENV does
not change the default base_url.

Notifications (using-api/webhooks) are NOT signed: YooKassa documents only an allow-list of its
source IP addresses, which only the network edge or the view can enforce (parse_webhook sees
headers and body, not the peer address). See parse_webhook for what that means for callers.
"""

import dataclasses
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import requests

from core.http import DEFAULT_TIMEOUT
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
    WebhookReply,
)
from payments.gateways.http import GatewayHTTP

BASE_URL = "https://api.yookassa.ru/v3"
PAYMENT_DESCRIPTION_LIMIT = 128  # characters YooKassa accepts in a payment's description
REFUND_DESCRIPTION_LIMIT = 250  # ... and in a refund's

# A canceled payment nobody declined: the merchant cancelled it or the customer never paid in time.
ABANDONED_REASONS = frozenset({"canceled_by_merchant", "expired_on_confirmation", "expired_on_capture"})
REFUND_STATUSES = {"pending": Status.PENDING, "succeeded": Status.SUCCEEDED, "canceled": Status.FAILED}
CUSTOMER_KEY = "customer_key"  # the metadata key our customer's id travels under (YooKassa has no customer)


def _amount_out(amount: Decimal, currency: str) -> dict[str, str]:
    """Decimal('75') RUB -> {"value": "75.00", "currency": "RUB"}, YooKassa's amount object."""
    return {"value": format(quantize(amount, currency), "f"), "currency": currency}


def _amount_in(amount: Mapping[str, Any]) -> tuple[Decimal, str]:
    """YooKassa's amount object -> (Decimal, currency); ValueError if it is not money."""
    currency = amount["currency"]
    if not isinstance(amount["value"], str):
        raise ValueError(f"amount value {amount['value']!r} is not a decimal string")
    return quantize(amount["value"], currency), currency


def _method_label(method: Mapping[str, Any]) -> str:
    """What the customer recognises the method by: "visa •••• 4081, expires 12/2030" for a card
    (last4 and the expiry only: never first6), YooKassa's `title` for anything else."""
    card = method.get("card")
    if method.get("type") != "bank_card" or not isinstance(card, Mapping) or not card.get("last4"):
        return str(method.get("title") or method.get("type") or "")
    brand = str(card.get("card_type") or "card").lower()
    if brand == "unknown":
        brand = "card"
    label = f"{brand} •••• {card['last4']}"
    if card.get("expiry_month") and card.get("expiry_year"):
        label += f", expires {card['expiry_month']}/{card['expiry_year']}"
    return label


def _saved_method(payment: Mapping[str, Any]) -> SavedMethod | None:
    """The reusable method a succeeded payment leaves (`payment_method.saved: true`), or None.

    A payment made with save_payment_method gets `saved: true` only once it succeeds; one the
    customer declined or abandoned keeps nothing. Renewals charged with the method report it
    too (the same token), which keeps the same method.
    """
    method = payment.get("payment_method")
    if payment["status"] != "succeeded" or method is None:
        return None
    if not isinstance(method, Mapping):
        raise ValueError("payment_method is not an object")
    if method.get("saved") is not True:
        return None
    token = method["id"]
    if not isinstance(token, str) or not token:
        raise ValueError("saved payment_method without an id")
    metadata = payment.get("metadata")
    customer = metadata.get(CUSTOMER_KEY) if isinstance(metadata, Mapping) else None
    return SavedMethod(
        token=token,
        customer_reference=customer if isinstance(customer, str) else "",
        label=_method_label(method),
        raw=dict(method),  # type, id, saved, title, card {first6, last4, expiry, card_type}: no PAN
    )


def _payment_state(payment: Mapping[str, Any]) -> PaymentState:
    """A YooKassa payment object, mapped onto our vocabulary; KeyError/ValueError if malformed."""
    amount, currency = _amount_in(payment["amount"])
    refunded = _amount_in(payment["refunded_amount"])[0] if "refunded_amount" in payment else Decimal(0)
    reason = (payment.get("cancellation_details") or {}).get("reason", "")
    match payment["status"]:
        case "pending" | "waiting_for_capture":
            status = Status.PENDING
        case "succeeded" if refunded >= amount:
            status = Status.REFUNDED
        case "succeeded":
            status = Status.PARTIALLY_REFUNDED if refunded else Status.SUCCEEDED
        case "canceled":
            status = Status.CANCELLED if reason in ABANDONED_REASONS else Status.FAILED
        case other:
            raise ValueError(f"unknown payment status {other!r}")
    return PaymentState(
        reference=payment["id"],
        status=status,
        amount=amount,
        currency=currency,
        error=reason,
        raw=dict(payment),
        saved_method=_saved_method(payment),
    )


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """An answer that does not have the documented shape is the provider's error, not ours."""
    try:
        yield
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:  # ArithmeticError: "1e999999"
        raise GatewayError(f"yookassa: malformed {what}: {exc!r}", transient=False) from exc


class YooKassaGateway(PaymentGateway):
    name = "yookassa"
    webhook_settings = ("shop_id", "secret_key")
    idempotent_refunds = True
    signs_webhooks = False  # notices are confirmed by fetching the payment back (payments.webhooks)
    saves_methods = True  # save_payment_method, then autopayments with payment_method_id

    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        self.http = GatewayHTTP(
            self.name,
            config.get("base_url") or BASE_URL,
            timeout=config.get("timeout", DEFAULT_TIMEOUT),
            retries=config.get("retries", 2),
            auth=(config["shop_id"], config["secret_key"]),
        )

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        metadata = {**request.metadata, "payment_id": request.payment_id}
        if request.save_method and request.customer_key:
            # Read back by verify() as the SavedMethod's customer_reference.
            metadata[CUSTOMER_KEY] = request.customer_key
        payment = self._post(
            "payments",
            request.idempotency_key,
            {
                "amount": _amount_out(request.amount, request.currency),
                "capture": True,
                "confirmation": {"type": "redirect", "return_url": request.return_url},
                "description": request.description[:PAYMENT_DESCRIPTION_LIMIT],
                "metadata": metadata,
                # Always sent, false included: once the shop is allowed autopayments, false is
                # how a payment keeps nothing (recurring-payments/pay-without-saving); left out,
                # the customer may be offered to save the method on a one-off payment.
                "save_payment_method": request.save_method,
            },
        )
        with _reading("payment"):
            return CheckoutSession(
                reference=payment["id"], redirect_url=payment["confirmation"]["confirmation_url"], raw=payment
            )

    def verify(self, reference: str) -> PaymentState:
        response = self.http.request("GET", f"payments/{quote(reference, safe='')}", retry_safe=True)
        payment = self._answer(response)
        with _reading("payment"):
            return _payment_state(payment)

    def charge_saved(self, request: SavedChargeRequest) -> PaymentState:
        """An autopayment: POST /payments with the saved `payment_method_id`, no confirmation.

        The request's idempotency key is the Idempotence-Key, so the same request sent again
        (after a timeout or a 5xx, here or by the caller) answers the first payment (see the
        module docstring). A canceled answer is a decline: FAILED with its reason.
        """
        if not request.method.token:
            raise GatewayError(
                "yookassa: the saved method has no token", transient=False, code="invalid_request"
            )
        metadata = {**request.metadata, "payment_id": request.payment_id}
        if request.method.customer_reference:
            metadata[CUSTOMER_KEY] = request.method.customer_reference
        payment = self._post(
            "payments",
            request.idempotency_key,
            {
                "amount": _amount_out(request.amount, request.currency),
                "capture": True,
                "payment_method_id": request.method.token,
                "description": request.description[:PAYMENT_DESCRIPTION_LIMIT],
                # Sorted: the caller's retry may rebuild the metadata from the database in
                # another order, and the same key with another body is refused, not replayed.
                "metadata": dict(sorted(metadata.items())),
            },
        )
        with _reading("payment"):
            state = _payment_state(payment)
        if state.status == Status.CANCELLED:
            # Nobody abandons an autopayment: whatever canceled it declined it.
            state = dataclasses.replace(state, status=Status.FAILED)
        return state

    def method_forget(self, method: SavedMethod) -> None:
        """Nothing to send: YooKassa has no call to delete or deactivate a saved method.

        The method stays usable at YooKassa, so forgetting it is ours to do: the deleted method
        is never charged again. (The customer may also withdraw consent at YooKassa at any
        time: a later charge is then canceled with permission_revoked, a decline like others.)
        """
        return None

    def refund(self, request: RefundRequest) -> RefundResult:
        refund = self._post(
            "refunds",
            request.idempotency_key,
            {
                "payment_id": request.reference,
                "amount": _amount_out(request.amount, request.currency),
                "description": request.reason[:REFUND_DESCRIPTION_LIMIT],
            },
        )
        with _reading("refund"):
            amount, currency = _amount_in(refund["amount"])
            return RefundResult(
                refund_reference=refund["id"],
                status=REFUND_STATUSES[refund["status"]],
                amount=amount,
                currency=currency,
                raw=refund,
            )

    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        """Parse {"type": "notification", "event": "payment.succeeded", "object": {...}}, unauthenticated.

        YooKassa signs nothing, so nothing here is authenticated: anyone who can reach the URL
        can post a well-formed notification. WebhookAuthError refuses only a body that is not a
        well-formed payment or refund notification. The caller trusts nothing in the notice
        until verify(reference) has fetched the payment back from the API with our credentials.

        event_id is the event name, the object's id and its status: YooKassa sends each event of
        an object once (redelivering it unchanged until it gets a 200) and gives no event id.
        A refund notice carries the payment's reference and no status hint or amount: its
        object is the refund, and only verify() tells whether the payment is now fully refunded.
        """
        try:
            notification = json.loads(body)
            event, obj = notification["event"], notification["object"]
            if notification["type"] != "notification" or not isinstance(event, str):
                raise ValueError("not a notification")
            kind = event.partition(".")[0]
            if kind not in ("payment", "refund"):
                raise ValueError(f"not a payment or refund event: {event!r}")
            state = _payment_state(obj) if kind == "payment" else None
            reference = state.reference if state else obj["payment_id"]
            if not isinstance(reference, str) or not reference or not isinstance(obj["id"], str):
                raise ValueError("object without an id")
            event_id = f"{event}:{obj['id']}:{obj['status']}"
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise WebhookAuthError(f"yookassa: not a well-formed notification: {exc!r}") from exc
        return WebhookNotice(
            event_id=event_id,
            reference=reference,
            status_hint=state.status if state else None,
            amount=state.amount if state else None,
            currency=state.currency if state else None,
            raw=notification,
        )

    def webhook_reply(self, notice: WebhookNotice) -> WebhookReply:
        # Any 200 acknowledges the notification; anything else is redelivered for 24 hours.
        return WebhookReply(status=200)

    def _post(self, path: str, idempotency_key: str, payload: dict[str, Any]) -> dict[str, Any]:
        # YooKassa de-duplicates a POST by its Idempotence-Key: a retry returns the first result.
        response = self.http.request(
            "POST", path, retry_safe=True, json=payload, headers={"Idempotence-Key": idempotency_key}
        )
        return self._answer(response)

    def _answer(self, response: requests.Response) -> dict[str, Any]:
        """The answer's object, or GatewayError(transient=False) with YooKassa's code and description."""
        body = self.http.json(response)
        if not isinstance(body, dict):
            raise GatewayError(
                f"yookassa: answer is not an object (HTTP {response.status_code})",
                transient=False,
                status=response.status_code,
            )
        if response.status_code != 200 or body.get("type") == "error":
            description = body.get("description") or f"HTTP {response.status_code}"
            parameter = f" ({body['parameter']})" if body.get("parameter") else ""
            raise GatewayError(
                f"yookassa: {description}{parameter}",
                transient=False,
                code=str(body.get("code", "")),
                status=response.status_code,
            )
        return body
