"""Event delivery per bus (`bench/events.py --sink redis,nats,rabbitmq,memory`): events/second
from commit to the bus's acknowledgement, as a ratio to the Celery no-op baseline of the same run.

For each bus, a real worker (prefork, the baseline's concurrency) consuming `events` only (the
relay and the buses' deliveries; the in-project subscriber's queue is left alone and purged):
N events are committed while the worker holds back `events`, then the clock runs from adding
that consumer until every event is published to RabbitMQ and, for another bus, until its
OutboxDelivery rows are gone (that bus acknowledged every event). `rabbitmq` is the relay
alone: the exchange every event goes to anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from bench.celery_baseline import BenchError, Worker

BUS_PREFIX = "bench.events"
NATS_STREAM = "BENCH_EVENTS"
SINKS = ("rabbitmq", "memory", "redis", "nats")


def log(message: str) -> None:
    import sys

    print(f"[events --sink] {message}", file=sys.stderr, flush=True)


def prepare_environment() -> None:
    """Before Django reads its settings: the buses' names of the bench's own."""
    os.environ["TEST_EVENTS_BUS_PREFIX"] = BUS_PREFIX
    os.environ["TEST_EVENTS_NATS_STREAM"] = NATS_STREAM


def waiting(name: str) -> int:
    from core.models import OutboxDelivery, OutboxEvent

    unpublished = OutboxEvent.objects.filter(published_at__isnull=True).count()
    return unpublished + (0 if name == "rabbitmq" else OutboxDelivery.objects.filter(sink=name).count())


def measure_sink(name: str, n: int, *, per_commit: int, timeout: float) -> dict:
    from django.db import connection

    from bench.event_subscribers import app
    from bench.events import publish
    from core.models import OutboxDelivery, OutboxEvent

    OutboxDelivery.objects.all().delete()
    OutboxEvent.objects.all().delete()
    worker = Worker(
        app,
        "events",
        module="bench.event_subscribers",
        env={"TEST_EVENTS_SINKS": "" if name == "rabbitmq" else name},
    )
    worker.start()
    try:
        worker.wait_ready(60)
        worker.control("cancel_consumer", queue="events")
        publish(n, per_commit)
        connection.close()
        t0 = time.monotonic()
        worker.control("add_consumer", queue="events")
        deadline = t0 + timeout
        while (left := waiting(name)) > 0:
            worker.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"{name}: {left} deliveries left after {timeout:.0f} s\n{worker.log_tail()}")
            time.sleep(0.1)
        seconds = time.monotonic() - t0
    finally:
        worker.stop()
        worker.remove_log()
    result = {"sink": name, "events": n, "seconds": round(seconds, 2), "per_s": round(n / seconds, 1)}
    log(f"{name}: {result['per_s']:,.0f} events/s")
    return result


def clean_up() -> None:
    """The bench's own streams on Redis and NATS, and what its subscriber's queue collected."""
    import nats
    import redis
    from django.conf import settings

    from bench.event_subscribers import app
    from core.events import consumer

    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(f"{BUS_PREFIX}*"):
        client.delete(key)
    client.close()

    async def drop_stream():
        connection = await nats.connect(os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222"))
        with contextlib.suppress(Exception):
            await connection.jetstream().delete_stream(NATS_STREAM)
        await connection.close()

    with contextlib.suppress(Exception):
        asyncio.run(drop_stream())
    with app.connection_for_write() as conn:
        for queue in consumer.topology():
            with contextlib.suppress(Exception):
                queue(conn.default_channel).purge()


def measure_sinks(names: list[str], n: int, *, per_commit: int, timeout: float) -> list[dict]:
    import django

    django.setup()
    from bench.events import ensure_database

    ensure_database()
    unknown = sorted(set(names) - set(SINKS))
    if unknown:
        raise BenchError(f"unknown bus {', '.join(unknown)}; one of {', '.join(SINKS)}")
    try:
        return [measure_sink(name, n, per_commit=per_commit, timeout=timeout) for name in names]
    finally:
        clean_up()
