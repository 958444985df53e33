"""A fake of Paystack's Transaction and Refund API, and of its signed webhooks.

It checks what Paystack checks: the `Authorization: Bearer <secret key>` header, integer
amounts in subunits, the reference alphabet, a reference used once (a repeat is refused with
"Duplicate Transaction Reference" and creates nothing), and refunds within what is left of
a successful transaction. New transactions are "abandoned" until `complete` or `decline`,
as at Paystack; refunds are "pending" until `process_refund`.
"""

import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from tests.payments.fakes.base import FakeProvider, FakeRequest, route

REFERENCE = re.compile(r"^[A-Za-z0-9.=-]+$")


def _refused(message: str, status: int = 400) -> tuple[int, dict[str, Any]]:
    return status, {"status": False, "message": message}


def _is_subunits(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass
class FakePaystack(FakeProvider):
    secret: str = "sk_test_fake0123456789"
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)  # by reference
    refunds: dict[int, dict[str, Any]] = field(default_factory=dict)  # by id

    def __post_init__(self):
        super().__post_init__()
        self._ids = itertools.count(4_099_260_516)
        self._state = threading.Lock()

    # --- the API ----------------------------------------------------------------------------

    @route("POST", r"^/transaction/initialize$")
    def initialize(self, request: FakeRequest):
        if refusal := self._unauthorized(request):
            return refusal
        body = request.json or {}
        if not body.get("email"):
            return _refused("Email is not allowed to be empty")
        if not _is_subunits(body.get("amount")):
            return _refused("Invalid Amount Sent")
        reference = body.get("reference") or secrets.token_hex(8)
        if not REFERENCE.match(reference):
            return _refused("Invalid character in transaction reference")
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
                "customer": {"email": body["email"]},
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

    # --- helpers for tests ------------------------------------------------------------------

    def complete(self, reference: str) -> None:
        """The customer pays: the transaction succeeds."""
        self.transactions[reference].update(status="success", gateway_response="Successful", paid_at="now")

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
