"""Notifications throughput: e-mails/second from committed events to a local SMTP server, and
the API's latency while they flow.

    .venv/bin/python bench/notifications.py --events 10000 [--concurrency 4] [--requests 400]

Reported as a ratio against bench/celery_baseline.py (bare no-op tasks drained by the same
kind of worker), measured first, in the same invocation.

What runs: config.settings.bench (the test services on localhost, the database `fulfil_bench`,
created and migrated if missing, production's connection reuse; BENCH_DATABASE_URL,
TEST_CELERY_BROKER_URL and TEST_REDIS_URL pick others), and three servers:

  SMTP: an aiosmtpd server in this process (127.0.0.1, a free port) that accepts every
    message and notes when, its Message-ID and its Content-Language.
  worker: a real `celery worker` subprocess (prefork, --concurrency processes, 4 by default
    as production's WORKER_CONCURRENCY) on the queues `events` and `notifications`, with
    TEST_EMAIL_URL=smtp://127.0.0.1:<port> (Django's SMTP backend, a connection per message,
    as notifications.channels.email sends) and TEST_EMAIL_TIMEOUT=10 (production's default).
  web: gunicorn with production's web command (sync workers, 4), for the API's latency.

The data: N customers (unusable passwords, preferred_language alternating en and ru, no
preferences saved: the defaults), each with one paid order of one line (product
`bench-notif-product`), and the `order.paid` rule's channels set to ["email"] for the run
(its previous channels are put back at the end; other rules are untouched). What a previous
run left is deleted first (its customers, their orders and messages, and the outbox,
processed events and dead letters, as the other benches do), and the two queues are purged.

The run: once the worker and gunicorn are up, the clock starts and N `order.paid` events are
committed to the outbox (core.events.publish, the data orders.services publishes, in
transactions of --per-commit events). Each goes: relay (queue `events`) -> the subscriber
notifications.on_event (queue `notifications`: rule, context from the database, the template
rendered, the Notification row written) -> notifications.deliver (reserve, SMTP, record `sent`
and publish notification.sent, which the relay publishes in turn).

Figures:
  messages_per_s: N / the time from the first publish to the N-th message accepted by the
    SMTP server; `ratio` is that over the baseline's drain/s. sent_seconds: to the N-th
    Notification recorded `sent` (the latest sent_at). steady_messages_per_s: the rate between
    the 10th and the 90th percentile of arrivals (without the start and the tail).
  API latency: authenticated GET /api/orders (DRF token of one of the customers, who sees
    their one order), sequential, one every --api-interval seconds at most (20 a second: a
    steady sample, not a load that would take a core from the worker), each on a new
    connection (sync workers close it), from a client subprocess (so that the SMTP server's
    thread does not share its GIL). Idle: --requests of them, worker and gunicorn up, nothing
    flowing. During: those that start from right after the last publish until the N-th
    e-mail, so that they cover the whole flow: the rendering of the queued events as well as
    the sends (the `notifications` queue is FIFO: the deliver tasks of a burst wait behind
    its on_event tasks). p50/p95/p99 of both, and during/idle; `messages_during` counts the
    e-mails that arrived within the second window.
  cpu_ms_per_message: CPU time from /proc between the first publish and the N-th e-mail, per
    e-mail: the worker's process group, gunicorn's, every `postgres` process, RabbitMQ's
    beam.smp, redis-server and this process (the publisher and the SMTP server), each with
    the children it reaped meanwhile (the postmaster's closed backends). gunicorn's is the
    latency client's requests, not the e-mails'. machine_busy: the share of the machine's
    CPU time that was busy; machine_cpu_ms_per_message: all of it per e-mail, whoever used it
    (the machine is shared: other processes' CPU is counted there and nowhere else).

  Idle after: --requests more once the flow is done, so that the run says how far two idle
    samples differ; `ratio_to_idle_max` is during over the larger of the two idle figures.
  --isolate (bench/cpusplit.py): the web side (gunicorn, its PostgreSQL backends, named with
    PGAPPNAME, Redis, the latency client) on CPU 0 and everything else of the run (the
    worker, RabbitMQ, the other PostgreSQL processes, this process) on CPU 1, as if the
    workers ran on a host of their own: what is left of the API's loss is what the flow does
    to it other than taking its CPU.

Checks (a failed one is an error, no figure): exactly N messages received, N distinct
Message-IDs (no duplicates; a second later still N), N Notification rows, all `sent`, no
dead letters, every API answer 200. Bounded: hard deadlines cover every stage; the worker,
gunicorn and the SMTP server are stopped whatever happens, and the rule is put back.
`events` and `notifications` must be ours alone: a consumer on them before our worker starts,
or a second one during the run (another worker on the same broker, e.g. pytest's, would take
our tasks to its own database and we its), stops the run, and the queues are then not purged.
On a shared machine give the run a vhost and a Redis database of its own (the relay's kick is
de-duplicated in Redis), e.g.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/fulfil_notif \
    TEST_CELERY_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/ TEST_REDIS_URL=redis://127.0.0.1:6379/13 \
    .venv/bin/python bench/notifications.py --events 10000
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import select
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.bench")
os.environ["DJANGO_READ_DOT_ENV"] = "0"

from bench.cpusplit import WEB_APPLICATION_NAME, CpuSplit  # noqa: E402
from bench.process import BenchError  # noqa: E402

QUEUES = ("events", "notifications")
RULE = "order.paid"
DOMAIN = "notif.bench.invalid"  # the bench's customers: notif-<i>@notif.bench.invalid
UNUSABLE = "!"  # Django's mark of an unusable password
SKU = "BENCH-NOTIF-1"
API_PATH = "/api/orders"
EMAIL_TIMEOUT = "10"  # seconds, production's EMAIL_TIMEOUT default (the test settings' is 2)
CLK_TCK = os.sysconf("SC_CLK_TCK")
MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.MULTILINE | re.IGNORECASE)
CONTENT_LANGUAGE = re.compile(rb"^Content-Language:[ \t]*(\S+)", re.MULTILINE | re.IGNORECASE)


def log(message: str) -> None:
    print(f"[notifications] {message}", file=sys.stderr, flush=True)


# --- The SMTP server --------------------------------------------------------------------------
class CountingHandler:
    """aiosmtpd handler: accepts every message; notes when, its Message-ID and language."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: list[float] = []
        self.message_ids: set[bytes] = set()
        self.languages: Counter[str] = Counter()
        self.recipients = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's name
        now = time.monotonic()
        head = envelope.original_content[:16384]
        found = MESSAGE_ID.search(head)
        language = CONTENT_LANGUAGE.search(head)
        with self.lock:
            self.times.append(now)
            self.message_ids.add(found.group(1) if found else b"")
            self.languages[language.group(1).decode() if language else ""] += 1
            self.recipients += len(envelope.rcpt_tos)
        return "250 OK"

    def count(self) -> int:
        with self.lock:
            return len(self.times)


