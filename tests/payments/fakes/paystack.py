"""A fake of Paystack's Transaction, Refund and Customer authorization API, and of its signed
webhooks.

It checks what Paystack checks: the `Authorization: Bearer <secret key>` header, integer
amounts in subunits, the reference alphabet, a reference used once by initialize and
charge_authorization alike (a repeat is refused with "Duplicate Transaction Reference" and
creates nothing), and refunds within what is left of a successful transaction. New
transactions are "abandoned" until `complete` or `decline`, as at Paystack; refunds are
"pending" until `process_refund`.

`complete` leaves a card authorization, reusable unless told otherwise, belonging to the
transaction's customer (by email). charge_authorization charges it only with that email, only
while it is reusable and not deactivated, and makes a transaction of its own, listed in
`charged`. A test makes the next charge decline (`decline_next_charge`), wait for the customer
(`pause_next_charge`), or be made and its answer lost: stalled past the client's timeout
(`stall_after_next_charge`) or replaced by a 5xx (`fail_after_next_charge`). fail_next and
stall_next lose a request before it is handled, as for any call.
"""

import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from tests.payments.fakes.base import FakeProvider, FakeRequest, route

REFERENCE = re.compile(r"^[A-Za-z0-9.=-]+$")


def _refused(message: str, status: int = 400) -> tuple[int, dict[str, Any]]:
    return status, {"status": False, "message": message}


