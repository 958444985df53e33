"""NATS JetStream sink against the real server (TEST_NATS_URL), a stream of each test's own."""

import os
import time

import pytest

from core.events.buses import SinkUnavailable
from core.events.buses.nats import NatsJetStreamSink
from tests.buses.conftest import NATS_URL, ids, make_batch, nats_call, per_aggregate, run_example, unused_port


def sink_for(prefix: str, stream: str, url: str = NATS_URL) -> NatsJetStreamSink:
    return NatsJetStreamSink("nats", {"URL": url, "PREFIX": prefix, "STREAM_NAME": stream})


def stored(stream: str) -> list:
    """Every message of the stream, in stream order."""

    async def read(js):
        info = await js.stream_info(stream)
        return [await js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]

    return nats_call(read)


def test_the_stream_is_made_and_a_batch_is_stored_in_order_with_its_headers(prefix, nats_stream):
    batch = make_batch(20)
    sink = sink_for(prefix, nats_stream)
    try:
        sink.send(batch, timeout=5)
    finally:
        sink.close()

    info = nats_call(lambda js: js.stream_info(nats_stream))
    assert info.config.subjects == [f"{prefix}.>"]
    assert info.config.duplicate_window == 120
    messages = stored(nats_stream)
    assert [m.headers["Nats-Msg-Id"] for m in messages] == ids(batch)
    for message, (envelope, request_id) in zip(messages, batch, strict=True):
        assert message.subject == f"{prefix}.{envelope['type']}"
        assert message.headers["event_type"] == envelope["type"]
        assert message.headers.get("request_id") == request_id


def test_the_example_durable_consumer_receives_exactly_what_was_sent(prefix, nats_stream):
    batch = make_batch(20)
    sink = sink_for(prefix, nats_stream)
    try:
        sink.send(batch, timeout=5)
    finally:
        sink.close()
    args = ["--url", NATS_URL, "--stream", nats_stream, "--subject", f"{prefix}.>", "--durable", "example"]
    got = run_example("nats_jetstream.py", *args, "--count", "20", "--timeout", "20")
    assert [line["id"] for line in got] == ids(batch)
    by_id = {envelope["id"]: envelope for envelope, _ in batch}
    assert per_aggregate([by_id[line["id"]] for line in got]) == per_aggregate([e for e, _ in batch])


def test_sending_a_batch_twice_stores_each_event_once(prefix, nats_stream):
    batch = make_batch(10)
    sink = sink_for(prefix, nats_stream)
    try:
        sink.send(batch[:4], timeout=5)
        sink.send(batch, timeout=5)  # the relay's re-send after a failure: the prefix again
        sink.send(batch, timeout=5)
    finally:
        sink.close()
    assert [m.headers["Nats-Msg-Id"] for m in stored(nats_stream)] == ids(batch)


def test_unreachable_nats_fails_within_the_timeout_then_the_same_batch_arrives(prefix, nats_stream):
    batch = make_batch(6)
    started = time.monotonic()
    with pytest.raises(SinkUnavailable, match="nats 'nats'"):
        sink_for(prefix, nats_stream, url=f"nats://127.0.0.1:{unused_port()}").send(batch, timeout=2)
    assert time.monotonic() - started < 2.5

    sink = sink_for(prefix, nats_stream)
    try:
        sink.send(batch, timeout=5)
    finally:
        sink.close()
    assert [m.headers["Nats-Msg-Id"] for m in stored(nats_stream)] == ids(batch)


def test_a_subject_no_stream_captures_fails_the_batch(prefix, nats_stream):
    nats_call(lambda js: js.add_stream(name=nats_stream, subjects=[f"{prefix}.order.>"]))
    sink = sink_for(prefix, nats_stream)  # the stream exists: the sink leaves it as it is
    try:
        with pytest.raises(SinkUnavailable, match="NoStreamResponseError"):
            sink.send(make_batch(2), timeout=3)  # order.paid is captured, payment.completed is not
    finally:
        sink.close()


def test_a_forked_child_runs_its_own_loop_and_connection(prefix, nats_stream):
    sink = sink_for(prefix, nats_stream)
    first, second, third = make_batch(2), make_batch(2), make_batch(2)
    sink.send(first, timeout=5)
    pid = os.fork()
    if pid == 0:  # the parent's loop thread did not survive the fork: the child starts its own
        try:
            sink.send(second, timeout=5)
            sink.close()
            os._exit(0)
        except BaseException:  # noqa: BLE001 - a forked child must never return into pytest
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    try:
        sink.send(third, timeout=5)
    finally:
        sink.close()
    assert [m.headers["Nats-Msg-Id"] for m in stored(nats_stream)] == ids(first + second + third)
