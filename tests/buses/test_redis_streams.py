"""Redis Streams sink against the real Redis (the suite's TEST_REDIS_URL database)."""

import json
import os
import time

import pytest
from redis.connection import parse_url

from core.events.buses import SinkUnavailable
from core.events.buses.redis_streams import RedisStreamsSink
from tests.buses.conftest import ids, make_batch, per_aggregate, run_example, unused_port


def read_stream(client, stream: str) -> list[dict]:
    return [fields for _, fields in client.xrange(stream)]


def test_a_batch_arrives_whole_in_order_per_domain_with_its_fields(redis_client, redis_url, prefix):
    batch = make_batch(20)
    RedisStreamsSink("redis", {"URL": redis_url, "PREFIX": prefix}).send(batch, timeout=5)

    for domain, event_type in (("payment", "payment.completed"), ("order", "order.paid")):
        entries = read_stream(redis_client, f"{prefix}.{domain}")
        sent = [(e, r) for e, r in batch if e["type"] == event_type]
        assert [f["id"] for f in entries] == ids(sent)
        for fields, (envelope, request_id) in zip(entries, sent, strict=True):
            assert json.loads(fields["envelope"]) == envelope
            assert fields["type"] == event_type
            assert fields["aggregate_id"] == envelope["aggregate_id"]
            assert fields.get("request_id") == request_id


def test_single_stream_keeps_the_whole_batch_in_order(redis_client, redis_url, prefix):
    batch = make_batch(10)
    RedisStreamsSink("redis", {"URL": redis_url, "PREFIX": prefix, "STREAM": "single"}).send(batch, timeout=5)
    assert [f["id"] for f in read_stream(redis_client, prefix)] == ids(batch)


def test_the_example_consumer_group_receives_exactly_what_was_sent_once(redis_client, redis_url, prefix):
    batch = make_batch(20)
    sink = RedisStreamsSink("redis", {"URL": redis_url, "PREFIX": prefix})
    sink.send(batch, timeout=5)
    sink.send(batch[:7], timeout=5)  # a re-sent prefix, as after a failed batch: deduped by event id
    streams = ["--stream", f"{prefix}.payment", "--stream", f"{prefix}.order"]
    group = f"example-{prefix}"
    args = [
        "--url",
        redis_url,
        *streams,
        "--group",
        group,
        "--from-start",
        "--count",
        "20",
        "--timeout",
        "20",
    ]
    got = run_example("redis_streams.py", *args)
    assert sorted(line["id"] for line in got) == sorted(ids(batch))
    by_id = {envelope["id"]: envelope for envelope, _ in batch}
    assert per_aggregate([by_id[line["id"]] for line in got]) == per_aggregate([e for e, _ in batch])
    assert redis_client.xpending(f"{prefix}.payment", group)["pending"] == 0  # all acknowledged


def test_unreachable_redis_fails_within_the_timeout_then_the_same_batch_arrives(
    redis_client, redis_url, prefix
):
    batch = make_batch(6)
    wrong = f"redis://127.0.0.1:{unused_port()}/{parse_url(redis_url).get('db', 0)}"
    started = time.monotonic()
    with pytest.raises(SinkUnavailable, match="redis 'redis': ConnectionError"):
        RedisStreamsSink("redis", {"URL": wrong, "PREFIX": prefix}).send(batch, timeout=2)
    assert time.monotonic() - started < 2.5
    assert not list(redis_client.scan_iter(f"{prefix}*"))

    RedisStreamsSink("redis", {"URL": redis_url, "PREFIX": prefix, "STREAM": "single"}).send(batch, timeout=5)
    assert [f["id"] for f in read_stream(redis_client, prefix)] == ids(batch)


def test_a_refused_entry_fails_the_batch(redis_client, redis_url, prefix):
    redis_client.set(f"{prefix}.order", "not a stream")
    with pytest.raises(SinkUnavailable, match="refused 1 of 2 events: WRONGTYPE"):
        RedisStreamsSink("redis", {"URL": redis_url, "PREFIX": prefix}).send(make_batch(2), timeout=5)


def test_a_forked_child_opens_its_own_connection(redis_client, redis_url, prefix):
    sink = RedisStreamsSink("redis", {"URL": redis_url, "PREFIX": prefix, "STREAM": "single"})
    first, second, third = make_batch(2), make_batch(2), make_batch(2)
    sink.send(first, timeout=5)
    parent_client = sink._client.current()
    pid = os.fork()
    if pid == 0:  # the child: send with the inherited sink, on a connection of its own
        try:
            sink.send(second, timeout=5)
            os._exit(0 if sink._client.current() is not parent_client else 2)
        except BaseException:  # noqa: BLE001 - a forked child must never return into pytest
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    sink.send(third, timeout=5)  # the parent's connection still works
    assert sink._client.current() is parent_client
    assert [f["id"] for f in read_stream(redis_client, prefix)] == ids(first + second + third)
