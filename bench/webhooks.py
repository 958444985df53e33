"""Webhook ingestion: signed webhooks/second accepted under gunicorn, against a bare Django view.

    .venv/bin/python bench/webhooks.py --requests 5000

Reported as a ratio: webhooks accepted per second by POST /api/payments/webhook/sandbox
divided by the requests per second of a bare JSON view (/bench/bare, bench/urls.py), both
served by the same gunicorn, with the same settings, in the same invocation.

What runs: config.settings.bench (the test services on localhost, the database `fulfil_bench`,
created and migrated if missing, production's connection reuse; ROOT_URLCONF bench.urls,
i.e. the project's URLs plus /bench/bare) and production's web command from the Procfile,
`python -m gunicorn config.wsgi --workers 4 --timeout 30 --access-logfile -` (the default
sync workers; --workers, --worker-class and --threads change it for both measurements; the
access log goes to a temporary file), bound to 127.0.0.1 on a free port, in its own process
group. It is ready once
/healthz answers 200 and all its workers have booted, and it is always stopped at the end
(SIGTERM to its process group, then SIGKILL), on success, error, timeout, Ctrl-C or SIGTERM.

One sandbox payment with a checkout (services.payment_create + payment_start_checkout, i.e.
the sandbox's create_checkout + payment_checkout_started) is made once and reused, so that
every webhook finds its payment, as real ones do. No Celery worker runs.

The requests are built before the clock starts: every webhook has a unique event id (a
repeated one would be a duplicate) and its X-Sandbox-Signature, the hex HMAC-SHA256 of the
raw body with SandboxGateway.secret under these settings (payments.gateways.sandbox.sign).
The bare requests are the same bytes with another path. Each measurement sends N requests
from --clients processes (raw sockets: send the prepared bytes, read the status line,
headers and Content-Length body, reconnect when the server closes, which sync workers do
after every response); the clock runs from the start signal to the last answer. Only 2xx
answers count as accepted; anything else is counted by status. After one warm-up round of
each, the two kinds alternate --rounds times (bare, webhooks, bare, webhooks) and each
figure is the total accepted over the total time of its kind.

CPU time per request is read from /proc around each measurement: gunicorn's process group,
every `postgres` process and RabbitMQ's beam.smp (both shared with whatever else runs on
the machine; a process that exits meanwhile is left out), the clients' own getrusage, and
the machine's busy share. The load generator is not the bottleneck if the clients' share
is small next to gunicorn's and more clients do not raise the bare rate; on a small machine
it still shares the cores with the server, which depresses the bare figure the most.

Side effects: every accepted webhook stores a WebhookEvent row and publishes a
payments.webhook_process task to the `payments` queue, which nobody consumes. The bench
waits until `payments` has no consumer (another worker on the shared broker, e.g. pytest's,
would run our tasks against its own database), purges it before and after, checks that the
rows and messages match the accepted count, and deletes its WebhookEvent rows at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import queue
import resource
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# The gunicorn subprocess and this process must agree (database, signing secret, bench.urls).
SETTINGS = "config.settings.bench"
os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
os.environ["DJANGO_READ_DOT_ENV"] = "0"

from bench.celery_baseline import hard_deadline  # noqa: E402
from bench.process import BackgroundProcess, BenchError  # noqa: E402

WEBHOOK_PATH = "/api/payments/webhook/sandbox"
BARE_PATH = "/bench/bare"
EVENT_PREFIX = "evt_bench_"
BENCH_USER = "bench-webhooks@bench.invalid"
PAYMENTS_QUEUE = "payments"
SOCKET_TIMEOUT = 35.0  # longer than gunicorn's --timeout 30: a stuck worker is killed first
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[webhooks] {message}", file=sys.stderr, flush=True)


# --- The load generator: client processes --------------------------------------------------
def read_response(sock: socket.socket) -> tuple[int, bool]:
    """Read one HTTP/1.1 response; (status, whether the server closes the connection)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before a complete response")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, close = None, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    if length is None:  # no length: the body ends with the connection
        close = True
        while chunk := sock.recv(65536):
            pass
    else:
        received = len(body)
        while received < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed inside a response body")
            received += len(chunk)
    return status, close


