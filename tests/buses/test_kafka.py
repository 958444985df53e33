"""Kafka sink against librdkafka's mock cluster (3 brokers on loopback, in this process).

One test runs against a real Kafka when TEST_KAFKA_BOOTSTRAP_SERVERS is set.
"""

import os
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from core.events.buses import SinkUnavailable
from core.events.buses.kafka import KafkaSink
from tests.buses.conftest import ids, make_batch, per_aggregate, run_example, unused_port

PARTITIONS = 4


def topics(prefix: str) -> list[str]:
    return [f"{prefix}.payment", f"{prefix}.order"]


def consume(bootstrap: str, names: list[str], count: int, timeout: float = 15) -> list:
    """Read `count` records (or all there are within `timeout`) from every partition of `names`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4()}"})
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in names for p in range(PARTITIONS)])
    records, deadline = [], time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                records.append(msg)
    finally:
        consumer.close()
    return records


def event_ids(records) -> list[str]:
    return [dict(r.headers())["event_id"].decode() for r in records]


def per_key(records) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for record in records:
        groups.setdefault(record.key().decode(), []).append(dict(record.headers())["event_id"].decode())
    return groups


@pytest.fixture
def mock(kafka_cluster, prefix):
    for topic in topics(prefix):
        kafka_cluster.create_topic(topic, PARTITIONS)
    return kafka_cluster


def sink_for(bootstrap: str, prefix: str) -> KafkaSink:
    return KafkaSink("kafka", {"BOOTSTRAP_SERVERS": bootstrap, "PREFIX": prefix})


def test_a_batch_arrives_keyed_by_aggregate_in_order_with_its_headers(mock, prefix):
    batch = make_batch(20)
    sink = sink_for(mock.bootstrap_servers, prefix)
    try:
        sink.send(batch, timeout=10)
    finally:
        sink.close()

    records = consume(mock.bootstrap_servers, topics(prefix), 20)
    assert sorted(event_ids(records)) == sorted(ids(batch))
    assert per_key(records) == per_aggregate([e for e, _ in batch])
    sent = {envelope["id"]: (envelope, request_id) for envelope, request_id in batch}
    for record in records:
        headers = {k: v.decode() for k, v in record.headers()}
        envelope, request_id = sent[headers["event_id"]]
        assert record.topic() == f"{prefix}.{envelope['type'].split('.')[0]}"
        assert headers["event_type"] == envelope["type"]
        assert headers.get("request_id") == request_id


def test_the_example_consumer_group_receives_exactly_what_was_sent(mock, prefix):
    batch = make_batch(20)
    sink = sink_for(mock.bootstrap_servers, prefix)
    try:
        sink.send(batch, timeout=10)
        sink.send(batch[:5], timeout=10)  # a re-sent prefix: the consumer skips it by event id
    finally:
        sink.close()
    topic_args = [arg for topic in topics(prefix) for arg in ("--topic", topic)]
    args = ["--bootstrap-servers", mock.bootstrap_servers, *topic_args, "--group", "example"]
    got = run_example("kafka.py", *args, "--count", "20", "--timeout", "30", timeout=40)
    assert sorted(line["id"] for line in got) == sorted(ids(batch))
    by_id = {envelope["id"]: envelope for envelope, _ in batch}
    assert all(line["key"] == by_id[line["id"]]["aggregate_id"] for line in got)
    assert per_aggregate([by_id[line["id"]] for line in got]) == per_aggregate([e for e, _ in batch])


def test_send_returns_only_after_every_delivery_report(mock, prefix):
    batch = make_batch(10)
    sink = sink_for(mock.bootstrap_servers, prefix)
    try:
        sink.send(make_batch(1), timeout=10)  # connected, metadata known
        mock.set_rtt(400)
        started = time.monotonic()
        sink.send(batch, timeout=10)
        assert time.monotonic() - started >= 0.4  # it waited for the brokers' slow acks
    finally:
        mock.set_rtt(0)
        sink.close()
    assert set(ids(batch)) <= set(event_ids(consume(mock.bootstrap_servers, topics(prefix), 11)))


def test_a_broker_error_fails_the_batch_then_the_same_batch_arrives(mock, prefix):
    batch = make_batch(8)
    sink = sink_for(mock.bootstrap_servers, prefix)
    try:
        mock.fail_produce_requests(20)
        with pytest.raises(
            SinkUnavailable, match=r"8 of 8 events not acknowledged; first error: .*AUTHORIZATION"
        ):
            sink.send(batch, timeout=10)
        mock.clear_produce_errors()
        sink.send(batch, timeout=10)
    finally:
        sink.close()
    records = consume(mock.bootstrap_servers, topics(prefix), 8)
    assert sorted(event_ids(records)) == sorted(ids(batch))
    assert per_key(records) == per_aggregate([e for e, _ in batch])


def test_brokers_too_slow_to_ack_fail_the_batch_within_the_timeout(mock, prefix):
    batch = make_batch(8)
    sink = sink_for(mock.bootstrap_servers, prefix)
    try:
        sink.send(make_batch(1), timeout=10)
        mock.set_rtt(3000)
        started = time.monotonic()
        with pytest.raises(SinkUnavailable, match="no delivery report within 1"):
            sink.send(batch, timeout=1)
        assert time.monotonic() - started < 1.5
        mock.set_rtt(0)
        sink.send(batch, timeout=10)  # a new producer: nothing of the failed batch comes late
    finally:
        sink.close()
    records = [r for r in consume(mock.bootstrap_servers, topics(prefix), 20, timeout=5) if r.key()]
    got = event_ids(records)
    assert set(got) >= set(ids(batch))
    for key, sent in per_aggregate([e for e, _ in batch]).items():
        received = per_key(records).get(key, [])
        assert received[-len(sent) :] == sent  # whatever came first, the re-sent batch ends in order


def test_unreachable_kafka_fails_within_the_timeout(prefix):
    started = time.monotonic()
    sink = sink_for(f"127.0.0.1:{unused_port()}", prefix)
    with pytest.raises(SinkUnavailable, match="no delivery report within 2"):
        sink.send(make_batch(3), timeout=2)
    assert time.monotonic() - started < 2.5
    sink.close()


@pytest.mark.skipif(
    not os.environ.get("TEST_KAFKA_BOOTSTRAP_SERVERS"), reason="TEST_KAFKA_BOOTSTRAP_SERVERS not set"
)
def test_a_real_kafka_receives_the_batch_in_order_per_aggregate(prefix):
    bootstrap = os.environ["TEST_KAFKA_BOOTSTRAP_SERVERS"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics(prefix)]).values():
        future.result(30)
    batch = make_batch(20)
    sink = sink_for(bootstrap, prefix)
    try:
        sink.send(batch, timeout=30)
        records = consume(bootstrap, topics(prefix), 20, timeout=30)
        assert sorted(event_ids(records)) == sorted(ids(batch))
        assert per_key(records) == per_aggregate([e for e, _ in batch])
    finally:
        sink.close()
        for future in admin.delete_topics(topics(prefix)).values():
            future.result(30)