class SmtpServer:
    def __init__(self) -> None:
        import logging

        from aiosmtpd.controller import Controller

        from bench.webhooks import free_port

        logging.getLogger("mail.log").setLevel(logging.WARNING)  # a line per connection at INFO
        self.handler = CountingHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.controller.stop()


# --- Data -----------------------------------------------------------------------------------------
def setup_django() -> None:
    import django

    django.setup()
    from bench.events import ensure_database

    ensure_database()


def reset() -> None:
    """Delete what a previous run left: its customers with their orders and messages, and the
    outbox, processed events and dead letters (the bench database's only)."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from notifications.models import Notification
    from orders.models import Order

    Notification.objects.filter(user__email__endswith=f"@{DOMAIN}").delete()
    Order.objects.filter(customer__email__endswith=f"@{DOMAIN}").delete()
    get_user_model().objects.filter(email__endswith=f"@{DOMAIN}").delete()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE core_outboxevent, core_processedevent, core_deadletter CASCADE")


def populate(n: int) -> tuple[list[Any], str]:
    """N customers with one paid order each; the orders, and a DRF token of the first customer."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from orders.models import Category, Order, OrderLine, Product, Variant

    now = timezone.now()
    User = get_user_model()
    with transaction.atomic():
        category, _ = Category.objects.get_or_create(
            slug="bench-notif", defaults={"name": "Bench notifications"}
        )
        product, _ = Product.objects.get_or_create(
            slug="bench-notif-product", defaults={"category": category, "name": "Wooden train"}
        )
        variant, _ = Variant.objects.get_or_create(
            sku=SKU, defaults={"product": product, "name": "Ages 3-5", "price": Decimal("24.50")}
        )
        users = User.objects.bulk_create(
            (
                User(
                    email=f"notif-{i}@{DOMAIN}",
                    first_name=f"Customer{i}",
                    password=UNUSABLE,
                    preferred_language="en" if i % 2 == 0 else "ru",
                )
                for i in range(n)
            ),
            batch_size=2000,
        )
        orders = Order.objects.bulk_create(
            (
                Order(
                    customer=user,
                    status=Order.Status.PAID,
                    stock_state=Order.Stock.SOLD,
                    currency=variant.currency,
                    total=variant.price * 2,
                    deadline=now,
                    paid_at=now,
                )
                for user in users
            ),
            batch_size=2000,
        )
        OrderLine.objects.bulk_create(
            (
                OrderLine(
                    order=order,
                    variant=variant,
                    sku=variant.sku,
                    name=f"{product.name} {variant.name}",
                    unit_price=variant.price,
                    quantity=2,
                )
                for order in orders
            ),
            batch_size=2000,
        )
        token = Token.objects.create(user=users[0]).key
    return orders, token