def client_main(port: int, requests: list[bytes], start: Any, results: Any, index: int) -> None:
    """Send `requests` one after the other; report (index, statuses, t0, t1, cpu seconds)."""
    statuses: Counter[str] = Counter()
    sock: socket.socket | None = None
    reused = False
    results.put(("ready", index))
    start.wait()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    for raw in requests:
        for attempt in (1, 2):
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    reused = False
                sock.sendall(raw)
                status, close = read_response(sock)
            except OSError as exc:
                if sock is not None:
                    sock.close()
                    sock = None
                # A keep-alive connection the server closed while idle: once more on a new one.
                if reused and attempt == 1 and isinstance(exc, ConnectionError):
                    continue
                statuses[type(exc).__name__] += 1
                break
            statuses[str(status)] += 1
            if close:
                sock.close()
                sock = None
            else:
                reused = True
            break
    t1 = time.monotonic()
    if sock is not None:
        sock.close()
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime
    results.put(("done", index, dict(statuses), t0, t1, cpu))


# --- CPU accounting from /proc ----------------------------------------------------------------
GROUPS = ("gunicorn", "postgres", "rabbitmq")


def cpu_sample(gunicorn_pgid: int) -> dict[Any, Any]:
    """CPU seconds so far of each process of gunicorn's group, postgres and RabbitMQ; machine jiffies."""
    sample: dict[Any, Any] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        group = (
            "gunicorn" if int(fields[2]) == gunicorn_pgid
            else "postgres" if comm == "postgres"
            else "rabbitmq" if comm == "beam.smp"
            else None
        )  # fmt: skip
        if group:
            sample[int(pid)] = (group, (int(fields[11]) + int(fields[12])) / CLK_TCK)  # utime + stime
    jiffies = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    sample["machine_total"] = sum(jiffies[:8])  # user..steal (guest is counted within user)
    sample["machine_idle"] = jiffies[3] + jiffies[4]  # idle + iowait
    return sample


