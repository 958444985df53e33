"""A fake Stripe API: Checkout Sessions with their PaymentIntents and charges, refunds, signed events.

Checks what Stripe checks: the secret key (Bearer or Basic auth), required Session fields,
amounts as integers in minor units, refund reasons and the unrefunded amount, and the
Idempotency-Key (a replay with the same parameters returns the first answer and creates
nothing; other parameters get a 400 idempotency_error). Errors have Stripe's shape,
{"error": {"type", "message", "code"?, "param"?}}.

A Session starts "open" with no PaymentIntent; the customer's first attempt creates one
(complete, decline), as Stripe does since API version 2022-08-01.
"""

import base64
import copy
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.payments.fakes.base import FakeProvider, FakeRequest, route

REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
PRICE = "line_items[0][price_data]"

Answer = tuple[int, dict[str, Any]] | tuple[int, dict[str, Any], dict[str, str]]


def _error(
    status: int, message: str, *, code: str = "", param: str = "", kind: str = "invalid_request_error"
):
    error = {"type": kind, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return status, {"error": error}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _nested(form: dict[str, str], prefix: str) -> dict[str, str]:
    """{"metadata[a]": "1"} with prefix "metadata" -> {"a": "1"}."""
    start = f"{prefix}["
    return {
        k[len(start) : -1]: v for k, v in form.items() if k.startswith(start) and "[" not in k[len(start) :]
    }


@dataclass
class FakeStripe(FakeProvider):
    secret: str = "sk_test_fake"
    webhook_secret: str = "whsec_fake"
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    replays: dict[str, tuple[Any, Answer]] = field(default_factory=dict)

    # --- the API -----------------------------------------------------------------------------

    @route("POST", r"^/v1/checkout/sessions$")
    def create_session(self, request: FakeRequest) -> Answer:
        if denied := self._deny(request):
            return denied
        form = request.form
        if form.get("mode") != "payment":
            return _error(400, "This fake only knows mode=payment.", code="parameter_invalid", param="mode")
        for name in ("success_url", f"{PRICE}[currency]", f"{PRICE}[product_data][name]"):
            if not form.get(name):
                return _error(400, f"Missing required param: {name}.", code="parameter_missing", param=name)
        for name in (f"{PRICE}[unit_amount]", "line_items[0][quantity]"):
            if not form.get(name, "").isdigit():
                return _error(
                    400, f"Invalid integer: {form.get(name)}", code="parameter_invalid_integer", param=name
                )
        return self._once(request, lambda: (200, self._new_session(form)))

    @route("GET", r"^/v1/checkout/sessions/(?P<session_id>[^/]+)$")
    def get_session(self, request: FakeRequest, session_id: str) -> Answer:
        if denied := self._deny(request):
            return denied
        if session_id not in self.sessions:
            return _error(
                404, f"No such checkout.session: '{session_id}'", code="resource_missing", param="id"
            )
        return 200, self._render(self.sessions[session_id], request.query.get("expand[]", []))

    @route("POST", r"^/v1/refunds$")
    def create_refund(self, request: FakeRequest) -> Answer:
        if denied := self._deny(request):
            return denied
        form = request.form
        intent = self.intents.get(form.get("payment_intent", ""))
        if intent is None:
            return _error(
                400,
                f"No such payment_intent: '{form.get('payment_intent')}'",
                code="resource_missing",
                param="payment_intent",
            )
        if "amount" in form and not (form["amount"].isdigit() and int(form["amount"]) > 0):
            return _error(
                400,
                f"Invalid positive integer: {form['amount']}",
                code="parameter_invalid_integer",
                param="amount",
            )
        if form.get("reason", "requested_by_customer") not in REFUND_REASONS:
            return _error(
                400,
                "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
                param="reason",
            )
        return self._once(request, lambda: self._refund(intent, form))

    # --- what the customer does on the hosted page ------------------------------------------------

    def complete(self, reference: str) -> None:
        """The customer pays: the PaymentIntent succeeds with one captured charge."""
        session = self._open(reference)
        intent = self._intent(session)
        charge = {
            "id": _new_id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_refunded": 0,
            "refunded": False,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "status": "succeeded",
        }
        self.charges[charge["id"]] = charge
        intent.update(status="succeeded", amount_received=intent["amount"], latest_charge=charge["id"])
        intent["last_payment_error"] = None
        session.update(status="complete", payment_status="paid")

    def decline(
        self, reference: str, reason: str = "Your card was declined.", decline_code: str = "generic_decline"
    ):
        """The card is declined: the Session stays open, the PaymentIntent wants another method."""
        intent = self._intent(self._open(reference))
        intent["status"] = "requires_payment_method"
        intent["last_payment_error"] = {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": decline_code,
            "message": reason,
        }

    def expire(self, reference: str) -> None:
        session = self._open(reference)
        session["status"] = "expired"
        if session["payment_intent"]:
            self.intents[session["payment_intent"]]["status"] = "canceled"

    def signed_webhook(
        self, event_type: str, reference: str, *, timestamp: int | None = None, secret: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """An event about a Session (cs_...) or a PaymentIntent (pi_...), signed as Stripe documents."""
        target = (
            self._render(self.sessions[reference], [])
            if reference in self.sessions
            else copy.deepcopy(self.intents[reference])
        )
        event = {
            "id": _new_id("evt"),
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "livemode": False,
            "type": event_type,
            "data": {"object": target},
        }
        body = json.dumps(event).encode()
        signed_at = int(time.time()) if timestamp is None else timestamp
        key = (self.webhook_secret if secret is None else secret).encode()
        signature = hmac.new(key, f"{signed_at}.".encode() + body, hashlib.sha256).hexdigest()
        return {"Stripe-Signature": f"t={signed_at},v1={signature}"}, body

    # --- internals ---------------------------------------------------------------------------

    def _deny(self, request: FakeRequest) -> Answer | None:
        basic = base64.b64encode(f"{self.secret}:".encode()).decode()
        if request.headers.get("authorization") in (f"Bearer {self.secret}", f"Basic {basic}"):
            return None
        return _error(401, "Invalid API Key provided.")

    def _once(self, request: FakeRequest, execute: Callable[[], Answer]) -> Answer:
        """Stripe's idempotency: the first answer for a key is replayed; other parameters are refused."""
        key = request.headers.get("idempotency-key")
        if not key:
            return execute()
        fingerprint = (request.path, request.form)
        if key in self.replays:
            first, answer = self.replays[key]
            if first != fingerprint:
                return _error(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters they were "
                    f"first used with. Try using a key other than '{key}' if you meant to execute a "
                    "different request.",
                    kind="idempotency_error",
                )
            return (*answer[:2], {"Idempotent-Replayed": "true"})
        answer = execute()
        self.replays[key] = (fingerprint, copy.deepcopy(answer))
        return answer

    def _new_session(self, form: dict[str, str]) -> dict[str, Any]:
        session_id = _new_id("cs_test")
        self.sessions[session_id] = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "payment",
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "status": "open",
            "payment_status": "unpaid",
            "amount_total": int(form[f"{PRICE}[unit_amount]"]) * int(form["line_items[0][quantity]"]),
            "currency": form[f"{PRICE}[currency]"].lower(),
            "client_reference_id": form.get("client_reference_id"),
            "customer_email": form.get("customer_email"),
            "success_url": form["success_url"],
            "cancel_url": form.get("cancel_url"),
            "metadata": _nested(form, "metadata"),
            "payment_intent": None,
            "_intent_metadata": _nested(form, "payment_intent_data[metadata]"),  # not shown: for the intent
        }
        return self._render(self.sessions[session_id], [])

    def _render(self, session: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        shown = {k: v for k, v in session.items() if not k.startswith("_")}
        if session["payment_intent"] and any(path.split(".")[0] == "payment_intent" for path in expand):
            intent = dict(self.intents[session["payment_intent"]])
            if "payment_intent.latest_charge" in expand and intent["latest_charge"]:
                intent["latest_charge"] = self.charges[intent["latest_charge"]]
            shown["payment_intent"] = intent
        return copy.deepcopy(shown)

    def _open(self, reference: str) -> dict[str, Any]:
        session = self.sessions[reference]
        if session["status"] != "open":
            raise ValueError(f"Stripe lets nobody pay a {session['status']} Checkout Session")
        return session

    def _intent(self, session: dict[str, Any]) -> dict[str, Any]:
        if session["payment_intent"] is None:
            intent = {
                "id": _new_id("pi"),
                "object": "payment_intent",
                "amount": session["amount_total"],
                "amount_received": 0,
                "currency": session["currency"],
                "status": "requires_payment_method",
                "last_payment_error": None,
                "latest_charge": None,
                "metadata": session["_intent_metadata"],
            }
            self.intents[intent["id"]] = intent
            session["payment_intent"] = intent["id"]
        return self.intents[session["payment_intent"]]

    def _refund(self, intent: dict[str, Any], form: dict[str, str]) -> Answer:
        if intent["status"] != "succeeded":
            return _error(400, f"PaymentIntent {intent['id']} does not have a successful charge to refund.")
        charge = self.charges[intent["latest_charge"]]
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining == 0:
            return _error(
                400, f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
            )
        amount = int(form.get("amount", remaining))
        if amount > remaining:
            return _error(
                400,
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                param="amount",
            )
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        refund = {
            "id": _new_id("re"),
            "object": "refund",
            "amount": amount,
            "currency": charge["currency"],
            "charge": charge["id"],
            "payment_intent": intent["id"],
            "reason": form.get("reason"),
            "metadata": _nested(form, "metadata"),
            "status": "succeeded",
        }
        self.refunds[refund["id"]] = refund
        return 200, refund