def rule_set_email_only() -> tuple[list[str], bool]:
    """Set the rule's channels to e-mail only; (its previous channels, whether it was enabled)."""
    from notifications.models import Rule

    rule = Rule.objects.get(key=RULE)
    previous = (list(rule.channels), rule.enabled)
    rule.channels, rule.enabled = ["email"], True
    rule.save(update_fields=["channels", "enabled", "updated_at"])
    return previous


def rule_restore(previous: tuple[list[str], bool]) -> None:
    from notifications.models import Rule

    Rule.objects.filter(key=RULE).update(channels=previous[0], enabled=previous[1])


def publish(orders: list[Any], per_commit: int) -> None:
    """order.paid for each order, with the data orders publishes, `per_commit` per transaction."""
    from django.db import transaction

    from core import events
    from orders.services import order_event_data  # the data orders.services publishes

    for first in range(0, len(orders), per_commit):
        with transaction.atomic():
            for order in orders[first : first + per_commit]:
                events.publish("order.paid", order_event_data(order))


class OurQueues:
    """`events` and `notifications`, ours alone for the run: another worker on the same broker
    (e.g. pytest's) would take our tasks to its database, and ours would take its tasks."""

    def __init__(self, app: Any):
        from config.celery import declare_topology

        declare_topology()
        self.conn = app.connection_for_write(heartbeat=0)
        self.conn.ensure_connection(max_retries=3)
        self.channel = self.conn.channel()

    def consumers(self) -> dict[str, int]:
        return {name: self.channel.queue_declare(queue=name, passive=True).consumer_count for name in QUEUES}

    def check(self, expected: int) -> None:
        """Raise unless each queue has `expected` consumers (0 before our worker, 1 with it)."""
        found = self.consumers()
        if any(count != expected for count in found.values()):
            raise BenchError(
                f"consumers on our queues: {found}, expected {expected} each: another worker is using "
                "this broker (vhost); run when it is idle, or choose another with TEST_CELERY_BROKER_URL"
            )

    def purge(self) -> None:
        from config.celery import work_queue

        for name in QUEUES:
            work_queue(name)(self.channel).purge()

    def close(self) -> None:
        """Purge what we left, unless someone else consumes the queues now; close."""
        with contextlib.suppress(Exception):
            if not any(self.consumers().values()):
                self.purge()
            else:
                log(f"queues not purged: other consumers on them ({self.consumers()})")
        with contextlib.suppress(Exception):
            self.conn.release()


# --- CPU accounting from /proc ------------------------------------------------------------------
def cpu_sample(groups: dict[int, str]) -> dict[Any, Any]:
    """CPU seconds so far per process of the given process groups, postgres, RabbitMQ, Redis and
    this process, with their reaped children's; and the machine's jiffies."""
    sample: dict[Any, Any] = {}
    me = os.getpid()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        pgid = int(fields[2])
        group = (
            "bench" if int(pid) == me
            else groups.get(pgid) if pgid in groups
            else "postgres" if comm == "postgres"
            else "rabbitmq" if comm == "beam.smp"
            else "redis" if comm == "redis-server"
            else None
        )  # fmt: skip
        if group:
            # utime + stime, and cutime + cstime: the children it has reaped (the postmaster's
            # backends that closed their connection, a worker's replaced pool children).
            sample[int(pid)] = (group, sum(int(f) for f in fields[11:15]) / CLK_TCK)
    jiffies = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    sample["machine_total"] = sum(jiffies[:8])
    sample["machine_idle"] = jiffies[3] + jiffies[4]
    return sample


