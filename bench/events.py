"""Event backbone throughput: events/second from commit to subscriber effect, against the peer.

    .venv/bin/python bench/events.py --events 10000 --rounds 3
    .venv/bin/python bench/events.py --events 10000 --sink rabbitmq,memory,redis,nats

The peer is what a Django team writes instead of an outbox: `transaction.on_commit(lambda:
task.delay(event))` at the publisher and a task doing the same effect (the processed-event
row in its own transaction; bench/event_subscribers.py). Project and peer are measured in
the same invocation, on the same worker, in alternating order, --rounds times; the summary
is the median of each figure and of the per-round ratios. The Celery no-op baseline
(bench/celery_baseline.py) is measured first, for context.

What runs: config.settings.bench (the test services on localhost, a database of its own,
`fulfil_bench`, created and migrated if missing, and production's connection reuse), a real
worker subprocess, prefork with as many processes as the baseline's (production's
WORKER_CONCURRENCY default, 4), consuming `events` (the relay) and `default` (the project's
subscriber task and the peer's task). The project's subscriber, bench.stock_low, listens to
`stock.low`.

Two figures per side:
  drain: N events are committed (in transactions of --per-commit events) while the worker
    holds back the first hop (the project: the relay's `events` queue; the peer: its tasks'
    `default` queue); then the consumer is added and the clock runs until all N effects
    (ProcessedEvent rows) are committed.
  live: N more events are committed by --publishers threads while the worker runs; the
    clock runs from the first commit to the last effect (publishing shares the machine's cores).
Completion: a COUNT of the side's ProcessedEvent rows, polled every 0.1 s.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.bench")
os.environ["DJANGO_READ_DOT_ENV"] = "0"

from bench.celery_baseline import BenchError, Worker, hard_deadline, measure_baseline  # noqa: E402


def log(message: str) -> None:
    print(f"[events] {message}", file=sys.stderr, flush=True)


def ensure_database() -> None:
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    admin = f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/postgres"
    name = db["NAME"]
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    from django.core.management import call_command

    call_command("migrate", verbosity=0, run_syncdb=True)


def stock_low(n: int) -> dict:
    """The data of the n-th stock.low, as its schema (orders/event_schemas.py) wants it."""
    return {
        "variant_id": n % 997,
        "sku": f"SKU-{n % 997}",
        "product_id": n % 97,
        "available": 2,
        "threshold": 5,
    }


def publish(count: int, per_commit: int, start: int = 0) -> None:
    """The project: each event written to the outbox in the publisher's transaction."""
    from django.db import transaction

    from bench.event_subscribers import BENCH_EVENT
    from core import events

    for first in range(start, start + count, per_commit):
        with transaction.atomic():
            for n in range(first, min(first + per_commit, start + count)):
                events.publish(BENCH_EVENT, stock_low(n))


def publish_peer(count: int, per_commit: int, start: int = 0) -> None:
    """The peer: `transaction.on_commit(lambda: task.delay(event))`, nothing written."""
    from django.db import transaction

    from bench.event_subscribers import BENCH_EVENT, peer_stock_low

    for first in range(start, start + count, per_commit):
        with transaction.atomic():
            for n in range(first, min(first + per_commit, start + count)):
                envelope = {
                    "id": str(uuid.uuid4()),
                    "type": BENCH_EVENT,
                    "data": stock_low(n),
                }
                transaction.on_commit(functools.partial(peer_stock_low.delay, envelope))


def effects(subscriber: str) -> int:
    from core.models import ProcessedEvent

    return ProcessedEvent.objects.filter(subscriber=subscriber).count()


def wait_effects(subscriber: str, target: int, timeout: float, worker: Worker) -> float:
    deadline = time.monotonic() + timeout
    while (done := effects(subscriber)) < target:
        worker.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"only {done} of {target} effects after {timeout:.0f} s\n{worker.log_tail()}")
        time.sleep(0.1)
    return time.monotonic()


def measure(side: str, worker: Worker, n: int, *, per_commit: int, publishers: int, timeout: float) -> dict:
    """One side's drain and live figures on the running worker."""
    from django.db import connection

    from bench.event_subscribers import BENCH_SUBSCRIBER, PEER_SUBSCRIBER
    from core.models import OutboxEvent, ProcessedEvent

    # The project's drain holds back the relay (events); the peer's, its tasks (default).
    publish_side, subscriber, held = {
        "project": (publish, BENCH_SUBSCRIBER, "events"),
        "peer": (publish_peer, PEER_SUBSCRIBER, "default"),
    }[side]
    OutboxEvent.objects.all().delete()
    ProcessedEvent.objects.filter(subscriber=subscriber).delete()

    worker.control("cancel_consumer", queue=held)
    t0 = time.monotonic()
    publish_side(n, per_commit)
    commit_s = time.monotonic() - t0
    connection.close()
    t0 = time.monotonic()
    worker.control("add_consumer", queue=held)
    drain_s = wait_effects(subscriber, n, timeout, worker) - t0

    per_thread = n // publishers
    threads = [
        threading.Thread(target=publish_side, args=(per_thread, per_commit, n + i * per_thread))
        for i in range(publishers)
    ]
    t0 = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    live_s = wait_effects(subscriber, n + per_thread * publishers, timeout, worker) - t0
    result = {
        "side": side,
        "commit_per_s": round(n / commit_s, 1),
        "drain_per_s": round(n / drain_s, 1),
        "live_per_s": round(per_thread * publishers / live_s, 1),
    }
    log(f"{side}: drain {result['drain_per_s']:,.0f}/s, live {result['live_per_s']:,.0f}/s")
    return result


