"""Paystack: hosted checkout through the Transaction API, refunds, signed webhooks, and
charges of a saved card authorization without the customer (renewals).

Documented endpoints used (https://paystack.com/docs/api/, base https://api.paystack.co for
both test and live mode: the secret key, sk_test_... or sk_live_..., selects the mode, so
PAYMENT_ENV=test needs no other URL). Every call carries `Authorization: Bearer <secret key>`
and answers `{"status": true|false, "message": ..., "data": ...}`:

- POST /transaction/initialize {email, amount (subunits, integer), currency, reference,
  callback_url, metadata} -> data.authorization_url, data.access_code, data.reference.
- GET /transaction/verify/:reference -> data.status (success, failed, abandoned, ongoing,
  pending, processing, queued, reversed), data.amount (subunits), data.currency,
  data.gateway_response (the bank's or processor's words), data.metadata (as we sent it),
  data.authorization {authorization_code, reusable, brand, card_type, last4, exp_month,
  exp_year, bank, channel, signature, ...} and data.customer {email, customer_code, ...}.
- POST /refund {transaction, amount (subunits), currency, customer_note, merchant_note}
  -> data.id, data.status (pending, processing, processed, failed), data.amount.
- POST /transaction/charge_authorization {email, amount (subunits), authorization_code,
  reference, currency, metadata} -> "Charge attempted" and the new transaction, as verify
  gives it (data.status success or failed, data.gateway_response); or, when the card's bank
  wants the customer after all, data {paused: true, authorization_url, reference}.
- POST /customer/authorization/deactivate {authorization_code} -> status and message, no data.
  (It replaced POST /customer/deactivate_authorization in Paystack's reference.)

Saved methods (https://paystack.com/docs/payments/recurring-charges/): every successful card
payment leaves an authorization, and Paystack charges it again when `reusable` is true. So a
checkout that saves asks nothing special of Paystack: save_method only marks the transaction's
metadata ("save_method": "true", and our customer_key), and verify() of a success so marked
returns the reusable authorization as a SavedMethod (none when Paystack will not reuse the
card: the renewal then needs the customer again). Its token is the authorization_code; its
customer_reference is the email of the Paystack customer it belongs to, because
charge_authorization refuses any other email ("Email does not match Authorization code"),
and our customer may change theirs later. Paystack has no customer id to send at checkout.

Idempotency: the reference we send is unique per transaction at Paystack: a second
initialize or charge_authorization with the same reference creates nothing and is refused with
"Duplicate Transaction Reference". So the reference is our idempotency key (made to fit
Paystack's alphabet, see `paystack_reference`), and both calls are safe to retry. Paystack
returns the checkout URL only in the first answer: if that answer was lost, the retry gets the
refusal and we raise GatewayError(code="duplicate_reference"); the caller starts a new checkout
with a new key. A charge whose answer was lost (a timeout or a 5xx, whether the client's own
retry or the caller's, with the same key) gets the same refusal, and the refusal proves that the
first try made the transaction: charge_saved then verifies the reference and returns that
transaction's state, so one key charges the card once. POST /refund has no idempotency key,
so it is never retried here.

Webhooks (https://paystack.com/docs/payments/webhooks/): header `x-paystack-signature` is
the hex HMAC-SHA512 of the raw body keyed with the secret key. Events carry no event id, so
event_id is the event name and the id of its object (transaction or refund). Paystack wants
a 200 with nothing else: the default WebhookReply. Paystack also publishes the IPs it sends
from; filtering on them is left to the web server. A renewal's charge.success names the
reference charge_saved returned. The saved method is read from verify(), never from a webhook.
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
    SavedChargeRequest,
    SavedMethod,
    Status,
    WebhookAuthError,
    WebhookNotice,
)
from payments.gateways.http import GatewayHTTP

BASE_URL = "https://api.paystack.co"
SIGNATURE_HEADER = "x-paystack-signature"
_REFERENCE_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
SAVE_MARK = "save_method"  # the metadata key a checkout that saves its card carries
# The authorization's fields kept in SavedMethod.raw: what the customer recognises the card by
# and what Paystack identifies it by. Not `bin` (the card number's first six digits).
AUTHORIZATION_FIELDS = (
    "authorization_code",
    "channel",
    "brand",
    "card_type",
    "last4",
    "exp_month",
    "exp_year",
    "bank",
    "country_code",
    "reusable",
    "signature",
    "account_name",
)

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


def _metadata(data: Mapping[str, Any]) -> dict[str, Any]:
    """A transaction's metadata: the object we sent, or the JSON string Paystack may give back."""
    metadata = data.get("metadata")
    if isinstance(metadata, str):
        with contextlib.suppress(ValueError):
            metadata = json.loads(metadata)
    return metadata if isinstance(metadata, dict) else {}


def _saved_method(data: Mapping[str, Any]) -> SavedMethod | None:
    """The transaction's authorization as a SavedMethod, if Paystack will charge it again."""
    authorization = data.get("authorization")
    customer = data.get("customer")
    if not isinstance(authorization, dict) or authorization.get("reusable") is not True:
        return None
    token = authorization.get("authorization_code")
    email = customer.get("email") if isinstance(customer, dict) else None
    if not token or not email:  # without the email it belongs to, no charge would be accepted
        return None
    # "visa •••• 4081, expires 12/2030"; card_type ("visa DEBIT") where Paystack gives no brand.
    kind = authorization.get("brand") or authorization.get("card_type") or authorization.get("channel")
    kind = str(kind or "card").strip()
    last4 = authorization.get("last4")
    label = f"{kind} •••• {last4}" if last4 else kind
    if authorization.get("exp_month") and authorization.get("exp_year"):
        label += f", expires {authorization['exp_month']}/{authorization['exp_year']}"
    raw = {name: authorization.get(name) for name in AUTHORIZATION_FIELDS}
    raw.update(customer_code=customer.get("customer_code"), email=email)
    return SavedMethod(token=str(token), customer_reference=str(email), label=label, raw=raw)


