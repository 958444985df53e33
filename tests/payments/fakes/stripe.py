"""A fake Stripe API: Checkout Sessions with their PaymentIntents and charges, saved cards
(Customers, PaymentMethods) charged off-session, refunds, detaching, signed events.

Checks what Stripe checks: the secret key (Bearer or Basic auth), required Session fields,
amounts as integers in minor units, refund reasons and the unrefunded amount, and the
Idempotency-Key (a replay with the same parameters returns the first answer and creates
nothing; other parameters get a 400 idempotency_error; a key whose first request is still
being executed gets a 409). Errors have Stripe's shape, {"error": {"type", "message", "code"?,
"param"?}}, with Stripe's messages where they are known.

A Session starts "open" with no PaymentIntent; the customer's first attempt creates one
(complete, decline), as Stripe does since API version 2022-08-01. Paying creates a card
PaymentMethod; a Session made with payment_intent_data[setup_future_usage] attaches it to a
Customer (created with customer_creation=always), which is what makes it chargeable again.

An off-session PaymentIntent (POST /v1/payment_intents, confirm=true, off_session=true) needs
its PaymentMethod attached to the Customer named with it; a PaymentMethod attached to no one
(never saved, or detached) can be used once only. How its charge goes is the card's: Stripe's
test numbers 4242424242424242 (pays), 4000000000000341 (attaches, then every charge is
declined), 4000002760003184 (asks for 3-D Secure every time, so off-session it is declined
with authentication_required). A test also sets what happens to the next charge:

    fake.complete(session_id, card="4000000000000341")  # the card the customer saves
    fake.decline_next_charge("insufficient_funds")       # 402 card_error, a failed PaymentIntent
    fake.slow_next_charge()   # charged, but the answer comes after stall_seconds (a timeout)
    fake.fail_next(503)       # FakeProvider: a 503 before anything is executed
"""

import base64
import copy
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.payments.fakes.base import FakeProvider, FakeRequest, route

REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
PRICE = "line_items[0][price_data]"
INTENT_DATA = "payment_intent_data"
APM = "automatic_payment_methods"

Answer = tuple[int, dict[str, Any]] | tuple[int, dict[str, Any], dict[str, str]]

# What an off-session charge of each test card does (https://docs.stripe.com/testing): None pays.
DECLINED = {"code": "card_declined", "decline_code": "generic_decline", "message": "Your card was declined."}
AUTHENTICATION_REQUIRED = {
    "code": "authentication_required",
    "decline_code": "authentication_required",
    "message": "Your card was declined. This transaction requires authentication.",
}
TEST_CARDS: dict[str, tuple[str, dict[str, str] | None]] = {
    "4242424242424242": ("visa", None),
    "5555555555554444": ("mastercard", None),
    "4000000000000341": ("visa", DECLINED),  # attaching succeeds, charging fails
    "4000002760003184": ("visa", AUTHENTICATION_REQUIRED),  # 3-D Secure on every payment
}
DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "do_not_honor": "Your card was declined.",
}
NOT_REUSABLE = (
    "The provided PaymentMethod was previously used with a PaymentIntent without Customer attachment, "
    "shared with a connected account without Customer attachment, or was detached from a Customer. It "
    "may not be used again. To use a PaymentMethod multiple times, you must attach it to a Customer first."
)
RETURN_URL_NEEDED = (
    "This PaymentIntent is configured to accept payment methods enabled in your Dashboard. Because some "
    "of these payment methods might redirect your customer off of your page, you must provide a "
    "`return_url`. If you don't want to accept redirect-based payment methods, set "
    "`automatic_payment_methods[enabled]` to `true` and `automatic_payment_methods[allow_redirects]` to "
    "`never` when creating Setup Intents and Payment Intents."
)


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


def _shown(stored: dict[str, Any]) -> dict[str, Any]:
    """An object as the API shows it: without the fake's own "_" keys."""
    return copy.deepcopy({k: v for k, v in stored.items() if not k.startswith("_")})