def cpu_used(before: dict, after: dict) -> dict[str, float]:
    used: dict[str, float] = Counter()
    for pid, value in after.items():
        if isinstance(pid, int):
            group, seconds = value
            used[group] += seconds - before.get(pid, (group, 0.0))[1]
    idle = after["machine_idle"] - before["machine_idle"]
    used = dict(used)
    used["machine_busy"] = 1 - idle / max(1, after["machine_total"] - before["machine_total"])
    return used


# --- API latency -----------------------------------------------------------------------------------
def latency_client_main(port: int, requests: int, interval: float, until_stopped: bool) -> int:
    """Run as a subprocess: wait for a line on stdin, then `requests` sequential GETs, one every
    `interval` seconds at most (and, if `until_stopped`, more until another line or EOF
    arrives); the latencies as JSON."""
    token = os.environ["BENCH_API_TOKEN"]
    headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
    sys.stdin.readline()
    latencies, starts, statuses = [], [], Counter()
    started, next_start = time.time(), time.perf_counter()
    while len(latencies) < requests or (until_stopped and not select.select([sys.stdin], [], [], 0)[0]):
        time.sleep(max(0.0, next_start - time.perf_counter()))
        t0 = time.perf_counter()
        next_start = t0 + interval
        starts.append(time.time())
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=35)
            try:
                conn.request("GET", API_PATH, headers=headers)
                response = conn.getresponse()
                response.read()
                status = str(response.status)
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__
        latencies.append((time.perf_counter() - t0) * 1000)
        statuses[status] += 1
    ended = time.time()
    result = {
        "latencies_ms": latencies,
        "starts": starts,
        "statuses": statuses,
        "started": started,
        "ended": ended,
    }
    print(json.dumps(result))
    return 0


