"""The relay and the other buses together (EVENTS_SINKS): what commits reaches each bus once, in
order per aggregate, at each bus's own pace; a bus that is down delays only itself.

Outside consumers are the runnable examples (examples/consumers/), in processes of their own.
"""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings

from core import events
from core.events import delivery
from core.events.buses import memory
from core.events.maintenance import events_prune
from core.events.relay import relay_run
from core.models import OutboxDelivery, OutboxEvent
from tests.buses.conftest import NATS_URL, per_aggregate, run_example, unused_port
from tests.conftest import wait_for

# Made-up order events (any_event_data): what is tested is delivery, not the orders' contract.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("any_event_data")]

REPO = Path(__file__).resolve().parents[2]


def commit_orders(count: int, *, per_commit: int = 10, aggregates: int = 7) -> list[OutboxEvent]:
    """`count` order events over a few orders, `per_commit` to a transaction."""
    published = []
    for first in range(0, count, per_commit):
        with transaction.atomic():
            for n in range(first, min(first + per_commit, count)):
                kind = "order.paid" if n % 3 == 0 else "order.created"
                published.append(events.publish(kind, {"order_id": f"O-{n % aggregates}", "n": n}))
    return published


def roll_back_one() -> None:
    """An event whose transaction rolls back: no bus may ever see it."""
    with pytest.raises(RuntimeError), transaction.atomic():
        events.publish("order.cancelled", {"order_id": "O-rolled-back"})
        raise RuntimeError("the change fails after publishing")


def relay_and_deliver(*names: str) -> None:
    assert not relay_run(force=True).failed
    for name in names:
        delivery.sink_run(name, force=True)


def expected(published: list[OutboxEvent]) -> dict[str, list[str]]:
    return per_aggregate([e.envelope for e in published])


def redis_sink(redis_url: str, prefix: str, *, port: int | None = None) -> dict:
    url = (
        redis_url
        if port is None
        else redis_url.replace(redis_url.split("//")[1].split("/")[0], f"127.0.0.1:{port}")
    )
    return {"redis": {"BACKEND": "redis_streams", "URL": url, "PREFIX": prefix, "STREAM": "single"}}


def nats_sink(prefix: str, stream: str, *, port: int | None = None) -> dict:
    url = NATS_URL if port is None else f"nats://127.0.0.1:{port}"
    return {"nats": {"BACKEND": "nats", "URL": url, "PREFIX": prefix, "STREAM_NAME": stream}}


def read_redis(redis_url: str, stream: str, count: int) -> list[dict]:
    args = ["--url", redis_url, "--stream", stream, "--group", "test", "--from-start"]
    return run_example("redis_streams.py", *args, "--count", str(count), "--timeout", "30")


def read_nats(stream: str, prefix: str, count: int) -> list[dict]:
    args = ["--url", NATS_URL, "--stream", stream, "--subject", f"{prefix}.>", "--durable", "test"]
    return run_example("nats_jetstream.py", *args, "--count", str(count), "--timeout", "30", timeout=60)


def as_envelopes(lines: list[dict], published: list[OutboxEvent]) -> list[dict]:
    by_id = {str(e.event_id): e.envelope for e in published}
    return [by_id[line["id"]] for line in lines]


class Bus:
    """One of the buses under test: its settings (reachable or not) and its outside consumer."""

    def __init__(self, name: str, redis_url: str, prefix: str, nats_stream: str):
        self.name, self.redis_url, self.prefix, self.nats_stream = name, redis_url, prefix, nats_stream

    def sinks(self, *, port: int | None = None) -> dict:
        if self.name == "redis":
            return redis_sink(self.redis_url, self.prefix, port=port)
        return nats_sink(self.prefix, self.nats_stream, port=port)

    def read(self, count: int) -> list[dict]:
        if self.name == "redis":
            return read_redis(self.redis_url, self.prefix, count)
        return read_nats(self.nats_stream, self.prefix, count)


@pytest.fixture(params=["redis", "nats"])
def bus(request, redis_url, redis_client, prefix, nats_stream) -> Bus:
    return Bus(request.param, redis_url, prefix, nats_stream)


def test_a_bus_gets_exactly_the_committed_events_in_order_per_aggregate(bus, redis_client):
    with override_settings(EVENTS_SINKS=bus.sinks()):
        published = commit_orders(40)
        roll_back_one()
        published += commit_orders(20)
        relay_and_deliver(bus.name)

        assert not OutboxDelivery.objects.exists()
        got = bus.read(len(published))
    # Exactly the committed ones (the consumer stops at their number; nothing else is stored):
    assert sorted(line["id"] for line in got) == sorted(str(e.event_id) for e in published)
    assert per_aggregate(as_envelopes(got, published)) == expected(published)
    if bus.name == "redis":
        assert redis_client.xlen(bus.prefix) == len(published)  # nothing from the rolled-back transaction
    else:
        assert [line["id"] for line in got] == [
            str(e.event_id) for e in published
        ]  # one stream: outbox order