def _is_subunits(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _public(saved: dict[str, Any]) -> dict[str, Any]:
    """An authorization as Paystack shows it on a transaction: without our bookkeeping."""
    return {k: v for k, v in saved.items() if k not in ("email", "customer_code", "active")}


@dataclass
class FakePaystack(FakeProvider):
    secret: str = "sk_test_fake0123456789"
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)  # by reference
    refunds: dict[int, dict[str, Any]] = field(default_factory=dict)  # by id
    # By authorization_code: the card's public fields, plus the email and customer_code of the
    # customer it belongs to and whether it is still active (not deactivated).
    authorizations: dict[str, dict[str, Any]] = field(default_factory=dict)
    charged: list[str] = field(default_factory=list)  # references charge_authorization made, in order

    def __post_init__(self):
        super().__post_init__()
        self._ids = itertools.count(4_099_260_516)
        self._state = threading.Lock()
        self._customers: dict[str, dict[str, Any]] = {}  # by lower-cased email
        self._next_charges: list[tuple[str, str]] = []  # (outcome, gateway_response) of the next charges
        self._lost_answers: list[int | str] = []  # after the next charges are made: a status or "stall"

    # --- the API ----------------------------------------------------------------------------

    def _new_transaction(self, request: FakeRequest, *, no_email: str):
        """What Paystack checks of a request that starts a transaction: the request's body (with
        the reference it will have as `_reference`), or the refusal to answer with."""
        if refusal := self._unauthorized(request):
            return refusal
        body = dict(request.json or {})
        if not body.get("email"):
            return _refused(no_email)
        if not _is_subunits(body.get("amount")):
            return _refused("Invalid Amount Sent")
        body["_reference"] = body.get("reference") or secrets.token_hex(8)
        if not REFERENCE.match(body["_reference"]):
            return _refused("Invalid character in transaction reference")
        return body

    @route("POST", r"^/transaction/initialize$")
    def initialize(self, request: FakeRequest):
        checked = self._new_transaction(request, no_email="Email is not allowed to be empty")
        if not isinstance(checked, dict):
            return checked  # refused
        body, reference = checked, checked["_reference"]
        with self._state:
            if reference in self.transactions:
                return _refused("Duplicate Transaction Reference")
            access_code = secrets.token_hex(8)
            self.transactions[reference] = {
                "id": next(self._ids),
                "domain": "test",
                "status": "abandoned",
                "reference": reference,
                "amount": body["amount"],
                "currency": body.get("currency", "NGN"),
                "gateway_response": "The transaction was not completed",
                "message": None,
                "paid_at": None,
                "metadata": body.get("metadata"),
                "customer": dict(self._customer(body["email"])),
                "authorization": {},  # the card, once the customer pays
                "callback_url": body.get("callback_url"),
                "access_code": access_code,
            }
        return 200, {
            "status": True,
            "message": "Authorization URL created",
            "data": {
                "authorization_url": f"https://checkout.paystack.com/{access_code}",
                "access_code": access_code,
                "reference": reference,
            },
        }

    @route("GET", r"^/transaction/verify/(?P<reference>[^/]+)$")
    def verify(self, request: FakeRequest, reference: str):
        if refusal := self._unauthorized(request):
            return refusal
        transaction = self.transactions.get(unquote(reference))
        if transaction is None:
            return _refused("Transaction reference not found", 404)
        data = {k: v for k, v in transaction.items() if k not in ("access_code", "callback_url")}
        return 200, {"status": True, "message": "Verification successful", "data": data}

    @route("POST", r"^/refund$")
    def create_refund(self, request: FakeRequest):
        if refusal := self._unauthorized(request):
            return refusal
        body = request.json or {}
        with self._state:
            transaction = self._find(str(body.get("transaction", "")))
            if transaction is None:
                return _refused("Transaction not found", 404)
            if transaction["status"] == "reversed":
                return _refused("Transaction has been fully reversed")
            if transaction["status"] != "success":
                return _refused("Cannot refund a transaction that is not successful")
            left = transaction["amount"] - self.refunded(transaction["reference"])
            amount = body.get("amount", left)
            if not _is_subunits(amount):
                return _refused("Amount must be an integer")
            if amount > left:
                return _refused("Refund amount cannot be more than the unrefunded transaction amount")
            refund = {
                "id": next(self._ids),
                "transaction": {"id": transaction["id"], "reference": transaction["reference"]},
                "amount": amount,
                "currency": transaction["currency"],
                "status": "pending",
                "customer_note": body.get("customer_note"),
                "merchant_note": body.get("merchant_note"),
            }
            self.refunds[refund["id"]] = refund
            if amount == left:
                transaction["status"] = "reversed"
        return 200, {"status": True, "message": "Refund has been queued for processing", "data": refund}

    @route("POST", r"^/transaction/charge_authorization$")
    def charge_authorization(self, request: FakeRequest):
        checked = self._new_transaction(request, no_email="Email address is required to create charge")
        if not isinstance(checked, dict):
            return checked  # refused
        body, reference = checked, checked["_reference"]
        with self._state:
            if reference in self.transactions:
                return _refused("Duplicate Transaction Reference")
            saved = self.authorizations.get(str(body.get("authorization_code") or ""))
            if saved is None:
                return _refused("Invalid Authorization Code")
            if not saved["active"] or saved["email"] != str(body["email"]).lower():
                return _refused(
                    "Email does not match Authorization code. Authorization may be inactive or "
                    "belong to a different email. Please confirm."
                )
            if not saved["reusable"]:
                # Paystack charges only reusable authorizations; its wording here is not documented.
                return _refused("Authorization is not reusable")
            outcome, reason = self._next_charges.pop(0) if self._next_charges else ("approve", "Approved")
            lost = self._lost_answers.pop(0) if self._lost_answers else None
            status = {"approve": "success", "decline": "failed", "pause": "ongoing"}[outcome]
            transaction = {
                "id": next(self._ids),
                "domain": "test",
                "status": status,
                "reference": reference,
                "amount": body["amount"],
                "currency": body.get("currency", "NGN"),
                "gateway_response": reason,
                "message": None,
                "paid_at": "now" if status == "success" else None,
                "channel": "card",
                "metadata": body.get("metadata"),
                "customer": dict(self._customer(saved["email"])),
                "authorization": _public(saved),
                "access_code": secrets.token_hex(8),
            }
            self.transactions[reference] = transaction
            self.charged.append(reference)
        if outcome == "pause":  # the bank wants the customer after all: no transaction in the answer
            answer = {
                "status": True,
                "message": "Please, redirect your customer to the authorization url provided",
                "data": {
                    "authorization_url": f"https://checkout.paystack.com/resume/{transaction['access_code']}",
                    "reference": reference,
                    "access_code": transaction["access_code"],
                    "paused": True,
                },
            }
        else:
            data = {k: v for k, v in transaction.items() if k != "access_code"}
            answer = {"status": True, "message": "Charge attempted", "data": data}
        if lost == "stall":  # made, and the answer comes after the client has given up
            time.sleep(self.stall_seconds)
        elif lost is not None:
            return int(lost), {"status": False, "message": "injected failure after the charge was made"}
        return 200, answer

    @route("POST", r"^/customer/authorization/deactivate$")
    def deactivate_authorization(self, request: FakeRequest):
        if refusal := self._unauthorized(request):
            return refusal
        code = str((request.json or {}).get("authorization_code") or "")
        with self._state:
            saved = self.authorizations.get(code)
            if saved is None:
                return _refused("Authorization code not found.", 404)
            saved["active"] = False  # a second deactivation answers the same
        return 200, {"status": True, "message": "Authorization has been deactivated"}

    # --- helpers for tests ------------------------------------------------------------------

    def complete(
        self, reference: str, *, reusable: bool = True, last4: str = "4081", brand: str = "visa"
    ) -> str:
        """The customer pays by card: the transaction succeeds and leaves the card's authorization
        (Paystack's test card 408408...4081 by default). Returns its authorization_code."""
        transaction = self.transactions[reference]
        code = f"AUTH_{secrets.token_hex(5)}"
        customer = transaction["customer"]
        self.authorizations[code] = {
            "authorization_code": code,
            "bin": "408408",
            "last4": last4,
            "exp_month": "12",
            "exp_year": "2030",
            "channel": "card",
            "card_type": f"{brand} DEBIT",
            "bank": "TEST BANK",
            "country_code": "NG",
            "brand": brand,
            "reusable": reusable,
            "signature": f"SIG_{secrets.token_hex(10)}",
            "account_name": None,
            "email": customer["email"],
            "customer_code": customer["customer_code"],
            "active": True,
        }
        transaction.update(
            status="success",
            gateway_response="Successful",
            paid_at="now",
            authorization=_public(self.authorizations[code]),
        )
        return code

    def decline_next_charge(self, reason: str = "Insufficient Funds") -> None:
        """The next charge_authorization is declined by the card's bank, in these words."""
        self._next_charges.append(("decline", reason))

    def pause_next_charge(self) -> None:
        """The next charge_authorization needs the customer (the bank asks for 2FA): it is paused."""
        self._next_charges.append(("pause", "Transaction paused for authorization"))

    def stall_after_next_charge(self) -> None:
        """The next charge_authorization is made, and its answer stalls past the client's timeout."""
        self._lost_answers.append("stall")

    def fail_after_next_charge(self, status: int = 502) -> None:
        """The next charge_authorization is made, and its answer is this 5xx instead."""
        self._lost_answers.append(status)

    def decline(self, reference: str, reason: str = "Declined") -> None:
        """The customer's bank declines: the transaction fails with the bank's words."""
        self.transactions[reference].update(status="failed", gateway_response=reason)

    def process_refund(self, refund_id: int) -> None:
        self.refunds[refund_id]["status"] = "processed"

    def refunded(self, reference: str) -> int:
        """Subunits refunded, or being refunded, on a transaction."""
        return sum(
            r["amount"]
            for r in self.refunds.values()
            if r["transaction"]["reference"] == reference and r["status"] != "failed"
        )

    def signed_webhook(
        self, event: str, reference: str = "", *, refund_id: int | None = None, secret: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """(headers, raw body) of a webhook as Paystack signs it: hex HMAC-SHA512 of the body."""
        if refund_id is None:
            data = {k: v for k, v in self.transactions[reference].items() if k != "access_code"}
        else:
            refund = self.refunds[refund_id]
            data = {
                "id": refund["id"],
                "status": refund["status"],
                "transaction_reference": refund["transaction"]["reference"],
                "amount": refund["amount"],
                "currency": refund["currency"],
            }
        body = json.dumps({"event": event, "data": data}).encode()
        signature = hmac.new((secret or self.secret).encode(), body, hashlib.sha512).hexdigest()
        return {"X-Paystack-Signature": signature, "Content-Type": "application/json"}, body

    def _customer(self, email: str) -> dict[str, Any]:
        """Paystack's customer for an email, created on its first transaction."""
        key = email.lower()
        if key not in self._customers:
            self._customers[key] = {
                "id": next(self._ids),
                "email": key,
                "customer_code": f"CUS_{secrets.token_hex(7)}",
            }
        return self._customers[key]

    def _unauthorized(self, request: FakeRequest) -> tuple[int, dict[str, Any]] | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return _refused("Format is Authorization Bearer [secret key]", 401)
        if not hmac.compare_digest(header.removeprefix("Bearer "), self.secret):
            return _refused("Invalid key", 401)
        return None

    def _find(self, id_or_reference: str) -> dict[str, Any] | None:
        if id_or_reference in self.transactions:
            return self.transactions[id_or_reference]
        return next((t for t in self.transactions.values() if str(t["id"]) == id_or_reference), None)