def measure_events(n: int, *, rounds: int, per_commit: int, publishers: int, timeout: float) -> list[dict]:
    """`rounds` rounds, each measuring the project and the peer (alternating which goes first)."""
    import django

    django.setup()
    ensure_database()
    from bench.event_subscribers import app
    from core.models import DeadLetter, OutboxEvent

    DeadLetter.objects.all().delete()
    app.control.purge()
    worker = Worker(app, "events", module="bench.event_subscribers")
    worker.command[worker.command.index("-Q") + 1] = "events,default"
    worker.start()
    results = []
    try:
        worker.wait_ready(60)
        for round_ in range(rounds):
            order = ("project", "peer") if round_ % 2 == 0 else ("peer", "project")
            pair = {
                side: measure(side, worker, n, per_commit=per_commit, publishers=publishers, timeout=timeout)
                for side in order
            }
            results.append(pair)
        unpublished = OutboxEvent.objects.filter(published_at__isnull=True).count()
        dead = DeadLetter.objects.count()
    finally:
        worker.stop()
        worker.remove_log()
    if unpublished or dead:
        raise BenchError(f"{unpublished} events unpublished and {dead} dead letters after the run")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of project and peer (default 3)")
    parser.add_argument("--per-commit", type=int, default=10, help="events per transaction (default 10)")
    parser.add_argument("--publishers", type=int, default=2, help="publishing threads in the live run")
    parser.add_argument("--baseline-tasks", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument(
        "--task-per-subscriber",
        action="store_true",
        help="the project with EVENTS_CONSUMER off: the relay sends a Celery task per subscriber "
        "(the embedded broker's fallback); default: events consumed inside the worker",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="the project's subscriber declares batch=N: up to N events per transaction (default 1)",
    )
    parser.add_argument(
        "--sink",
        help="instead of the peer: events/s to each of these buses, comma-separated "
        "(rabbitmq, memory, redis, nats), against the baseline (bench/event_buses.py)",
    )
    args = parser.parse_args(argv)
    # Before Django reads its settings, here and in the worker it starts.
    os.environ["TEST_EVENTS_CONSUMER"] = "0" if args.task_per_subscriber else "1"
    os.environ["BENCH_SUBSCRIBER_BATCH"] = str(args.batch)

    baseline = measure_baseline(args.baseline_tasks)
    log(f"baseline: {baseline['drain_per_s']:,.0f} no-op tasks/s")
    if args.sink:
        return report_sinks(args, baseline)
    with hard_deadline((args.timeout * 3 + 120) * args.rounds, "events bench"):
        rounds = measure_events(
            args.events,
            rounds=args.rounds,
            per_commit=args.per_commit,
            publishers=args.publishers,
            timeout=args.timeout,
        )
    summary: dict = {
        "bench": "events",
        "events_consumer": not args.task_per_subscriber,
        "subscriber_batch": args.batch,
        "events": args.events,
        "per_commit": args.per_commit,
        "publishers": args.publishers,
        "baseline_drain_per_s": baseline["drain_per_s"],
        "rounds": rounds,
    }
    for figure in ("drain", "live"):
        for side in ("project", "peer"):
            summary[f"{side}_{figure}_per_s"] = statistics.median(r[side][f"{figure}_per_s"] for r in rounds)
        summary[f"{figure}_vs_peer"] = statistics.median(
            round(r["project"][f"{figure}_per_s"] / r["peer"][f"{figure}_per_s"], 3) for r in rounds
        )
    for i, r in enumerate(rounds, 1):
        project, peer = r["project"], r["peer"]
        print(
            f"round {i}: project drain {project['drain_per_s']:,.0f}/s live {project['live_per_s']:,.0f}/s; "
            f"peer drain {peer['drain_per_s']:,.0f}/s live {peer['live_per_s']:,.0f}/s; "
            f"drain {project['drain_per_s'] / peer['drain_per_s']:.2f} x peer, "
            f"live {project['live_per_s'] / peer['live_per_s']:.2f} x peer"
        )
    print(
        f"events (median of {len(rounds)}): drain {summary['project_drain_per_s']:,.0f}/s = "
        f"{summary['drain_vs_peer']:.2f} x peer ({summary['peer_drain_per_s']:,.0f}/s), live "
        f"{summary['project_live_per_s']:,.0f}/s = {summary['live_vs_peer']:.2f} x peer "
        f"({summary['peer_live_per_s']:,.0f}/s); baseline {baseline['drain_per_s']:,.0f} no-op tasks/s"
    )
    print(json.dumps(summary))
    return 0


def report_sinks(args: argparse.Namespace, baseline: dict) -> int:
    from bench import event_buses

    event_buses.prepare_environment()
    names = [name.strip() for name in args.sink.split(",") if name.strip()]
    with hard_deadline((args.timeout + 120) * len(names), "events --sink bench"):
        results = event_buses.measure_sinks(
            names, args.events, per_commit=args.per_commit, timeout=args.timeout
        )
    for result in results:
        result["vs_baseline"] = round(result["per_s"] / baseline["drain_per_s"], 3)
        print(
            f"{result['sink']}: {result['per_s']:,.0f} events/s = {result['vs_baseline']:.2f} x the "
            f"baseline ({baseline['drain_per_s']:,.0f} no-op tasks/s)"
        )
    summary = {"bench": "events --sink", "baseline_drain_per_s": baseline["drain_per_s"], "sinks": results}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
