"""The customers of a chaos run and what they buy, through the API over HTTP, as a real client.

A mix of flows (orders, bookings, subscriptions), each a customer of its own with an API token:
the catalogue, halls, plan and children are made directly (they are not what is tested), the
buying goes through the live server like any client's, retried as a careful client retries
(same Idempotency-Key; after a 5xx, a dropped connection or a 409 request_in_progress).
"""

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import requests
from django.db import connection
from rest_framework.authtoken.models import Token

from accounts.models import User
from subscriptions.models import Child
from tests.bookings.conftest import local
from tests.factories import ResourceFactory
from tests.orders.factories import VariantFactory
from tests.subscriptions.factories import PlanFactory, ToyFactory, born_months_ago

STOCK = 100_000
PATIENCE = 150.0  # seconds a client keeps retrying one request (an Idempotency-Key lock lasts 60)
HOURS = range(9, 20)  # one-hour bookings from 09:00 to 20:00, halls open 09:00-21:00
FIRST_DAY = 3  # days ahead: beyond the 24-hour reminder, so no reminder joins the messages


@dataclass
class Flow:
    """One customer buying one thing and paying for it."""

    n: int
    kind: str  # order, booking, subscription
    customer_id: int
    email: str
    token: str
    early: str = ""  # "before" / "concurrent": the webhook races the checkout's answer (Gateway)
    stale: bool = False  # a stale "pending" webhook arrives after the success
    item: str = ""  # order number, booking id or subscription id
    reference: str = ""  # the payment's reference at the sandbox
    error: str = ""
    retries: int = 0


MIX = ("order",) * 5 + ("booking",) * 3 + ("subscription",) * 2  # per ten flows


def kind_of(n: int) -> str:
    return MIX[n % len(MIX)]


class ClientError(Exception):
    """The API answered what a correct request never gets (a 4xx other than a retryable 409)."""


class Api:
    """A customer's HTTP client."""

    def __init__(self, base_url: str, flow: Flow, http: requests.Session):
        self.base, self.flow, self.http = base_url.rstrip("/"), flow, http
        self.headers = {"Authorization": f"Token {flow.token}"}

    def post(self, path: str, body: dict, *, key: str | None = None) -> dict:
        headers = self.headers | ({"Idempotency-Key": key} if key else {})
        deadline = time.monotonic() + PATIENCE
        pause = 0.3
        while True:
            try:
                response = self.http.post(self.base + path, json=body, headers=headers, timeout=30)
            except requests.RequestException as exc:
                answer = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code in (200, 201):
                    return response.json()
                answer = f"{response.status_code} {response.text[:300]}"
                in_progress = response.status_code == 409 and "request_in_progress" in response.text
                if response.status_code < 500 and not in_progress:
                    raise ClientError(f"POST {path}: {answer}")
            if time.monotonic() > deadline:
                raise ClientError(f"POST {path}: still {answer} after {PATIENCE:.0f}s")
            self.flow.retries += 1
            time.sleep(pause)
            pause = min(pause * 2, 3.0)


