"""Paid flows end to end: customers buy through the API, pay through the sandbox's signed
webhooks, and are told by e-mail and in-app; flows/second against the Celery no-op baseline.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/fulfil_pipeline \
    TEST_REDIS_URL=redis://127.0.0.1:6379/12 \
    .venv/bin/python bench/pipeline.py --flows 2000 [--plot]

What runs, all on this machine: config.settings.bench (the test services on localhost, a
database of its own, created and migrated if missing, production's connection reuse), and
the Procfile's three processes plus an SMTP server:
  web: gunicorn, production's web command (4 sync workers, bench/webhooks.py's Gunicorn);
  worker: `celery -A config worker --pool prefork --concurrency 4` on the Procfile's queues
    (default, payments, orders, bookings, subscriptions, notifications, events), the events
    consumer as the settings have it (on with RabbitMQ), with TEST_EMAIL_URL pointing at
  SMTP: bench/notifications.py's aiosmtpd server in this process (accepts every message);
  beat: `celery -A config beat` (django-celery-beat's DatabaseScheduler, the project's
    periodic tasks installed by `setup_periodic_tasks`: the outbox and webhook sweeps, expiry...).
The Procfile's queues must have no consumer before the run (another worker on the broker
would take our tasks to its database); they are purged before and after it.

A flow: one new customer (e-mail address only, a DRF token), one of, in turn,
  order: POST /api/cart/items, POST /api/checkout -> order pending_payment, sandbox checkout;
  booking: POST /api/bookings (a one-hour slot of a hall, its 30 % deposit's checkout);
  subscription: POST /api/children, POST /api/subscriptions, POST /api/payments/batch;
then the customer presses Pay on the sandbox page (the charge is marked succeeded in the
database, as the page does; the page's own webhook task is not used) and the bench POSTs the
sandbox's signed webhook (bytes and X-Sandbox-Signature as SandboxGateway.webhook_body and
sign make them) to /api/payments/webhook/sandbox. From there everything is the project's:
webhook stored, kick -> dispatch -> verify with the gateway -> payment.completed ->
orders / bookings / subscriptions subscriber -> order.paid / booking.confirmed / invoice.paid
(+ invoice.paid -> the toybox built -> toybox.created) -> notifications.on_event -> e-mail over
SMTP (Notification `sent`) and in-app (`delivered`). The flow ends with its rule's messages:
order.paid, booking.confirmed, toybox.created (invoice.paid has no rule); each is 2 rows
(e-mail, in-app: no phone, no Telegram) unless staff changed the rule, which is read.
Buying is done first for a batch, by --clients processes, and is not in the paid figure; the
bench waits until the outbox is empty (the purchases' events handled) before paying.

Figures:
  flows_per_s (max): each batch of the --flows (--chunk at a time: holds expire after
    BOOKING_HOLD_MINUTES) is paid as fast as --clients processes can POST the webhooks; a
    batch's time runs from its first webhook POST to its last Notification recorded (the
    latest sent_at of its rows); flows_per_s = flows / the sum of the batches' times.
    `ratio` = flows_per_s / the baseline's drain/s (target >= 0.2).
  latency at half the max rate: --half-flows more flows whose webhooks are offered on a fixed
    schedule at 0.5 x flows_per_s (open loop); per flow, from its webhook POST (the client's
    clock) to its confirmation in the database (Order.paid_at; the BookingAudit row to
    `confirmed`; the first Invoice.paid_at, which activates the subscription in the same
    transaction). p50 / p90 / p99 (target p99 < 2 s).
  RSS: the process groups of gunicorn, the worker and beat (VmRSS from /proc, summed over
    each group: master and children), after the warm-up flows, after each max-rate batch and
    at the end; growth in % from the warm-up and from the first batch's end, when every
    process has served every kind of flow (target < 10 % over 50,000 flows: `--flows 50000`,
    documented, a long run).
  --plot [PATH]: throughput and p99 latency against offered load, --steps fractions of the
    max rate, --step-flows flows each, drawn with matplotlib (docs/img/pipeline.png).
Context, measured first in the same invocation: the Celery no-op baseline
(bench.celery_baseline.measure_baseline) and the events bench's peer (bench.events, one
round of --peer-events: the outbox's commit-to-effect events/s next to the on_commit peer's,
`transaction.on_commit(lambda: task.delay(event))` with the same effect, on their own worker
before ours starts). The peer is not a pipeline: it is the cheapest single hop a Django team
would write, shown so the pipeline's rate can be read against one event's cost.

Checks (an error, no figure): every purchase 201, every webhook 200, every flow confirmed,
every message sent or delivered and none failed, no new dead letter, the queues ours alone.
Bounded: a hard deadline over the whole run; the servers are always stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.bench"  # here, gunicorn, the workers, beat
os.environ["DJANGO_READ_DOT_ENV"] = "0"

from bench import pipeline_data as data  # noqa: E402
from bench.pipeline_load import ClientError, buyer_main, run_clients, sender_main  # noqa: E402
from bench.pipeline_report import log, plot, summarize  # noqa: E402
from bench.process import BackgroundProcess, BenchError  # noqa: E402

PROCFILE_QUEUES = ("default", "payments", "orders", "bookings", "subscriptions", "notifications", "events")
DONE = ("sent", "delivered")
DEFAULT_PLOT = REPO / "docs" / "img" / "pipeline.png"


# --- Processes --------------------------------------------------------------------------------
class Beat(BackgroundProcess):
    """The Procfile's beat: `celery -A config --quiet beat`, in its own process group."""

    name = "beat"

    def __init__(self, log_level: str | None):
        command = [sys.executable, "-m", "celery", "-A", "config", "--quiet", "beat"]
        super().__init__(command, {"LOG_LEVEL": log_level} if log_level else {})