def cpu_used(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds per group between two samples (a process that exited meanwhile is left out)."""
    used = dict.fromkeys(GROUPS, 0.0)
    for pid, value in after.items():
        if isinstance(pid, int):  # a process: (group, seconds)
            group, seconds = value
            used[group] += seconds - before.get(pid, (group, 0.0))[1]
    idle = after["machine_idle"] - before["machine_idle"]
    used["machine_busy"] = 1 - idle / max(1, after["machine_total"] - before["machine_total"])
    return used


# --- gunicorn -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn(BackgroundProcess):
    """`python -m gunicorn config.wsgi` in its own process group, logging to a temporary file."""

    name = "gunicorn"

    def __init__(self, *, workers: int, worker_class: str, threads: int):
        self.port = free_port()
        self.workers = workers
        command = [
            sys.executable, "-m", "gunicorn", "config.wsgi",
            "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers),
            "--worker-class", worker_class, "--threads", str(threads),
            "--timeout", "30", "--graceful-timeout", "10", "--access-logfile", "-",
        ]  # fmt: skip
        super().__init__(command, {"DJANGO_SETTINGS_MODULE": SETTINGS, "DJANGO_READ_DOT_ENV": "0"})

    def booted_workers(self) -> int:
        count = 0
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == self.proc.pid:  # its children
                    count += 1
        return count

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                try:
                    conn.request("GET", "/healthz")
                    if conn.getresponse().status == 200 and self.booted_workers() >= self.workers:
                        return
                finally:
                    conn.close()
            time.sleep(0.2)
        raise BenchError(f"gunicorn did not answer /healthz within {timeout:.0f} s\n{self.log_tail()}")


# --- The application side: payment, webhooks, queue ------------------------------------------
def bench_payment() -> Any:
    """The bench's sandbox payment with an open checkout (made once, then reused)."""
    from django.contrib.auth import get_user_model

    from payments import services
    from payments.models import Payment
    from payments.purposes import Payable

    User = get_user_model()
    user = User.objects.filter(email=BENCH_USER).first() or User.objects.create_user(BENCH_USER)
    payment = Payment.objects.filter(customer=user, gateway="sandbox").exclude(gateway_reference="").first()
    if payment is None:
        # Below payments' policy: the bench pays for no real item (the purpose is not registered).
        item = Payable(item_id="bench-webhooks", customer_id=user.pk, amount=Decimal("25.00"), currency="USD")
        payment = services.payment_create(
            customer_id=user.pk, purpose="bench", items=[item], gateway="sandbox"
        )
        payment = services.payment_start_checkout(
            payment_id=payment.pk,
            return_url="http://127.0.0.1/bench",
            description="webhook bench",
            customer_email=user.email,
        )
        log(f"created payment {payment.public_id} ({payment.gateway_reference})")
    return payment


class WebhookFactory:
    """Signed sandbox webhooks for the bench payment, shaped like SandboxGateway.webhook_body."""

    def __init__(self, payment: Any, port: int):
        from payments.models import SandboxCharge
        from payments.registry import gateway_for

        gateway = gateway_for("sandbox")
        self.secret = gateway.secret
        charge = SandboxCharge.objects.get(reference=payment.gateway_reference)
        self.template = json.loads(gateway.webhook_body(charge))
        self.template["type"] = "charge.succeeded"
        self.template["data"]["status"] = "succeeded"
        self.host = f"127.0.0.1:{port}"
        self.token = uuid.uuid4().hex[:12]

    def request(self, path: str, event_id: str) -> bytes:
        from payments.gateways.sandbox import SIGNATURE_HEADER, sign

        body = json.dumps({**self.template, "id": event_id}, separators=(",", ":")).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nUser-Agent: bench-webhooks\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{SIGNATURE_HEADER}: {sign(body, self.secret)}\r\n\r\n"
        )
        return head.encode("latin-1") + body

    def batch(self, kind: str, label: str, n: int) -> list[bytes]:
        if kind == "bare":  # the same bytes to another path: only what the view does differs
            return [self.request(BARE_PATH, f"{EVENT_PREFIX}{self.token}_bare")] * n
        return [self.request(WEBHOOK_PATH, f"{EVENT_PREFIX}{self.token}_{label}_{i}") for i in range(n)]


def payments_queue(purge: bool = False) -> tuple[int, int]:
    """(ready messages, consumers) of the `payments` queue, declared first; purged if asked."""
    from config.celery import app, declare_topology, work_queue

    declare_topology()
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        if purge:
            work_queue(PAYMENTS_QUEUE)(channel).purge()
        ok = channel.queue_declare(queue=PAYMENTS_QUEUE, passive=True)
        return ok.message_count, ok.consumer_count