@dataclass
class FakeStripe(FakeProvider):
    secret: str = "sk_test_fake"
    webhook_secret: str = "whsec_fake"
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    replays: dict[str, tuple[Any, Answer]] = field(default_factory=dict)
    # What the next off-session charges do instead of what their card does, in order:
    # ("decline", {code, decline_code, message}), ("lose_answer", None) or ("slow", None).
    next_charges: list[tuple[str, dict[str, str] | None]] = field(default_factory=list)
    _keys: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _in_flight: set[str] = field(default_factory=set, repr=False)

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
        if form.get("customer_creation", "if_required") not in ("always", "if_required"):
            return _error(
                400,
                "Invalid customer_creation: must be one of always or if_required",
                param="customer_creation",
            )
        if "customer_creation" in form and "customer" in form:
            return _error(
                400,
                "You may only specify one of these parameters: customer, customer_creation.",
                param="customer",
            )
        if form.get("customer") and form["customer"] not in self.customers:
            return _error(
                400, f"No such customer: '{form['customer']}'", code="resource_missing", param="customer"
            )
        future = form.get(f"{INTENT_DATA}[setup_future_usage]")
        if future not in (None, "on_session", "off_session"):
            return _error(
                400,
                "Invalid setup_future_usage: must be one of on_session or off_session",
                param=f"{INTENT_DATA}[setup_future_usage]",
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

    @route("POST", r"^/v1/payment_intents$")
    def create_intent(self, request: FakeRequest) -> Answer:
        """Only the off-session charge of a saved method: confirm=true with a payment_method."""
        if denied := self._deny(request):
            return denied
        form = request.form
        if not (form.get("amount", "").isdigit() and int(form["amount"]) > 0):
            return _error(
                400,
                f"Invalid integer: {form.get('amount')}",
                code="parameter_invalid_integer",
                param="amount",
            )
        if not form.get("currency"):
            return _error(
                400, "Missing required param: currency.", code="parameter_missing", param="currency"
            )
        if "off_session" in form and form.get("confirm") != "true":
            return _error(400, "off_session can only be used with confirm=true.", param="off_session")
        if form.get("confirm") != "true" or form.get("off_session") != "true":
            return _error(400, "This fake only knows confirm=true, off_session=true.", param="confirm")
        if (
            form.get(f"{APM}[enabled]", "true") == "true"  # the default since API version 2023-08-16
            and form.get(f"{APM}[allow_redirects]") != "never"
            and not form.get("return_url")
        ):
            return _error(400, RETURN_URL_NEEDED)
        key = request.headers.get("idempotency-key", "")
        first = key not in self.replays and key not in self._in_flight  # not a retry
        outcome, decline = self.next_charges.pop(0) if self.next_charges and first else ("", None)
        delay = self.stall_seconds if outcome == "slow" else 0  # still charging when the client gives up
        answer = self._once(
            request,
            lambda: self._charge(form, decline, delay=delay),
            # The PaymentMethod changes (detached, used once): a retry gets its first answer back
            # before anything is checked again.
            check=lambda: self._refuse_method(form.get("payment_method", ""), form.get("customer", "")),
        )
        if outcome == "lose_answer":  # charged; the answer comes too late for the client
            time.sleep(self.stall_seconds)
        return answer

    @route("GET", r"^/v1/payment_intents/(?P<intent_id>[^/]+)$")
    def get_intent(self, request: FakeRequest, intent_id: str) -> Answer:
        if denied := self._deny(request):
            return denied
        if intent_id not in self.intents:
            return _error(404, f"No such payment_intent: '{intent_id}'", code="resource_missing", param="id")
        return 200, self._render_intent(self.intents[intent_id], request.query.get("expand[]", []))

    @route("POST", r"^/v1/payment_methods/(?P<method_id>[^/]+)/detach$")
    def detach_method(self, request: FakeRequest, method_id: str) -> Answer:
        if denied := self._deny(request):
            return denied
        method = self.payment_methods.get(method_id)
        if method is None:
            return _error(
                404, f"No such PaymentMethod: '{method_id}'", code="resource_missing", param="payment_method"
            )

        def refuse() -> Answer | None:  # checked after the replay: a retried detach gets its 200 back
            if method["customer"]:
                return None
            return _error(
                400,
                "The payment method you provided is not attached to a customer so detachment is impossible.",
            )

        def detach() -> Answer:
            method.update(customer=None, _spent=True)  # detaching is final: it cannot be used again
            return 200, _shown(method)

        return self._once(request, detach, check=refuse)

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

    def complete(self, reference: str, card: str = "4242424242424242", expires: tuple[int, int] = (12, 2030)):
        """The customer pays with `card` (a Stripe test number): the PaymentIntent succeeds with one
        captured charge, and a Session made to save the card attaches it to its Customer."""
        session = self._open(reference)
        intent = self._intent(session)
        method = self._new_method(card, expires, email=session["customer_email"])
        customer = session["_customer"]
        if customer is None and session["_customer_creation"] == "always":
            customer = self._new_customer(session["customer_email"])
        session["customer"] = intent["customer"] = customer
        if customer and intent["setup_future_usage"]:  # Checkout attaches the card to its Customer
            method["customer"] = customer
        charge = self._new_charge(intent, method, status="succeeded")
        intent.update(
            status="succeeded",
            amount_received=intent["amount"],
            latest_charge=charge["id"],
            payment_method=method["id"],
            last_payment_error=None,
        )
        method["_spent"] = not method["customer"]  # one use only, unless attached
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

    # --- what a test makes the next off-session charge do -------------------------------------------

    def decline_next_charge(self, decline_code: str = "generic_decline", *, code: str = "card_declined"):
        """The next charge is declined by the issuer whatever the card (a 402 card_error)."""
        message = DECLINE_MESSAGES.get(decline_code, "Your card was declined.")
        self.next_charges.append(
            ("decline", {"code": code, "decline_code": decline_code, "message": message})
        )

    def lose_next_charge_answer(self) -> None:
        """The next charge is made, but its answer is sent only after `stall_seconds`."""
        self.next_charges.append(("lose_answer", None))

    def slow_next_charge(self) -> None:
        """The next charge takes `stall_seconds` to be made, its idempotency key held meanwhile."""
        self.next_charges.append(("slow", None))

    def intents_for(self, payment_id: str) -> list[dict[str, Any]]:
        """The PaymentIntents created for our payment (metadata[payment_id])."""
        return [i for i in self.intents.values() if i["metadata"].get("payment_id") == payment_id]

    def captured_for(self, payment_id: str) -> int:
        """How much was captured for our payment, in minor units: the money actually taken."""
        return sum(i["amount_received"] for i in self.intents_for(payment_id))

    def signed_webhook(
        self, event_type: str, reference: str, *, timestamp: int | None = None, secret: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """An event about a Session (cs_...) or a PaymentIntent (pi_...), signed as Stripe documents."""
        target = (
            self._render(self.sessions[reference], [])
            if reference in self.sessions
            else self._render_intent(self.intents[reference], [])
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

    def _once(
        self,
        request: FakeRequest,
        execute: Callable[[], Answer],
        *,
        check: Callable[[], Answer | None] = lambda: None,
    ) -> Answer:
        """Stripe's idempotency: the first answer for a key is replayed; other parameters are refused,
        and so is a request whose key is held by one still being executed (409). `check` refuses a
        request before it executes, and such a refusal is not kept for the key (Stripe keeps no
        answer to a request that failed validation)."""
        key = request.headers.get("idempotency-key")
        if not key:
            return check() or execute()
        fingerprint = (request.path, request.form)
        with self._keys:
            if key in self._in_flight:
                return _error(
                    409,
                    "There is currently another in-progress request using this Idempotent Key (that "
                    "probably means you submitted twice, and the other request is still going through): "
                    f"{key}. Please try again later.",
                    kind="idempotency_error",
                )
            replay = self.replays.get(key)
            if replay is None:
                self._in_flight.add(key)
        if replay is not None:
            first, answer = replay
            if first != fingerprint:
                return _error(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters they were "
                    f"first used with. Try using a key other than '{key}' if you meant to execute a "
                    "different request.",
                    kind="idempotency_error",
                )
            return (*answer[:2], {"Idempotent-Replayed": "true"})
        try:
            if refused := check():
                return refused
            answer = execute()
            with self._keys:
                self.replays[key] = (fingerprint, copy.deepcopy(answer))
        finally:
            with self._keys:
                self._in_flight.discard(key)
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
            "customer": None,  # set when the Session completes with one
            "customer_creation": None
            if form.get("customer")
            else form.get("customer_creation", "if_required"),
            "customer_email": form.get("customer_email"),
            "success_url": form["success_url"],
            "cancel_url": form.get("cancel_url"),
            "metadata": _nested(form, "metadata"),
            "payment_intent": None,
            # not shown: what the PaymentIntent and the Customer will be made with
            "_intent_metadata": _nested(form, f"{INTENT_DATA}[metadata]"),
            "_setup_future_usage": form.get(f"{INTENT_DATA}[setup_future_usage]"),
            "_customer": form.get("customer"),
            "_customer_creation": form.get("customer_creation", "if_required"),
        }
        return self._render(self.sessions[session_id], [])

    def _render(self, session: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        shown = _shown(session)
        if session["payment_intent"] and any(path.split(".")[0] == "payment_intent" for path in expand):
            inner = [path.split(".", 1)[1] for path in expand if path.startswith("payment_intent.")]
            shown["payment_intent"] = self._render_intent(self.intents[session["payment_intent"]], inner)
        return shown

    def _render_intent(self, intent: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        shown = _shown(intent)
        if "latest_charge" in expand and intent["latest_charge"]:
            shown["latest_charge"] = _shown(self.charges[intent["latest_charge"]])
        if "payment_method" in expand and intent["payment_method"]:
            shown["payment_method"] = _shown(self.payment_methods[intent["payment_method"]])
        return shown

    def _open(self, reference: str) -> dict[str, Any]:
        session = self.sessions[reference]
        if session["status"] != "open":
            raise ValueError(f"Stripe lets nobody pay a {session['status']} Checkout Session")
        return session

    def _intent(self, session: dict[str, Any]) -> dict[str, Any]:
        if session["payment_intent"] is None:
            intent = self._new_intent(
                amount=session["amount_total"],
                currency=session["currency"],
                metadata=session["_intent_metadata"],
                setup_future_usage=session["_setup_future_usage"],
            )
            session["payment_intent"] = intent["id"]
        return self.intents[session["payment_intent"]]

    def _new_intent(self, **fields: Any) -> dict[str, Any]:
        intent = {
            "id": _new_id("pi"),
            "object": "payment_intent",
            "amount": 0,
            "amount_received": 0,
            "currency": "",
            "customer": None,
            "description": None,
            "payment_method": None,
            "setup_future_usage": None,
            "status": "requires_payment_method",
            "last_payment_error": None,
            "latest_charge": None,
            "metadata": {},
            **fields,
        }
        self.intents[intent["id"]] = intent
        return intent

    def _new_customer(self, email: str | None) -> str:
        customer = {"id": _new_id("cus"), "object": "customer", "email": email, "metadata": {}}
        self.customers[customer["id"]] = customer
        return customer["id"]

    def _new_method(self, number: str, expires: tuple[int, int], *, email: str | None) -> dict[str, Any]:
        brand, off_session = TEST_CARDS[number]
        method = {
            "id": _new_id("pm"),
            "object": "payment_method",
            "type": "card",
            "customer": None,
            "billing_details": {"email": email, "name": None, "phone": None, "address": None},
            "card": {
                "brand": brand,
                "last4": number[-4:],
                "exp_month": expires[0],
                "exp_year": expires[1],
                "country": "US",
                "funding": "credit",
                "fingerprint": hashlib.sha256(number.encode()).hexdigest()[:16],
            },
            "metadata": {},
            "_off_session": off_session,  # not shown: what charging it off-session does
            "_spent": False,  # not shown: used once without a Customer, or detached
        }
        self.payment_methods[method["id"]] = method
        return method

    def _new_charge(self, intent: dict[str, Any], method: dict[str, Any], *, status: str) -> dict[str, Any]:
        charge = {
            "id": _new_id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_refunded": 0,
            "refunded": False,
            "captured": status == "succeeded",
            "currency": intent["currency"],
            "customer": method["customer"],
            "payment_intent": intent["id"],
            "payment_method": method["id"],
            "status": status,
        }
        self.charges[charge["id"]] = charge
        return charge

    def _refuse_method(self, method_id: str, customer_id: str) -> Answer | None:
        """What Stripe checks of the payment_method and customer of a PaymentIntent it is to confirm."""
        if customer_id and customer_id not in self.customers:
            return _error(
                400, f"No such customer: '{customer_id}'", code="resource_missing", param="customer"
            )
        method = self.payment_methods.get(method_id)
        if method is None:
            return _error(
                400, f"No such PaymentMethod: '{method_id}'", code="resource_missing", param="payment_method"
            )
        if method["customer"] and not customer_id:
            return _error(
                400,
                f"The `payment_method` parameter supplied {method_id} belongs to the Customer "
                f"{method['customer']}. Please include the Customer in the `customer` parameter on the "
                "PaymentIntent.",
                param="payment_method",
            )
        if method["customer"] and method["customer"] != customer_id:
            return _error(
                400,
                f"The PaymentMethod {method_id} does not belong to the Customer you supplied {customer_id}. "
                "Please use this PaymentMethod with the Customer that it belongs to instead.",
                param="payment_method",
            )
        if method["_spent"]:
            return _error(400, NOT_REUSABLE, param="payment_method")
        return None

    def _charge(self, form: dict[str, str], decline: dict[str, str] | None, *, delay: float = 0) -> Answer:
        time.sleep(delay)
        method = self.payment_methods[form["payment_method"]]
        intent = self._new_intent(
            amount=int(form["amount"]),
            currency=form["currency"].lower(),
            customer=form.get("customer"),
            description=form.get("description"),
            payment_method=method["id"],
            metadata=_nested(form, "metadata"),
        )
        decline = decline or method["_off_session"]
        method["_spent"] = method["_spent"] or not method["customer"]
        if decline is None:
            charge = self._new_charge(intent, method, status="succeeded")
            intent.update(status="succeeded", amount_received=intent["amount"], latest_charge=charge["id"])
            return 200, _shown(intent)
        charge = self._new_charge(intent, method, status="failed")
        intent["latest_charge"] = charge["id"]
        intent["last_payment_error"] = {"type": "card_error", **decline, "payment_method": _shown(method)}
        error = {
            "type": "card_error",
            **decline,
            "charge": charge["id"],
            "payment_intent": _shown(intent),
            "payment_method": _shown(method),
        }
        return 402, {"error": error}

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


def gateway_for(fake: FakeStripe, **config: Any):
    """The project's StripeGateway talking to this fake (config: timeout, retries...)."""
    from payments.gateways.stripe import StripeGateway

    return StripeGateway(
        {
            "secret_key": fake.secret,
            "webhook_secret": fake.webhook_secret,
            "base_url": fake.base_url,
            **config,
        }
    )