class PaystackGateway(PaymentGateway):
    name = "paystack"
    webhook_settings = ("secret_key",)
    saves_methods = True

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
        metadata = {**request.metadata, "payment_id": request.payment_id, "description": request.description}
        if request.save_method:
            # Paystack keeps every card authorization anyway: the mark tells verify() that this
            # customer asked to keep theirs, and the dashboard whose customer it is.
            metadata[SAVE_MARK] = "true"
            if request.customer_key:
                metadata["customer_key"] = request.customer_key
        payload = {
            "email": request.customer_email,
            "amount": to_minor(request.amount, request.currency),
            "currency": request.currency,
            "reference": reference,
            "callback_url": request.return_url,
            "metadata": metadata,
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
        return self._state(self._transaction(reference), reference)

    def _transaction(self, reference: str) -> dict[str, Any]:
        return self._call("GET", f"/transaction/verify/{quote(reference, safe='')}", retry_safe=True)

    def charge_saved(self, request: SavedChargeRequest) -> PaymentState:
        reference = paystack_reference(request.idempotency_key)
        payload = {
            # The email the authorization belongs to at Paystack, which it checks; ours may differ.
            "email": request.method.customer_reference or request.customer_email,
            "amount": to_minor(request.amount, request.currency),
            "authorization_code": request.method.token,
            "reference": reference,
            "currency": request.currency,
            "metadata": {
                **request.metadata,
                "payment_id": request.payment_id,
                "description": request.description,
            },
        }
        try:
            # Retry-safe: a retry that finds the reference taken is answered below, by verify.
            data = self._call("POST", "/transaction/charge_authorization", retry_safe=True, json=payload)
        except GatewayError as exc:
            if exc.transient or "duplicate" not in str(exc).lower():
                raise
            return self._charged_before(reference, request, exc)
        if data.get("paused") or "amount" not in data:
            # The bank wants the customer (data.authorization_url) after all: no transaction
            # fields in this answer, and verify() says where the transaction stands (pending).
            return self.verify(str(data.get("reference") or reference))
        return self._state(data, reference)

    def method_forget(self, method: SavedMethod) -> None:
        try:
            # Retry-safe: deactivating twice leaves the authorization as deactivating once does.
            self._call(
                "POST",
                "/customer/authorization/deactivate",
                retry_safe=True,
                json={"authorization_code": method.token},
                data_required=False,
            )
        except GatewayError as exc:
            if exc.status != 404:  # "Authorization code not found": Paystack can charge it no more
                raise

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

    def _state(self, data: Mapping[str, Any], reference: str) -> PaymentState:
        """A transaction as verify and charge_authorization give it, in our terms."""
        status = TRANSACTION_STATUSES.get(data.get("status"), Status.PENDING)
        amount, currency = self._money(data)
        error = (data.get("gateway_response") or data.get("message") or "") if status == Status.FAILED else ""
        saved = None
        if status == Status.SUCCEEDED and _metadata(data).get(SAVE_MARK) == "true":
            saved = _saved_method(data)
        return PaymentState(
            reference=data.get("reference") or reference,
            status=status,
            amount=amount,
            currency=currency,
            error=error,
            # The ledger keeps the answer without the card's authorization: its code charges the
            # card again (it is kept once, as the saved method's token) and it holds the BIN.
            raw={key: value for key, value in data.items() if key != "authorization"},
            saved_method=saved,
        )

    def _charged_before(
        self, reference: str, request: SavedChargeRequest, refusal: GatewayError
    ) -> PaymentState:
        """The state of the charge an earlier try with this reference made (its answer was lost)."""
        try:
            data = self._transaction(reference)
        except GatewayError as exc:
            if exc.transient or exc.status != 404:
                raise
            # The reference is taken but its transaction not found (yet): the first try is
            # still under way at Paystack, and the caller's next retry will find it.
            raise GatewayError(
                f"paystack: charge {reference} is still being made; verify it again later",
                transient=True,
                code="charge_in_flight",
                status=exc.status,
            ) from exc
        state = self._state(data, reference)
        authorization = data.get("authorization")  # not in state.raw: the ledger never keeps it
        code = authorization.get("authorization_code") if isinstance(authorization, dict) else None
        other_card = bool(code) and code != request.method.token
        other_amount = state.amount != request.amount or state.currency != request.currency
        if other_card or other_amount:
            # The key was spent on another transaction (another card, amount or currency):
            # returning that one's state would report a charge this request never made.
            raise GatewayError(
                f"paystack: reference {reference} belongs to another transaction; charge with a new "
                "idempotency key",
                transient=False,
                code="duplicate_reference",
                status=refusal.status,
            ) from refusal
        return state

    def _call(
        self, method: str, path: str, *, retry_safe: bool, json: Any = None, data_required: bool = True
    ) -> dict[str, Any]:
        """One API call; anything but `status: true` (with a data object where one is due) raises
        GatewayError. Deactivation answers a status and a message only."""
        response = self.http.request(method, path, retry_safe=retry_safe, json=json)
        body = self.http.json(response)
        if not isinstance(body, dict):
            body = {}
        data = body.get("data")
        if response.ok and body.get("status") is True and (isinstance(data, dict) or not data_required):
            return data if isinstance(data, dict) else {}
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