class LatencyClient:
    """The client subprocess: started (imports done) ahead, measuring from go() on."""

    def __init__(
        self,
        port: int,
        token: str,
        requests: int,
        interval: float,
        *,
        until_stopped: bool = False,
        split: CpuSplit | None = None,
    ):
        command = [sys.executable, __file__, "--latency-client", str(port)]
        command += ["--requests", str(requests), "--api-interval", str(interval)]
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [*command, *(["--until-stopped"] if until_stopped else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "BENCH_API_TOKEN": token},
        )
        if split is not None:  # on the web's CPU before its first request
            split.web_pids.add(self.proc.pid)
            split.apply()

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> dict:
        """Its figures, once it has sent its requests (telling it to stop if it goes on until told)."""
        try:
            out, _ = self.proc.communicate("stop\n", timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise BenchError(f"the API client did not finish within {timeout:.0f} s") from None
        if self.proc.returncode != 0:
            raise BenchError(f"the API client failed with status {self.proc.returncode}")
        return json.loads(out.strip().splitlines()[-1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


def percentiles(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(cuts[94], 2),
        "p99_ms": round(cuts[98], 2),
        "mean_ms": round(statistics.fmean(latencies), 2),
        "max_ms": round(max(latencies), 2),
    }


def measure_latency(
    port: int, token: str, requests: int, interval: float, timeout: float, split: CpuSplit | None = None
) -> dict:
    client = LatencyClient(port, token, requests, interval, split=split)
    try:
        client.go()
        return client.result(timeout)
    finally:
        client.stop()


def warm_up(port: int, token: str, requests: int, split: CpuSplit | None) -> None:
    """Requests not counted: every gunicorn worker has its connections and code loaded."""
    result = measure_latency(port, token, requests, 0.0, 120, split)
    if set(result["statuses"]) != {"200"}:
        raise BenchError(f"GET {API_PATH} answered {result['statuses']} while warming up")


# --- The measurement ------------------------------------------------------------------------------
def wait_for_flow(
    n: int, smtp: SmtpServer, worker: Any, queues: OurQueues, deadline: float, since: float
) -> float:
    """Until the N-th e-mail and the N-th Notification `sent`; the N-th e-mail's time.

    Every few seconds a failed message or a dead letter ends the wait (they would never come)."""
    from core.models import DeadLetter
    from notifications.models import Notification

    def give_up_if_failing() -> None:
        queues.check(1)
        failed = Notification.objects.filter(status=Notification.Status.FAILED).first()
        if failed is not None:
            raise BenchError(f"a message failed: {failed.last_error[:500]}")
        letter = DeadLetter.objects.first()
        if letter is not None:
            raise BenchError(f"a dead letter ({letter.subscriber}): {letter.error[:500]}")

    next_check = next_report = time.monotonic() + 10
    while smtp.handler.count() < n:
        worker.check_alive()
        now = time.monotonic()
        if now > deadline:
            raise BenchError(
                f"{smtp.handler.count()} of {n} e-mails after {now - since:.0f} s\n{worker.log_tail()}"
            )
        if now > next_check:
            give_up_if_failing()
            next_check = now + 5
        if now > next_report:
            log(f"{smtp.handler.count():,} of {n:,} e-mails after {now - since:.0f} s")
            next_report = now + 10
        time.sleep(0.05)
    with smtp.handler.lock:
        last_mail = sorted(smtp.handler.times)[n - 1]
    sent = Notification.objects.filter(rule=RULE, status=Notification.Status.SENT)
    while sent.count() < n:
        worker.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"{sent.count()} of {n} messages recorded sent, all {n} received")
        time.sleep(0.25)
    return last_mail


def run(args: argparse.Namespace, base: float) -> dict:
    from django.db import connection
    from django.db.models import Count, Max

    from bench.celery_baseline import Worker
    from bench.webhooks import Gunicorn
    from config.celery import app
    from core.models import DeadLetter
    from notifications.models import Notification

    n = args.events
    log(f"resetting and making {n:,} customers with a paid order each")
    reset()
    orders, token = populate(n)
    connection.close()
    queues = OurQueues(app)
    try:
        queues.check(0)
    except BenchError:
        queues.conn.release()
        raise
    queues.purge()

    smtp = SmtpServer()
    worker = Worker(
        app,
        ",".join(QUEUES),
        concurrency=args.concurrency,
        module="config",
        env={"TEST_EMAIL_URL": f"smtp://127.0.0.1:{smtp.port}", "TEST_EMAIL_TIMEOUT": EMAIL_TIMEOUT},
    )
    web = Gunicorn(workers=args.web_workers, worker_class="sync", threads=1)
    split = None
    if args.isolate:  # the web's connections named (libpq's PGAPPNAME): their backends go to its CPU
        web.env["PGAPPNAME"] = WEB_APPLICATION_NAME
    during_client = previous_rule = None
    ok = False
    try:
        previous_rule = rule_set_email_only()
        smtp.start()
        log(f"SMTP server on 127.0.0.1:{smtp.port}; starting the worker and gunicorn")
        worker.start()
        web.start()
        worker.wait_ready(args.ready_timeout)
        if args.nice:  # a notifications worker given a lower CPU priority than the web (docs/operations.md)
            os.setpriority(os.PRIO_PGRP, worker.proc.pid, args.nice)
        web.wait_ready(args.ready_timeout)
        if args.isolate:
            split = CpuSplit(web_pgid=web.proc.pid, work_pgid=worker.proc.pid)
            split.start()
        warm_up(web.port, token, max(40, 10 * args.web_workers), split)
        idle = measure_latency(web.port, token, args.requests, args.api_interval, args.timeout, split)
        log(f"API idle: {percentiles(idle['latencies_ms'])}")
        if smtp.handler.count():
            raise BenchError(f"{smtp.handler.count()} e-mails before any event was published")
        # Started now, so that its imports are done before its clock starts.
        during_client = LatencyClient(web.port, token, 1, args.api_interval, until_stopped=True, split=split)
        queues.check(1)  # our worker's, and no other

        groups = {worker.proc.pid: "worker", web.proc.pid: "gunicorn"}
        cpu_before = cpu_sample(groups)
        t0_wall, t0 = time.time(), time.monotonic()
        publish(orders, args.per_commit)
        published = time.monotonic()
        during_client.go()
        log(f"published {n:,} events in {published - t0:.1f} s; {smtp.handler.count():,} e-mails so far")
        last_mail = wait_for_flow(n, smtp, worker, queues, t0 + args.timeout, t0)
        cpu_after = cpu_sample(groups)
        during = during_client.result(args.timeout)
        time.sleep(1.0)  # a duplicate would arrive now
        # Idle again, flow done: how far two idle samples of the same run differ (the noise).
        idle_after = measure_latency(web.port, token, args.requests, args.api_interval, args.timeout, split)
        with smtp.handler.lock:
            received = len(smtp.handler.times)
            distinct = len(smtp.handler.message_ids)
            recipients = smtp.handler.recipients
            languages = dict(smtp.handler.languages)
            arrivals = sorted(smtp.handler.times)
        statuses = dict(
            Notification.objects.filter(rule=RULE)
            .values_list("status")
            .annotate(count=Count("pk"))
            .order_by()
        )
        last_sent_at = Notification.objects.filter(rule=RULE).aggregate(last=Max("sent_at"))["last"]
        dead = DeadLetter.objects.count()
        connection.close()
        ok = True
    finally:
        if during_client is not None:
            during_client.stop()
        if split is not None:
            split.stop()
        worker.stop()
        web.stop()
        smtp.stop()
        queues.close()
        if previous_rule is not None:
            try:
                rule_restore(previous_rule)
            except Exception as exc:  # noqa: BLE001 - reported, the servers are stopped anyway
                log(f"could not put the {RULE} rule's channels back to {previous_rule}: {exc}")
        connection.close()
        if ok:
            worker.remove_log()
            web.remove_log()
        else:
            for server in (worker, web):
                if server.log_path is not None:
                    log(f"{server.name} log kept: {server.log_path}")

    problems = []
    if received != n or distinct != n or recipients != n:
        problems.append(
            f"{received} e-mails received ({distinct} distinct Message-IDs, {recipients} recipients)"
        )
    if statuses != {Notification.Status.SENT: n}:
        problems.append(f"Notification rows by status: {statuses}")
    if dead:
        problems.append(f"{dead} dead letters")
    for label, result in (("idle", idle), ("during", during), ("idle after", idle_after)):
        if set(result["statuses"]) != {"200"}:
            problems.append(f"GET {API_PATH} {label}: {result['statuses']}")
    if problems:
        raise BenchError("; ".join(problems))

    seconds = last_mail - t0
    sent_seconds = last_sent_at.timestamp() - t0_wall
    lo, hi = arrivals[n // 10], arrivals[(9 * n) // 10 - 1]
    # During the flow: the requests that started before the N-th e-mail.
    flowing = [
        ms
        for ms, start in zip(during["latencies_ms"], during["starts"], strict=True)
        if start <= t0_wall + seconds
    ]
    if len(flowing) < 2:
        raise BenchError(f"only {len(flowing)} API requests while the e-mails flowed: too few for a figure")
    idle_p, during_p = percentiles(idle["latencies_ms"]), percentiles(flowing)
    after_p = percentiles(idle_after["latencies_ms"])
    window = (during["started"] - t0_wall, seconds)
    cpu = cpu_used(cpu_before, cpu_after)
    return {
        "bench": "notifications",
        "events": n,
        "concurrency": args.concurrency,
        "isolated": bool(args.isolate),
        "baseline_drain_per_s": base,
        "messages_per_s": round(n / seconds, 1),
        "ratio": round(n / seconds / base, 4),
        "seconds": round(seconds, 2),
        "sent_seconds": round(sent_seconds, 2),
        "sent_per_s": round(n / sent_seconds, 1),
        "publish_seconds": round(published - t0, 2),
        "first_message_seconds": round(arrivals[0] - t0, 3),
        "steady_messages_per_s": round(((9 * n) // 10 - n // 10 - 1) / (hi - lo), 1) if hi > lo else None,
        "received": received,
        "distinct_message_ids": distinct,
        "languages": languages,
        "notifications": statuses,
        "dead_letters": dead,
        "api": {
            "path": API_PATH,
            "requests": args.requests,
            "web_workers": args.web_workers,
            "interval_s": args.api_interval,
            "idle": idle_p,
            "during": during_p,
            "idle_after": after_p,
            "during_requests": len(flowing),
            "during_window_s": [round(window[0], 2), round(window[1], 2)],
            "messages_during": sum(1 for t in arrivals if t0 + window[0] <= t <= t0 + window[1]),
            "ratio": {
                k.removesuffix("_ms"): round(during_p[k] / idle_p[k], 2)
                for k in ("p50_ms", "p95_ms", "p99_ms")
            },
            # During against the larger of the two idle samples: what the noise leaves over.
            "ratio_to_idle_max": {
                k.removesuffix("_ms"): round(during_p[k] / max(idle_p[k], after_p[k]), 2)
                for k in ("p50_ms", "p95_ms", "p99_ms")
            },
            "idle_after_ratio": {
                k.removesuffix("_ms"): round(after_p[k] / idle_p[k], 2)
                for k in ("p50_ms", "p95_ms", "p99_ms")
            },
        },
        "cpu_ms_per_message": {
            k: round(v * 1000 / n, 3) for k, v in sorted(cpu.items()) if k != "machine_busy"
        },
        "machine_busy": round(cpu["machine_busy"], 3),
        # Every core's busy time per e-mail, whoever used it (the whole machine, shared).
        "machine_cpu_ms_per_message": round(
            cpu["machine_busy"] * (os.cpu_count() or 1) * seconds * 1000 / n, 3
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--events", type=int, default=10_000, help="order.paid events, one e-mail each (10000)"
    )
    parser.add_argument("--concurrency", type=int, default=None, help="worker processes (the baseline's, 4)")
    parser.add_argument(
        "--requests",
        type=int,
        default=400,
        help="API requests while idle (400); during: as many as fit in the flow",
    )
    parser.add_argument(
        "--api-interval", type=float, default=0.05, help="s from one API request's start to the next's (0.05)"
    )
    parser.add_argument("--per-commit", type=int, default=500, help="events per transaction (500)")
    parser.add_argument(
        "--nice", type=int, default=0, help="the worker's CPU niceness (0: as the Procfile runs it; e.g. 10)"
    )
    parser.add_argument(
        "--isolate",
        action="store_true",
        help="the web (gunicorn, its PostgreSQL backends, Redis, the API client) on CPU 0, the rest on CPU 1",
    )
    parser.add_argument(
        "--web-workers", type=int, default=4, help="gunicorn sync workers (4, as the Procfile)"
    )
    parser.add_argument("--baseline-tasks", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=1800.0, help="the flow, s (1800)")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="worker and gunicorn start, s (60)")
    parser.add_argument("--latency-client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--until-stopped", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.latency_client:
        return latency_client_main(args.latency_client, args.requests, args.api_interval, args.until_stopped)
    if args.events < 10:
        parser.error("--events must be at least 10")

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally that stops the servers

    signal.signal(signal.SIGTERM, terminate)
    from kombu.exceptions import OperationalError

    from bench.celery_baseline import CONCURRENCY, hard_deadline, measure_baseline

    args.concurrency = args.concurrency or CONCURRENCY
    try:
        baseline = measure_baseline(args.baseline_tasks)
        base = baseline["drain_per_s"]
        log(f"baseline: {base:,.0f} no-op tasks/s (prefork x{CONCURRENCY})")
        budget = 2 * args.ready_timeout + 3 * args.timeout + args.events / 50 + 300
        with hard_deadline(budget, "notifications bench"):
            setup_django()
            result = run(args, base)
    except (BenchError, OperationalError, OSError) as exc:
        log(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; worker and gunicorn stopped")
        return 130
    result["baseline"] = {
        k: baseline[k] for k in ("tasks", "drain_per_s", "publish_per_s", "rabbitmq", "celery")
    }
    result["baseline_concurrency"] = CONCURRENCY
    api = result["api"]
    log(
        f"{result['events']:,} e-mails in {result['seconds']:.1f} s = {result['messages_per_s']:,.1f}/s "
        f"= {result['ratio']:.4f} x the no-op baseline ({base:,.0f}/s); all sent (recorded) after "
        f"{result['sent_seconds']:.1f} s; worker prefork x{result['concurrency']}"
    )
    log(
        f"API GET {API_PATH} p50/p95/p99 ms: idle {api['idle']['p50_ms']}/{api['idle']['p95_ms']}/"
        f"{api['idle']['p99_ms']}, during {api['during']['p50_ms']}/{api['during']['p95_ms']}/"
        f"{api['during']['p99_ms']} (x{api['ratio']['p50']}/x{api['ratio']['p95']}/x{api['ratio']['p99']}), "
        f"idle after " + "/".join(str(api["idle_after"][k]) for k in ("p50_ms", "p95_ms", "p99_ms")) + "; "
        "CPU ms per e-mail: " + ", ".join(f"{k} {v}" for k, v in result["cpu_ms_per_message"].items())
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