def test_a_thousand_events_while_the_bus_is_unreachable_all_arrive_once(bus, redis_client):
    with override_settings(EVENTS_SINKS=bus.sinks(port=unused_port()), EVENTS_CONFIRM_TIMEOUT=2.0):
        published = commit_orders(1000)
        relay_and_deliver(bus.name)

        # The relay published them all (the in-project subscribers are not held back)...
        assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()
        # ...and they wait for the bus, with the attempt and its error.
        waiting = OutboxDelivery.objects.filter(sink=bus.name)
        assert waiting.count() == 1000
        first = waiting.order_by("event_id").first()
        assert first.attempts == 1 and first.last_error
        delivery.sink_run(bus.name)  # backing off: no second try yet
        assert waiting.order_by("event_id").first().attempts == 1

    with override_settings(EVENTS_SINKS=bus.sinks()):  # the bus is back
        delivery.sink_run(bus.name, force=True)
        assert not OutboxDelivery.objects.exists()
        got = bus.read(1000)
    assert sorted(line["id"] for line in got) == sorted(str(e.event_id) for e in published)
    assert per_aggregate(as_envelopes(got, published)) == expected(published)
    if bus.name == "redis":
        assert redis_client.xlen(bus.prefix) == 1000  # once each


def test_a_bus_that_is_down_delays_only_itself(celery_worker, redis_url, prefix):
    """End to end through the worker: the relay's kick, the buses' kicks."""
    sinks = {**redis_sink(redis_url, prefix, port=unused_port()), "memory": {"BACKEND": "memory"}}
    memory.take("memory")
    with override_settings(EVENTS_SINKS=sinks, EVENTS_CONFIRM_TIMEOUT=1.0):
        published = commit_orders(30)

        wait_for(lambda: len(memory.take("memory", clear=False)) == 30, what="the memory bus")
        wait_for(
            lambda: OutboxDelivery.objects.filter(sink="redis", attempts__gt=0).exists(),
            what="the redis bus's failed try",
        )
        # Every event waits for the redis bus. Not every row has been tried: the relay may
        # publish the 30 in two runs, and the second run's kick finds the bus backing off
        # (beat's sweep, not running here, tries it again).
        assert OutboxDelivery.objects.filter(sink="redis").count() == 30
        assert not OutboxDelivery.objects.filter(sink="memory").exists()
        assert [e["id"] for e, _ in memory.take("memory")] == [str(e.event_id) for e in published]
        assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()


def test_an_event_waiting_for_a_bus_is_not_pruned(settings, redis_url, prefix):
    settings.EVENTS_SINKS = redis_sink(redis_url, prefix, port=unused_port())
    settings.EVENTS_CONFIRM_TIMEOUT = 1.0
    settings.EVENTS_RETENTION_DAYS = 0
    (event,) = commit_orders(1)
    relay_and_deliver("redis")

    assert events_prune()["events"] == 0
    assert OutboxEvent.objects.filter(pk=event.pk).exists()

    settings.EVENTS_SINKS = {}
    OutboxDelivery.objects.all().delete()  # as once the bus took it
    assert events_prune()["events"] == 1


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"EVENTS_SINKS": "redis,rabbit"}, "EVENTS_SINKS names unknown buses rabbit"),
        ({"EVENTS_SINKS": "nats", "EVENTS_NATS_URL": "http://nats.example"}, "event bus 'nats'"),
        ({"EVENTS_SINKS": "kafka"}, "event bus 'kafka'"),
    ],
)
def test_a_misconfigured_bus_stops_the_process_at_start(variables, message):
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "config.settings.dev",
        "DJANGO_READ_DOT_ENV": "0",
        **variables,
    }
    result = subprocess.run(  # noqa: S603 - the project's own manage.py
        [sys.executable, str(REPO / "manage.py"), "check"],
        env=environment,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert message in result.stderr


def test_events_relay_command_delivers_to_each_bus_and_reports(settings):
    settings.EVENTS_SINKS = {"memory": {"BACKEND": "memory"}}
    memory.take("memory")
    commit_orders(3)
    out = StringIO()
    call_command("events", "relay", stdout=out)
    assert len(memory.take("memory")) == 3
    assert "memory: delivered 3; 0 waiting" in out.getvalue()
