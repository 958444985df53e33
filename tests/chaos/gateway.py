"""The sandbox gateway's side of a chaos run: the customer pays, and the provider's signed
webhooks reach the site over HTTP twice each, some late, some out of order, some before the
customer has read the checkout's answer.

The provider's side writes the sandbox's own table as its Pay button does (payments/views.py)
and signs each body as the sandbox does (payments.gateways.sandbox: `webhook_body`, `sign`).
"""

import heapq
import itertools
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable

import requests
from django.db import InterfaceError, OperationalError, connection, transaction

from payments.gateways.sandbox import SIGNATURE_HEADER, SandboxGateway, method_save, sign
from payments.models import SandboxCharge
from payments.registry import gateway_for

WEBHOOK_PATH = "/api/payments/webhook/sandbox"
SECOND_COPY_WITHIN = 4.0  # seconds: the duplicate of a webhook comes up to this much later
PATIENCE = 120.0  # seconds a provider keeps retrying a webhook the site does not take


def with_reconnect(work: Callable, *, patience: float = 60.0):
    """Run `work()` on this thread's Django connection, reconnecting when a fault killed it."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return work()
        except (OperationalError, InterfaceError):
            connection.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _pay(reference: str) -> SandboxCharge:
    """What the sandbox page's Pay does: the charge succeeds, a save_method charge keeps its card."""
    with transaction.atomic():
        charge = SandboxCharge.objects.select_for_update().get(reference=reference)
        if charge.status == SandboxCharge.Status.PENDING:
            charge.status = SandboxCharge.Status.SUCCEEDED
            if charge.save_method:
                charge.method = method_save(charge)
            charge.save(update_fields=["status", "method", "updated_at"])
    return charge


class Gateway:
    """Pays charges and posts their signed webhooks from a few sender threads, each twice."""

    def __init__(self, base_url: str, *, senders: int = 3, seed: int = 18):
        self.url = base_url.rstrip("/") + WEBHOOK_PATH
        self.sandbox = gateway_for("sandbox")
        self.secret = self.sandbox.secret
        self.random = random.Random(seed)
        self.answers: Counter = Counter()  # HTTP status (or exception name) -> count
        self.event_ids: set[str] = set()  # of the webhooks the site took
        self._stats = threading.Lock()
        self._due: list[tuple[float, int, bytes]] = []
        self._order = itertools.count()
        self._ready = threading.Condition()
        self._closing = False
        self._threads = [
            threading.Thread(target=self._send_loop, name=f"gateway-{n}", daemon=True) for n in range(senders)
        ]

    def __enter__(self) -> "Gateway":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        """Send everything scheduled, then stop the senders."""
        with self._ready:
            self._closing = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(timeout=PATIENCE + 30)

    # --- paying ---------------------------------------------------------------------------
    def pay(self, reference: str, *, stale: bool = False) -> None:
        """The customer pays at the gateway; its webhook follows twice, the copy up to a few
        seconds later. `stale`: the charge's earlier "pending" event arrives after the success."""
        charge = with_reconnect(lambda: _pay(reference))
        now = time.monotonic()
        success = self.sandbox.webhook_body(charge)
        first = now + self.random.uniform(0, 0.3)
        self._schedule(first, success)
        self._schedule(now + self.random.uniform(0.2, SECOND_COPY_WITHIN), success)
        if stale:
            pending = self.sandbox.webhook_body(
                SandboxCharge(
                    reference=charge.reference,
                    status=SandboxCharge.Status.PENDING,
                    amount=charge.amount,
                    currency=charge.currency,
                )
            )
            for _ in range(2):
                self._schedule(first + self.random.uniform(0.1, 2.0), pending)

    def pays_during_checkout(self, monkeypatch, early: dict[str, str]) -> None:
        """For the customers in `early` (e-mail -> "before" or "concurrent"), the payment succeeds
        as soon as the gateway creates the charge, inside the checkout request: its webhooks are
        posted before that request answers ("before": both copies taken by the site already) or
        while it goes on ("concurrent")."""
        create_checkout = SandboxGateway.create_checkout

        def paying_at_once(gateway, request):
            session = create_checkout(gateway, request)
            mode = early.get(request.customer_email)
            if mode:
                charge = with_reconnect(lambda: _pay(session.reference))
                body = self.sandbox.webhook_body(charge)
                if mode == "before":
                    with requests.Session() as http:
                        for _ in range(2):
                            self._post(http, body)
                else:
                    for _ in range(2):
                        self._schedule(time.monotonic(), body)
            return session

        monkeypatch.setattr(SandboxGateway, "create_checkout", paying_at_once)

    # --- sending --------------------------------------------------------------------------
    def _schedule(self, at: float, body: bytes) -> None:
        with self._ready:
            heapq.heappush(self._due, (at, next(self._order), body))
            self._ready.notify()

    def _next(self) -> bytes | None:
        with self._ready:
            while True:
                if self._due and self._due[0][0] <= time.monotonic():
                    return heapq.heappop(self._due)[2]
                if self._closing and not self._due:
                    return None
                timeout = self._due[0][0] - time.monotonic() if self._due else 0.5
                self._ready.wait(max(0.01, timeout))

    def _send_loop(self) -> None:
        with requests.Session() as http:
            while (body := self._next()) is not None:
                self._post(http, body)

    def _post(self, http: requests.Session, body: bytes) -> None:
        """POST one webhook as a provider does: again, after a pause, until the site takes it."""
        deadline = time.monotonic() + PATIENCE
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, self.secret)}
        while True:
            try:
                status = http.post(self.url, data=body, headers=headers, timeout=30).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            with self._stats:
                self.answers[status] += 1
                if status == 200:
                    self.event_ids.add(json.loads(body)["id"])
                    return
            if (isinstance(status, int) and status < 500) or time.monotonic() > deadline:
                with self._stats:
                    self.answers["given up"] += 1
                return
            time.sleep(0.5)