class Shop:
    """What is for sale, who buys it, and the buying itself (several customers at a time)."""

    def __init__(self, flows: int, *, early_every: int = 7, stale_every: int = 9):
        self.variants = [VariantFactory(stock_on_hand=STOCK) for _ in range(20)]
        self.plan = PlanFactory(toys_per_box=1, age_min_months=12, age_max_months=120)
        for _ in range(10):
            ToyFactory(stock_on_hand=STOCK)
        bookings = sum(kind_of(n) == "booking" for n in range(flows))
        halls_needed = -(-bookings // (len(HOURS) * 3))  # three days of slots per hall
        self.halls = [ResourceFactory() for _ in range(max(1, halls_needed))]
        self.flows = self._customers(flows, early_every, stale_every)
        self.children = self._children()
        self.slots = {f.n: nth for nth, f in enumerate(self.by_kind("booking"))}  # flow -> its slot
        self.done = 0
        self._lock = threading.Lock()

    def _customers(self, count: int, early_every: int, stale_every: int) -> list[Flow]:
        tag = secrets.token_hex(3)
        users = User.objects.bulk_create(
            User(email=f"chaos-{tag}-{n}@example.com", password="!") for n in range(count)
        )
        tokens = Token.objects.bulk_create(Token(user=u, key=secrets.token_hex(20)) for u in users)
        flows = []
        for n, (user, token) in enumerate(zip(users, tokens, strict=True)):
            early = ""
            if n % early_every == 3:
                early = "before" if (n // early_every) % 2 else "concurrent"
            flows.append(
                Flow(
                    n=n,
                    kind=kind_of(n),
                    customer_id=user.pk,
                    email=user.email,
                    token=token.key,
                    early=early,
                    stale=not early and n % stale_every == 4,
                )
            )
        return flows

    def _children(self) -> dict[int, int]:
        """Flow number -> the child subscribed in it (a four-year-old who likes STEM toys)."""
        wanted = [f for f in self.flows if f.kind == "subscription"]
        children = Child.objects.bulk_create(
            Child(
                customer_id=f.customer_id,
                name=f"Child {f.n}",
                birth_date=born_months_ago(48),
                interests=["stem"],
            )
            for f in wanted
        )
        return {f.n: child.pk for f, child in zip(wanted, children, strict=True)}

    def early(self) -> dict[str, str]:
        return {f.email: f.early for f in self.flows if f.early}

    def progress(self) -> float:
        return self.done / len(self.flows)

    def by_kind(self, kind: str) -> list[Flow]:
        return [f for f in self.flows if f.kind == kind]

    # --- buying ---------------------------------------------------------------------------
    def run(
        self, base_url: str, gateway, *, customers: int, rate: float, hold: Callable[[], bool] = lambda: False
    ) -> None:
        """Buy every flow, `customers` at a time, starting at most `rate` flows a second; each pays
        at the gateway once it is checked out. No flow starts while `hold()` says the site is too
        far behind; the steady rate resumes afterwards, without a burst to catch up."""
        todo = iter(self.flows)
        take, pace = threading.Lock(), threading.Lock()
        next_start = time.monotonic()

        def wait_for_a_slot() -> None:
            nonlocal next_start
            while hold():
                time.sleep(0.5)
            with pace:
                at = next_start = max(next_start, time.monotonic())
                next_start += 1 / rate
            time.sleep(max(0.0, at - time.monotonic()))

        def customer() -> None:
            try:
                with requests.Session() as http:
                    while True:
                        with take:
                            flow = next(todo, None)
                        if flow is None:
                            return
                        wait_for_a_slot()
                        self._buy(Api(base_url, flow, http), flow, gateway)
                        with self._lock:
                            self.done += 1
            finally:
                connection.close()

        threads = [threading.Thread(target=customer, name=f"customer-{n}") for n in range(customers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _buy(self, api: Api, flow: Flow, gateway) -> None:
        try:
            url = getattr(self, f"_checkout_{flow.kind}")(api, flow)
            flow.reference = url.rstrip("/").rsplit("/", 1)[-1]
            if not flow.early:  # an early one was paid while the gateway made its charge
                gateway.pay(flow.reference, stale=flow.stale)
        except Exception as exc:  # noqa: BLE001 - every flow is reported, none stops the run
            flow.error = f"{type(exc).__name__}: {exc}"

    def _checkout_order(self, api: Api, flow: Flow) -> str:
        variant = self.variants[flow.n % len(self.variants)]
        api.post("/api/cart/items", {"variant_id": variant.pk, "quantity": 1})
        body = api.post("/api/checkout", {}, key=f"chaos-checkout-{flow.n}")
        flow.item = body["number"]
        return body["checkout_url"]

    def _checkout_booking(self, api: Api, flow: Flow) -> str:
        nth = self.slots[flow.n]
        hall = self.halls[nth % len(self.halls)]
        slot = nth // len(self.halls)
        start = local(FIRST_DAY + slot // len(HOURS), HOURS[slot % len(HOURS)])
        body = api.post(
            "/api/bookings",
            {"hall_id": hall.pk, "start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()},
            key=f"chaos-booking-{flow.n}",
        )
        flow.item = body["id"]
        return body["payment"]["checkout_url"]

    def _checkout_subscription(self, api: Api, flow: Flow) -> str:
        subscription = api.post(
            "/api/subscriptions",
            {"child_id": self.children[flow.n], "plan_id": self.plan.pk},
            key=f"chaos-subscribe-{flow.n}",
        )
        flow.item = subscription["id"]
        payment = api.post(
            "/api/payments/batch", {"subscription_ids": [flow.item]}, key=f"chaos-pay-{flow.n}"
        )
        return payment["checkout_url"]