def wait_no_consumer(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (consumers := payments_queue()[1]) > 0:
        if time.monotonic() > deadline:
            raise BenchError(
                f"{consumers} consumer(s) on the {PAYMENTS_QUEUE!r} queue for {timeout:.0f} s: a worker "
                "(pytest's?) shares the broker and would run the bench's tasks; try again later"
            )
        time.sleep(1)


def delete_bench_webhooks() -> int:
    from payments.models import WebhookEvent

    return WebhookEvent.objects.filter(event_id__startswith=EVENT_PREFIX).delete()[0]


# --- One measurement --------------------------------------------------------------------------
def measure(requests: list[bytes], *, port: int, clients: int, server: Gunicorn, timeout: float) -> dict:
    """Send `requests` from `clients` processes; accepted (2xx), statuses, seconds, CPU/request."""
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=client_main, args=(port, requests[i::clients], start, results, i), daemon=True)
        for i in range(clients)
    ]
    try:
        for proc in procs:
            proc.start()
        for _ in procs:
            try:
                results.get(timeout=60)
            except queue.Empty:
                raise BenchError("the clients did not start within 60 s") from None
        before = cpu_sample(server.proc.pid)
        start.set()
        done, deadline = [], time.monotonic() + timeout
        while len(done) < clients:
            server.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"{len(requests)} requests not answered within {timeout:.0f} s")
            with contextlib.suppress(queue.Empty):
                done.append(results.get(timeout=0.5))
        after = cpu_sample(server.proc.pid)
    finally:
        for proc in procs:
            if proc.pid is None:  # never started
                continue
            if proc.is_alive():
                proc.terminate()
            proc.join(5)
    statuses: Counter[str] = Counter()
    for _, _, counts, _, _, _ in done:
        statuses.update(counts)
    seconds = max(t1 for *_, t1, _ in done) - min(t0 for *_, t0, _, _ in done)
    accepted = sum(count for status, count in statuses.items() if status.startswith("2"))
    n = len(requests)
    used = cpu_used(before, after)
    return {
        "requests": n,
        "accepted": accepted,
        "non_2xx": {status: count for status, count in statuses.items() if not status.startswith("2")},
        "seconds": round(seconds, 3),
        "per_s": round(accepted / seconds, 1),
        "cpu_ms_per_request": {name: round(used[name] * 1000 / n, 3) for name in GROUPS}
        | {"clients": round(sum(cpu for *_, cpu in done) * 1000 / n, 3)},
        "machine_busy": round(used["machine_busy"], 3),
    }


def run(args: argparse.Namespace) -> dict:
    import django

    django.setup()
    from django.db import connection

    from bench.events import ensure_database
    from payments.models import WebhookEvent

    ensure_database()
    payment = bench_payment()
    wait_no_consumer(args.consumer_wait)
    payments_queue(purge=True)
    delete_bench_webhooks()  # left over by an interrupted run
    server = Gunicorn(workers=args.workers, worker_class=args.worker_class, threads=args.threads)
    factory = WebhookFactory(payment, server.port)
    ok = False
    results: list[dict] = []  # the warm-up rounds too
    try:
        log(f"starting {' '.join(server.command[1:])}")
        server.start()
        server.wait_ready(args.ready_timeout)
        connection.close()  # not needed while measuring
        kinds = ["bare", "webhooks"]
        plan = [(kind, "warmup", args.warmup) for kind in kinds] if args.warmup else []
        plan += [(kind, str(r), args.requests) for r in range(1, args.rounds + 1) for kind in kinds]
        for kind, label, n in plan:
            result = measure(
                factory.batch(kind, label, n),
                port=server.port,
                clients=args.clients,
                server=server,
                timeout=args.timeout,
            )
            result |= {"kind": kind, "round": label}
            results.append(result)
            cpu = result["cpu_ms_per_request"]
            log(
                f"{kind:8} {label:6}: {result['accepted']}/{n} accepted in {result['seconds']:.2f} s = "
                f"{result['per_s']:,.0f}/s; non-2xx {result['non_2xx'] or 0}; CPU ms/request: "
                + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
                + f"; machine busy {result['machine_busy']:.0%}"
            )
        server.check_alive()
        ok = True
    finally:
        server.stop()
        if ok:
            server.remove_log()
        elif server.log_path is not None:
            log(f"gunicorn log kept: {server.log_path}")
        stored = queued = consumers = None
        with contextlib.suppress(Exception):  # best effort: the run may have failed on the way
            stored = WebhookEvent.objects.filter(
                event_id__startswith=f"{EVENT_PREFIX}{factory.token}_", signature_valid=True
            ).count()
        with contextlib.suppress(Exception):
            queued, consumers = payments_queue()
            payments_queue(purge=True)
        with contextlib.suppress(Exception):
            log(f"deleted {delete_bench_webhooks()} bench webhook rows; purged {PAYMENTS_QUEUE!r}")
    return summarize(args, results, stored=stored, queued=queued, consumers=consumers)


