"""Event backbone throughput: events/second from commit to subscriber effect.

    .venv/bin/python bench/events.py --events 10000

Reported as a ratio against bench/celery_baseline.py (bare no-op tasks drained by the same
kind of worker) measured first, in the same invocation.

What runs: config.settings.bench (the test services on localhost, a database of its own,
`fulfil_bench`, created and migrated if missing, and production's connection reuse), a real
worker subprocess, prefork with as many processes as the baseline's (production's
WORKER_CONCURRENCY default, 4), consuming `events` (the relay) and `default` (the
subscriber). One subscriber, bench.stock_low, listens to `stock.low`.

Two figures:
  drain: N events are committed (in transactions of --per-commit events) while the worker
    does not consume `events`; then the consumer is added and the clock runs until all N
    subscriber effects (ProcessedEvent rows) are committed. Relay + exchange + subscriber
    task + effect: the backbone alone, comparable with the baseline's drain.
  live: N more events are committed by --publishers threads while the worker runs; the
    clock runs from the first commit to the last effect (publishing shares the machine's cores).
Completion: a COUNT of the subscriber's ProcessedEvent rows, polled every 0.1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
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


def publish(count: int, per_commit: int, start: int = 0) -> None:
    from django.db import transaction

    from bench.event_subscribers import BENCH_EVENT
    from core import events

    for first in range(start, start + count, per_commit):
        with transaction.atomic():
            for n in range(first, min(first + per_commit, start + count)):
                events.publish(BENCH_EVENT, {"variant_id": n % 997, "n": n})


def effects() -> int:
    from bench.event_subscribers import BENCH_SUBSCRIBER
    from core.models import ProcessedEvent

    return ProcessedEvent.objects.filter(subscriber=BENCH_SUBSCRIBER).count()


def wait_effects(target: int, timeout: float, worker: Worker) -> float:
    deadline = time.monotonic() + timeout
    while (done := effects()) < target:
        worker.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"only {done} of {target} effects after {timeout:.0f} s\n{worker.log_tail()}")
        time.sleep(0.1)
    return time.monotonic()


def measure_events(n: int, *, per_commit: int, publishers: int, timeout: float) -> dict:
    import django

    django.setup()
    ensure_database()
    from django.db import connection

    from bench.event_subscribers import app
    from core.models import DeadLetter, OutboxEvent, ProcessedEvent

    OutboxEvent.objects.all().delete()
    ProcessedEvent.objects.all().delete()
    DeadLetter.objects.all().delete()
    app.control.purge()
    worker = Worker(app, "events", module="bench.event_subscribers")
    worker.command[worker.command.index("-Q") + 1] = "events,default"
    worker.start()
    try:
        worker.wait_ready(60)
        # Drain: commit everything with the relay's queue not consumed, then let it go.
        worker.control("cancel_consumer")
        t0 = time.monotonic()
        publish(n, per_commit)
        commit_s = time.monotonic() - t0
        connection.close()
        log(f"committed {n} events in {commit_s:.2f} s; draining")
        t0 = time.monotonic()
        worker.control("add_consumer")
        drain_s = wait_effects(n, timeout, worker) - t0
        log(f"drain: {n} effects in {drain_s:.2f} s")

        # Live: several publishers commit while the worker relays and runs the subscriber.
        per_thread = n // publishers
        threads = [
            threading.Thread(target=publish, args=(per_thread, per_commit, n + i * per_thread))
            for i in range(publishers)
        ]
        t0 = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        live_s = wait_effects(n + per_thread * publishers, timeout, worker) - t0
        log(f"live: {per_thread * publishers} events committed and handled in {live_s:.2f} s")
        unpublished = OutboxEvent.objects.filter(published_at__isnull=True).count()
        dead = DeadLetter.objects.count()
    finally:
        worker.stop()
        worker.remove_log()
    if unpublished or dead:
        raise BenchError(f"{unpublished} events unpublished and {dead} dead letters after the run")
    return {
        "events": n,
        "per_commit": per_commit,
        "commit_per_s": round(n / commit_s, 1),
        "drain_per_s": round(n / drain_s, 1),
        "live_per_s": round(per_thread * publishers / live_s, 1),
        "publishers": publishers,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--per-commit", type=int, default=10, help="events per transaction (default 10)")
    parser.add_argument("--publishers", type=int, default=2, help="publishing threads in the live run")
    parser.add_argument("--baseline-tasks", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)

    baseline = measure_baseline(args.baseline_tasks)
    log(f"baseline: {baseline['drain_per_s']:,.0f} no-op tasks/s")
    with hard_deadline(args.timeout * 3 + 120, "events bench"):
        result = measure_events(
            args.events, per_commit=args.per_commit, publishers=args.publishers, timeout=args.timeout
        )
    base = baseline["drain_per_s"]
    result |= {
        "bench": "events",
        "baseline_drain_per_s": base,
        "drain_ratio": round(result["drain_per_s"] / base, 3),
        "live_ratio": round(result["live_per_s"] / base, 3),
    }
    print(
        f"events: drain {result['drain_per_s']:,.0f}/s = {result['drain_ratio']:.2f} x baseline, "
        f"live {result['live_per_s']:,.0f}/s = {result['live_ratio']:.2f} x baseline "
        f"(baseline {base:,.0f} no-op tasks/s)"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