def rss_mb(pgid: int) -> float:
    """VmRSS summed over the processes of a process group (a server and its children), in MB."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[2]) != pgid:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])  # kB
    return round(total / 1024, 1)


class Queues:
    """The Procfile's queues, and the events consumer's `<queue>.events` queues where they exist
    (core/events/consumer.py), ours alone for the run: checked by their consumer counts, and
    purged (a message another run left would be applied to our database)."""

    def __init__(self) -> None:
        from config.celery import app, declare_topology

        declare_topology()
        self.conn = app.connection_for_write(heartbeat=0)
        self.conn.ensure_connection(max_retries=3)

    def _probe(self, name: str) -> int | None:
        """Its consumer count, None if it does not exist (a fresh channel: a miss closes it)."""
        channel = self.conn.channel()
        try:
            return channel.queue_declare(queue=name, passive=True).consumer_count
        except self.conn.channel_errors:
            return None
        finally:
            with contextlib.suppress(Exception):
                channel.close()

    def consumers(self) -> dict[str, int]:
        names = [*PROCFILE_QUEUES, *(f"{q}.events" for q in PROCFILE_QUEUES)]
        return {name: count for name in names if (count := self._probe(name)) is not None}

    def check(self, expected: int) -> None:
        """Each work queue has `expected` consumers (0 before our worker, 1 with it), each events
        queue at most that many (a group without subscribers has none)."""
        found = self.consumers()
        work = [found[q] == expected for q in PROCFILE_QUEUES]
        events = [count <= expected for name, count in found.items() if name not in PROCFILE_QUEUES]
        if not all(work + events):
            raise BenchError(
                f"consumers on the Procfile's queues: {found}, expected {expected} each: another worker "
                "uses this broker (vhost); run when it is idle, or give TEST_CELERY_BROKER_URL another vhost"
            )

    def purge(self) -> None:
        for name in self.consumers():
            channel = self.conn.channel()
            try:
                channel.queue_purge(name)
            finally:
                channel.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if not any(self.consumers().values()):
                self.purge()
        with contextlib.suppress(Exception):
            self.conn.release()


class Servers:
    """SMTP, worker, beat and gunicorn: started together, always stopped together."""

    def __init__(self, args: argparse.Namespace):
        from bench.celery_baseline import Worker
        from bench.notifications import SmtpServer
        from bench.webhooks import Gunicorn
        from config.celery import app

        self.smtp = SmtpServer()
        email = {"TEST_EMAIL_URL": f"smtp://127.0.0.1:{self.smtp.port}", "TEST_EMAIL_TIMEOUT": "10"}
        self.worker = Worker(
            app, ",".join(PROCFILE_QUEUES), concurrency=args.concurrency, log_level=args.log_level,
            module="config", env=email,
        )  # fmt: skip
        self.beat = Beat(args.log_level)
        self.web = Gunicorn(workers=args.web_workers, worker_class="sync", threads=1)
        self.ok = False

    def start(self, ready_timeout: float) -> None:
        self.smtp.start()
        for server in (self.worker, self.web, self.beat):
            server.start()
        self.worker.wait_ready(ready_timeout)
        self.web.wait_ready(ready_timeout)
        self.beat.check_alive()

    def check_alive(self) -> None:
        for server in (self.worker, self.web, self.beat):
            server.check_alive()

    def rss(self) -> dict[str, float]:
        return {s.name: rss_mb(s.proc.pid) for s in (self.web, self.worker, self.beat)}

    def stop(self) -> None:
        for server in (self.beat, self.web, self.worker):
            server.stop()
        self.smtp.stop()
        for server in (self.worker, self.web, self.beat):
            if self.ok:
                server.remove_log()
            elif server.log_path is not None:
                log(f"{server.name} log kept: {server.log_path}")


# --- One batch: buy, settle, pay, wait ------------------------------------------------------
class Run:
    def __init__(self, args: argparse.Namespace, servers: Servers, queues: Queues, catalogue: data.Catalogue):
        self.args, self.servers, self.queues, self.catalogue = args, servers, queues, catalogue
        self.kinds = args.mix.split(",")
        self.expected = data.expected_messages()
        if not all(self.expected[kind] for kind in self.kinds):
            raise BenchError(
                f"a flow's rule sends no message a customer with e-mail only gets: {self.expected}"
            )
        self.next_index = 0
        self.dead_at_start = data.dead_letters()

    def batch(self, label: str, n: int, rate: float | None = None) -> dict:
        """Buy `n` flows, then pay them (at `rate` flows/s, or as fast as the clients can)."""
        from django.db import connection

        flows, bought = self.buy(label, n)
        self.settle()
        data.charges_paid(flows)
        raws = data.webhook_requests(flows, self.servers.web.port)
        connection.close()
        self.queues.check(1)
        result = self.pay(label, flows, raws, rate)
        return {"label": label, "flows": n, "buy": bought, **result}

    def buy(self, label: str, n: int) -> tuple[list[data.Flow], dict]:
        flows = data.customers_create(self.catalogue, label, self.next_index, n, self.kinds)
        self.next_index += n
        by_index = {flow.index: flow for flow in flows}
        clients = min(self.args.clients, n)
        shares = [[(f.index, f.token, f.kind, f.request) for f in flows[i::clients]] for i in range(clients)]
        done = run_clients(
            buyer_main, shares, port=self.servers.web.port, timeout=self.args.timeout,
            check=self.servers.check_alive,
        )  # fmt: skip
        errors = []
        for _, _, results, _, _ in done:
            for index, key, url, error in results:
                if error:
                    errors.append(error)
                by_index[index].key, by_index[index].reference = key, url.rstrip("/").rsplit("/", 1)[-1]
        if errors:
            raise BenchError(f"{len(errors)} of {n} purchases failed; the first: {errors[0]}")
        seconds = max(d[4] for d in done) - min(d[3] for d in done)
        log(f"{label}: bought {n} flows through the API in {seconds:.1f} s ({n / seconds:.1f} flows/s)")
        return flows, {"seconds": round(seconds, 2), "flows_per_s": round(n / seconds, 1)}

    def settle(self) -> None:
        """Until the purchases' events are published (and a moment for their subscribers)."""
        deadline = time.monotonic() + self.args.timeout
        while (waiting := data.outbox_waiting()) > 0:
            self.servers.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"{waiting} outbox events still unpublished after {self.args.timeout:.0f} s")
            time.sleep(0.25)
        time.sleep(self.args.settle)

    def pay(self, label: str, flows: list[data.Flow], raws: list[bytes], rate: float | None) -> dict:
        clients = min(self.args.clients, len(flows))
        offsets = [i / rate if rate else 0.0 for i in range(len(flows))]
        items = [(flow.index, raw, offset) for flow, raw, offset in zip(flows, raws, offsets, strict=True)]
        shares = [items[i::clients] for i in range(clients)]
        sending = (len(flows) / rate if rate else 0) + self.args.timeout
        done = run_clients(
            sender_main, shares, port=self.servers.web.port, timeout=sending,
            check=self.servers.check_alive, lead=0.2,
        )  # fmt: skip
        sent = {flow: (at, status) for _, _, records in done for flow, at, status in records}
        refused = [status for _, status in sent.values() if not status.startswith("2")]
        if refused:
            raise BenchError(f"{len(refused)} of {len(flows)} webhooks not accepted: {sorted(set(refused))}")
        first = min(at for at, _ in sent.values())
        last_post = max(at for at, _ in sent.values())
        last_message = self.wait_messages(label, flows)
        confirmed = data.confirmed_at(flows)
        missing = [f for f in flows if f.index not in confirmed]
        if missing:
            raise BenchError(
                f"{len(missing)} flows not confirmed, e.g. {missing[0].kind} {missing[0].key}; "
                f"webhook errors: {data.webhook_errors(missing)}"
            )
        latencies = [confirmed[f.index] - sent[f.index][0] for f in flows]
        seconds = last_message - first
        result = {
            "offered_per_s": round(rate, 2) if rate else None,
            "post_seconds": round(last_post - first, 2),
            "seconds": round(seconds, 2),
            "flows_per_s": round(len(flows) / seconds, 2),
            "latency": data.summary_of(latencies),
            "latency_by_kind": {
                kind: data.summary_of(
                    [confirmed[f.index] - sent[f.index][0] for f in flows if f.kind == kind]
                )
                for kind in self.kinds
            },
        }
        log(
            f"{label}: {len(flows)} flows paid in {seconds:.2f} s = {result['flows_per_s']:.1f} flows/s"
            f"{f' (offered {rate:.1f}/s)' if rate else ''}; webhook -> confirmed {result['latency']}"
        )
        return result

    def wait_messages(self, label: str, flows: list[data.Flow]) -> float:
        """Until every flow's messages are recorded sent (e-mail) or delivered (in-app); the
        latest sent_at. A failed message or a new dead letter ends the wait with an error."""
        expected = sum(self.expected[f.kind] for f in flows)
        deadline = time.monotonic() + self.args.timeout
        next_check = time.monotonic() + 5
        while True:
            state = data.messages_state(flows)
            done = sum(state["counts"].get(s, 0) for s in DONE)
            if done >= expected:
                break
            if state["failed"]:
                raise BenchError(f"a message failed: {state['failed'][:500]}")
            self.servers.check_alive()
            if time.monotonic() > next_check:
                if data.dead_letters() > self.dead_at_start:
                    raise BenchError(f"a dead letter: {data.first_dead_letter()}")
                next_check = time.monotonic() + 5
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{label}: {done} of {expected} messages after {self.args.timeout:.0f} s: {state}"
                )
            time.sleep(0.2)
        if done != expected or set(state["counts"]) - set(DONE):
            raise BenchError(f"{label}: expected {expected} messages, found {state['counts']}")
        return state["last_sent"]