def summarize(
    args: argparse.Namespace,
    results: list[dict],
    *,
    stored: int | None,
    queued: int | None,
    consumers: int | None,
) -> dict:
    rounds = [r for r in results if r["round"] != "warmup"]

    def of(kind: str) -> list[dict]:
        return [r for r in rounds if r["kind"] == kind]

    def rate(kind: str) -> float:
        return sum(r["accepted"] for r in of(kind)) / sum(r["seconds"] for r in of(kind))

    def cpu(kind: str) -> dict[str, float]:
        n = sum(r["requests"] for r in of(kind))
        names = of(kind)[0]["cpu_ms_per_request"]
        return {
            name: round(sum(r["cpu_ms_per_request"][name] * r["requests"] for r in of(kind)) / n, 3)
            for name in names
        }

    # Every accepted webhook, warm-up included, must be one row; the queue holds only the
    # dispatch kicks (at most one per second per gunicorn worker), not one per webhook.
    expected = sum(r["accepted"] for r in results if r["kind"] == "webhooks")
    consistent = stored == expected
    if not consistent:
        log(f"warning: {expected} webhooks accepted, {stored} rows stored ({queued} kicks queued)")
    if consumers:
        log(f"warning: {consumers} consumer(s) appeared on {PAYMENTS_QUEUE!r}: the queued count is not exact")
    bare_per_s, webhooks_per_s = rate("bare"), rate("webhooks")
    if not bare_per_s:
        raise BenchError("no request to the bare view was accepted")
    return {
        "bench": "webhooks",
        "requests": args.requests,
        "bare_per_s": round(bare_per_s, 1),
        "webhooks_per_s": round(webhooks_per_s, 1),
        "ratio": round(webhooks_per_s / bare_per_s, 3),
        "errors": sum(sum(r["non_2xx"].values()) for r in rounds),
        "rounds": args.rounds,
        "clients": args.clients,
        "gunicorn": {"workers": args.workers, "worker_class": args.worker_class, "threads": args.threads},
        "stored": stored,
        "queued": queued,
        "consistent": consistent,
        "cpu_ms_per_request": {"bare": cpu("bare"), "webhooks": cpu("webhooks")},
        "per_round": [
            {k: r[k] for k in ("kind", "round", "accepted", "seconds", "per_s", "non_2xx", "machine_busy")}
            for r in rounds
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per measurement (5000)")
    parser.add_argument("--rounds", type=int, default=2, help="bare/webhooks pairs, alternated (2)")
    parser.add_argument("--warmup", type=int, default=300, help="requests of each kind first, not counted")
    parser.add_argument("--clients", type=int, default=4, help="client processes, one connection each (4)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn --workers (4, as the Procfile)")
    parser.add_argument(
        "--worker-class", default="sync", help="gunicorn --worker-class (sync, as the Procfile)"
    )
    parser.add_argument("--threads", type=int, default=1, help="gunicorn --threads (1; >1 means gthread)")
    parser.add_argument("--timeout", type=float, default=300.0, help="per measurement, s (300)")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="gunicorn start, s (60)")
    parser.add_argument(
        "--consumer-wait", type=float, default=60.0, help="wait for no consumer on `payments`, s (60)"
    )
    args = parser.parse_args(argv)
    if args.requests < args.clients or args.rounds < 1:
        parser.error("--requests must be at least --clients, and --rounds at least 1")

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally that stops gunicorn

    signal.signal(signal.SIGTERM, terminate)
    from kombu.exceptions import OperationalError  # the broker is unreachable

    budget = args.ready_timeout + args.consumer_wait + (2 * args.rounds + 2) * args.timeout + 120
    try:
        with hard_deadline(budget, "webhooks bench"):
            result = run(args)
    except (BenchError, OperationalError, OSError) as exc:
        log(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; gunicorn stopped")
        return 130
    print(
        f"webhooks: {result['webhooks_per_s']:,.0f} signed webhooks/s accepted = {result['ratio']:.2f} x "
        f"the bare view's {result['bare_per_s']:,.0f}/s (gunicorn {args.worker_class} x{args.workers}"
        f"{f' x{args.threads} threads' if args.threads > 1 else ''}, {args.clients} clients, "
        f"{args.rounds} x {args.requests} requests of each; {result['errors']} non-2xx)"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
