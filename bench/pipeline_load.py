"""The pipeline benchmark's load generators (bench/pipeline.py): client processes that buy
through the API, and client processes that send the sandbox's signed webhooks.

Each runs in a spawned process (its own interpreter and GIL; no Django): it reports ready,
waits for the start signal, does its share, and puts its results on a queue.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import multiprocessing
import queue
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

SOCKET_TIMEOUT = 35.0  # longer than gunicorn's --timeout 30: a stuck worker is killed first


class ClientError(RuntimeError):
    """The clients could not do their share (did not start, or did not finish in time)."""


# --- Buying through the API ------------------------------------------------------------------
def _post(port: int, token: str, path: str, body: dict, key: str | None = None) -> tuple[int, dict]:
    headers = {
        "Authorization": f"Token {token}",
        "Content-Type": "application/json",
        "Idempotency-Key": key or uuid.uuid4().hex,  # some endpoints require one: a fresh one each
    }
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=SOCKET_TIMEOUT)
    try:
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        payload = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(payload or b"{}")
    except ValueError:
        return response.status, {"body": payload[:300].decode(errors="replace")}


def _created(step: str, status: int, answer: dict) -> dict:
    if status != 201:
        raise ClientError(f"{step}: {status} {json.dumps(answer)[:400]}")
    return answer


def buy(port: int, token: str, kind: str, request: dict) -> tuple[str, str]:
    """One customer's purchase through the API, as a shop's front end makes it; (key, checkout URL).

    order: POST /api/cart/items, POST /api/checkout. booking: POST /api/bookings (the deposit's
    payment opened with it). subscription: POST /api/children, POST /api/subscriptions, POST
    /api/payments/batch (the first invoice's payment)."""
    key = uuid.uuid4().hex
    if kind == "order":
        _created("cart", *_post(port, token, "/api/cart/items", request))
        order = _created("checkout", *_post(port, token, "/api/checkout", {}, key))
        return order["number"], order["checkout_url"]
    if kind == "booking":
        booking = _created("booking", *_post(port, token, "/api/bookings", request, key))
        return booking["id"], booking["payment"]["checkout_url"]
    child = _created("child", *_post(port, token, "/api/children", request["child"]))
    wanted = {"child_id": child["id"], "plan_id": request["plan_id"]}
    subscription = _created("subscription", *_post(port, token, "/api/subscriptions", wanted, key))
    batch = {"subscription_ids": [subscription["id"]]}
    payment = _created("batch", *_post(port, token, "/api/payments/batch", batch, f"{key}-pay"))
    return subscription["id"], payment["checkout_url"]


def buyer_main(port: int, share: list[tuple], start: Any, results: Any, index: int) -> None:
    """Buy for each (flow index, DRF token, kind, request); report (index, [(flow, key, checkout
    URL, error)], start, end)."""
    results.put(("ready", index))
    start.wait()
    done, t0 = [], time.time()
    for flow, token, kind, request in share:
        try:
            key, url = buy(port, token, kind, request)
            done.append((flow, key, url, ""))
        except (OSError, http.client.HTTPException, ClientError, KeyError) as exc:
            done.append((flow, "", "", f"{type(exc).__name__}: {exc}"))
    results.put(("done", index, done, t0, time.time()))


# --- Sending webhooks ------------------------------------------------------------------------
def _send(port: int, raw: bytes) -> str:
    """One request on a new connection (sync workers close it after each answer); its status."""
    from bench.webhooks import read_response

    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(raw)
        status, _ = read_response(sock)
    return str(status)


def sender_main(port: int, share: list[tuple], start: Any, results: Any, index: int, start_at: Any) -> None:
    """Send each (flow index, raw request, offset seconds) at start_at + offset, or at once if
    behind (open loop: a slow answer delays this client's next send, never the schedule);
    report (index, [(flow, sent at epoch seconds, status)])."""
    results.put(("ready", index))
    start.wait()
    begin = start_at.value
    sent = []
    for flow, raw, offset in share:
        time.sleep(max(0.0, begin + offset - time.time()))
        at = time.time()
        try:
            status = _send(port, raw)
        except (OSError, ValueError) as exc:
            status = type(exc).__name__
        sent.append((flow, at, status))
    results.put(("done", index, sent))


# --- Running clients -------------------------------------------------------------------------
def run_clients(
    target: Callable,
    shares: list[list[tuple]],
    *,
    port: int,
    timeout: float,
    check: Callable[[], None],
    lead: float = 0.0,
) -> list[tuple]:
    """Start one spawned process per share, wait until all are ready, start them together,
    and collect their "done" reports. `check` runs every half second (a dead server raises);
    `lead` > 0: the senders' schedule starts that many seconds after the start signal."""
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    start_at = ctx.Value("d", 0.0)
    extra = (start_at,) if target is sender_main else ()
    procs = [
        ctx.Process(target=target, args=(port, share, start, results, i, *extra), daemon=True)
        for i, share in enumerate(shares)
    ]
    try:
        for proc in procs:
            proc.start()
        for _ in procs:
            try:
                results.get(timeout=60)
            except queue.Empty:
                raise ClientError("the clients did not start within 60 s") from None
        start_at.value = time.time() + lead
        start.set()
        done, deadline = [], time.monotonic() + timeout
        while len(done) < len(procs):
            check()
            if time.monotonic() > deadline:
                raise ClientError(f"the clients did not finish within {timeout:.0f} s")
            with contextlib.suppress(queue.Empty):
                done.append(results.get(timeout=0.5))
        return done
    finally:
        for proc in procs:
            if proc.pid is None:
                continue
            if proc.is_alive():
                proc.terminate()
            proc.join(5)