# --- The run -----------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict:
    """Baseline, events peer, then the pipeline; each under its own deadline (they do not nest)."""
    from bench.celery_baseline import hard_deadline, measure_baseline

    queues = Queues()
    try:
        queues.check(0)  # the events bench purges them: they must be nobody else's
        queues.purge()  # what another run left would reach the events bench's worker too
        baseline = measure_baseline(args.baseline_tasks)
        log(f"baseline: {baseline['drain_per_s']:,.0f} no-op tasks/s")
        with hard_deadline(3 * args.timeout + 120, "events peer"):
            peer = measure_peer(args)
        batches = -(-args.flows // args.chunk) + 2 + (len(args.steps) if args.plot else 0)
        with hard_deadline(2 * args.ready_timeout + batches * 3 * args.timeout + 300, "pipeline bench"):
            result = pipeline(args, queues)
    finally:
        queues.close()
    return summarize(args, baseline, peer, result)


def pipeline(args: argparse.Namespace, queues: Queues) -> dict:
    from django.core.management import call_command
    from django.db import connection

    call_command("setup_periodic_tasks", verbosity=0, stdout=io.StringIO())  # stdout: the figures only
    queues.check(0)
    queues.purge()
    catalogue = data.catalogue_create(uuid.uuid4().hex[:8])
    connection.close()
    servers = Servers(args)
    try:
        log(f"starting the worker, gunicorn and beat (run {catalogue.token})")
        servers.start(args.ready_timeout)
        result = measure(args, servers, queues, catalogue)
        queues.check(1)
        servers.ok = True
    finally:
        servers.stop()
    return result


def measure_peer(args: argparse.Namespace) -> dict:
    """One round of bench/events.py (its project and its on_commit peer), on its own worker."""
    from bench.events import measure_events

    (pair,) = measure_events(args.peer_events, rounds=1, per_commit=10, publishers=2, timeout=args.timeout)
    project, on_commit = pair["project"]["live_per_s"], pair["peer"]["live_per_s"]
    log(f"events bench: project live {project:,.0f}/s, on_commit peer live {on_commit:,.0f}/s")
    return {"events": args.peer_events, **pair}


def measure(args: argparse.Namespace, servers: Servers, queues: Queues, catalogue: data.Catalogue) -> dict:
    runner = Run(args, servers, queues, catalogue)
    if args.warmup:
        runner.batch("warm", args.warmup)
    rss_start = servers.rss()
    log(f"RSS after the warm-up, MB: {rss_start}")
    batches, rss_series = [], [{"flows": 0, **rss_start}]
    for k, first in enumerate(range(0, args.flows, args.chunk)):
        batches.append(runner.batch(f"max{k}", min(args.chunk, args.flows - first)))
        rss_series.append({"flows": runner.next_index - args.warmup, **servers.rss()})
    flows_per_s = args.flows / sum(b["seconds"] for b in batches)
    half = runner.batch("half", args.half_flows, rate=flows_per_s / 2)
    steps = []
    if args.plot:
        for k, fraction in enumerate(args.steps):
            step = runner.batch(f"step{k}", args.step_flows, rate=flows_per_s * fraction)
            steps.append({"fraction": fraction, **step})
    rss_end = servers.rss()
    log(f"RSS at the end, MB: {rss_end}")
    return {
        "flows_per_s": flows_per_s, "batches": batches, "half": half, "steps": steps,
        "rss_start": rss_start, "rss_end": rss_end, "rss_series": rss_series,
        "flows_total": runner.next_index, "dead_letters_new": data.dead_letters() - runner.dead_at_start,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=2000, help="flows paid at the max rate (2000)")
    parser.add_argument("--chunk", type=int, default=2000, help="flows bought then paid at a time (2000)")
    parser.add_argument(
        "--half-flows", type=int, default=None, help="flows at half the max rate (min(--flows, 1000))"
    )
    parser.add_argument("--warmup", type=int, default=30, help="flows first, not counted (30)")
    parser.add_argument("--mix", default="order,booking,subscription", help="kinds, in turn")
    parser.add_argument("--clients", type=int, default=4, help="client processes (4)")
    parser.add_argument("--concurrency", type=int, default=None, help="worker processes (the baseline's, 4)")
    parser.add_argument("--web-workers", type=int, default=4, help="gunicorn sync workers (4)")
    parser.add_argument("--log-level", help="LOG_LEVEL of the worker and beat (the project's, INFO)")
    parser.add_argument(
        "--settle", type=float, default=2.0, help="s after the outbox empties before paying (2)"
    )
    parser.add_argument("--baseline-tasks", type=int, default=10_000)
    parser.add_argument(
        "--peer-events", type=int, default=2000, help="events of the events bench's round (2000)"
    )
    parser.add_argument("--plot", nargs="?", const=str(DEFAULT_PLOT), help=f"write the plot ({DEFAULT_PLOT})")
    parser.add_argument(
        "--steps", default="0.25,0.5,0.75,1.0,1.25", help="offered load, fractions of the max"
    )
    parser.add_argument("--step-flows", type=int, default=150, help="flows per offered-load step (150)")
    parser.add_argument("--timeout", type=float, default=900.0, help="per stage, s (900)")
    parser.add_argument("--ready-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    from bench.celery_baseline import CONCURRENCY

    args.concurrency = args.concurrency or CONCURRENCY
    args.half_flows = args.half_flows or min(args.flows, 1000)
    args.steps = [float(x) for x in args.steps.split(",") if x.strip()]
    kinds = args.mix.split(",")
    if args.flows < 3 or args.chunk < 1 or not set(kinds) <= set(data.KINDS) or not kinds:
        parser.error(f"--flows at least 3, --chunk at least 1, --mix of {', '.join(data.KINDS)}")

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally that stops the servers

    signal.signal(signal.SIGTERM, terminate)
    from kombu.exceptions import OperationalError

    try:
        import django

        django.setup()
        from bench.events import ensure_database

        ensure_database()
        summary = run(args)
    except (BenchError, ClientError, OperationalError, OSError) as exc:
        log(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        return 130
    if args.plot:
        plot(summary, Path(args.plot))
    half, rss = summary["half"], summary["rss_mb"]
    print(
        f"pipeline: {summary['flows_per_s']:.1f} paid flows/s = {summary['ratio']:.4f} x the no-op "
        f"baseline ({summary['baseline_drain_per_s']:,.0f}/s; target 0.2); at half that "
        f"({half['offered_per_s']}/s) webhook -> confirmed p50 {half['latency']['p50_ms']:.0f} ms, "
        f"p99 {half['latency']['p99_ms']:.0f} ms (target 2000); RSS growth % {rss['growth_pct']} over "
        f"{summary['rss_flows']} flows after the warm-up, {rss['growth_after_first_batch_pct']} over the "
        f"{summary['rss_flows_after_first_batch']} after the first batch; events peer live "
        f"{summary['peer']['peer_live_per_s']:,.0f}/s"
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
