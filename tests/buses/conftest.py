"""Fixtures for the bus sinks: real Redis and NATS, librdkafka's mock Kafka cluster.

Each test gets its own names (a unique prefix, stream or topic) and removes what it made.
Only TEST_* variables are read: TEST_REDIS_URL (the suite's Redis database), TEST_NATS_URL,
TEST_KAFKA_BOOTSTRAP_SERVERS (a real Kafka for the one test that needs it).
"""

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import nats
import pytest
import redis
from django.conf import settings

from tests.buses.kafka_mock import MockCluster

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "consumers"
NATS_URL = os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222")


def make_batch(count: int, *, aggregates: int = 3, types=("payment.completed", "order.paid")) -> list:
    """`count` (envelope, request_id) pairs over a few aggregates of each domain, in send order."""
    batch = []
    for n in range(count):
        event_type = types[n % len(types)]
        envelope = {
            "id": str(uuid.uuid4()),
            "type": event_type,
            "version": 1,
            "occurred_at": "2026-01-01T00:00:00.000Z",
            "source": event_type.split(".")[0],
            "aggregate_id": f"{event_type.split('.')[0]}-{n % aggregates}",
            "data": {"n": n},
        }
        batch.append((envelope, f"req-{n}" if n % 2 else None))
    return batch


def ids(batch: list) -> list[str]:
    return [envelope["id"] for envelope, _ in batch]


def per_aggregate(envelopes: list[dict]) -> dict[str, list[str]]:
    """Event ids grouped by aggregate, in the order given."""
    groups: dict[str, list[str]] = {}
    for envelope in envelopes:
        groups.setdefault(envelope["aggregate_id"], []).append(envelope["id"])
    return groups


def unused_port() -> int:
    """A loopback port nothing listens on (bound and released at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_example(script: str, *args: str, timeout: float = 30) -> list[dict]:
    """Run examples/consumers/<script> to completion and return the JSON lines it printed."""
    result = subprocess.run(  # noqa: S603 - our own example, with our own arguments
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{script} exited {result.returncode}: {result.stderr[-2000:]}"
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture
def prefix() -> str:
    return f"test{uuid.uuid4().hex[:10]}.events"


@pytest.fixture
def redis_url() -> str:
    return settings.REDIS_URL


@pytest.fixture
def redis_client(redis_url, prefix):
    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    yield client
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    for key in client.scan_iter("example-*:done:*"):
        client.delete(key)
    client.close()


def nats_call(coro_fn):
    """Run `coro_fn(js)` on a fresh connection to TEST_NATS_URL (test set-up and checks)."""

    async def run():
        nc = await nats.connect(NATS_URL, connect_timeout=5)
        try:
            return await coro_fn(nc.jetstream(timeout=5))
        finally:
            await nc.close()

    return asyncio.run(run())


@pytest.fixture
def nats_stream(prefix):
    """A stream name of the test's own; the stream (if the sink made it) is deleted after."""
    name = f"TEST_{uuid.uuid4().hex[:12].upper()}"
    yield name

    async def delete(js):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)

    nats_call(delete)


@pytest.fixture
def kafka_cluster():
    with MockCluster(brokers=3) as cluster:
        yield cluster
