"""Bad options are refused when the sink is built, with a message naming the sink and the option."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.events import buses
from core.events.buses.kafka import KafkaSink
from core.events.buses.memory import MemorySink
from core.events.buses.nats import NatsJetStreamSink
from core.events.buses.redis_streams import RedisStreamsSink

REDIS = {"URL": "redis://127.0.0.1:6379/14"}
NATS = {"URL": "nats://127.0.0.1:4222"}
KAFKA = {"BOOTSTRAP_SERVERS": "127.0.0.1:9092"}


@pytest.mark.parametrize(
    ("cls", "options", "message"),
    [
        (RedisStreamsSink, {}, "option URL is required"),
        (RedisStreamsSink, {**REDIS, "STREAMS": "single"}, "unknown option(s) STREAMS; accepted: MAXLEN"),
        (RedisStreamsSink, {"URL": "http://127.0.0.1:6379"}, "must be a redis/rediss/unix:// URL"),
        (RedisStreamsSink, {"URL": "redis://127.0.0.1:99999/0"}, "option URL is not a valid URL"),
        (RedisStreamsSink, {**REDIS, "STREAM": "per_type"}, "STREAM must be one of per_domain, single"),
        (RedisStreamsSink, {**REDIS, "MAXLEN": 0}, "MAXLEN must be positive"),
        (RedisStreamsSink, {**REDIS, "MAXLEN": "1000"}, "MAXLEN must be int, not '1000'"),
        (RedisStreamsSink, {**REDIS, "PREFIX": "fulfil..events"}, "PREFIX must be dot-separated words"),
        (NatsJetStreamSink, {"URL": "127.0.0.1:4222"}, "must be a nats/tls:// URL with a host"),
        (NatsJetStreamSink, {**NATS, "PREFIX": "fulfil.>"}, "PREFIX must be dot-separated words"),
        (NatsJetStreamSink, {**NATS, "STREAM_NAME": "fulfil.events"}, "STREAM_NAME must be a word"),
        (NatsJetStreamSink, {**NATS, "DUPLICATE_WINDOW": True}, "DUPLICATE_WINDOW must be int or float"),
        (NatsJetStreamSink, {**NATS, "TIMEOUT": 5}, "unknown option(s) TIMEOUT"),
        (KafkaSink, {}, "option BOOTSTRAP_SERVERS is required"),
        (KafkaSink, {"BOOTSTRAP_SERVERS": "kafka"}, "BOOTSTRAP_SERVERS must be host:port"),
        (KafkaSink, {"BOOTSTRAP_SERVERS": "a:9092,b:x"}, "BOOTSTRAP_SERVERS must be host:port"),
        (KafkaSink, {**KAFKA, "TOPIC": "per_type"}, "TOPIC must be one of per_domain, single"),
        (KafkaSink, {**KAFKA, "CONFIG": {"acks": "1"}}, "CONFIG may not set 'acks'"),
        (KafkaSink, {**KAFKA, "CONFIG": {"linger.ms": [5]}}, "CONFIG must map librdkafka setting names"),
        (KafkaSink, {**KAFKA, "CONFIG": "linger.ms=5"}, "option CONFIG must be dict"),
        (MemorySink, {"URL": "x"}, "unknown option(s) URL"),
    ],
)
def test_bad_options_are_refused_clearly(cls, options, message):
    with pytest.raises(ImproperlyConfigured) as raised:
        cls("bus", options)
    assert str(raised.value).startswith("event bus 'bus': ")
    assert message in str(raised.value)


def test_good_options_make_no_network_call():
    """Nothing listens on port 1: building the sinks must not try."""
    RedisStreamsSink("redis", {"URL": "redis://127.0.0.1:1/0", "STREAM": "single", "MAXLEN": 10})
    NatsJetStreamSink("nats", {"URL": "nats://127.0.0.1:1", "DUPLICATE_WINDOW": 30.5})
    KafkaSink("kafka", {"BOOTSTRAP_SERVERS": "127.0.0.1:1", "CONFIG": {"linger.ms": 1}})


def test_a_setting_librdkafka_does_not_know_is_refused_at_first_send():
    sink = KafkaSink("kafka", {"BOOTSTRAP_SERVERS": "127.0.0.1:1", "CONFIG": {"no.such.setting": 1}})
    with pytest.raises(ImproperlyConfigured, match=r"librdkafka refused CONFIG.*no\.such\.setting"):
        sink.send([({"id": "1", "type": "a.b", "version": 1}, None)], timeout=1)


def test_load_picks_the_backend_and_passes_the_other_options():
    sink = buses.load("redis", {"BACKEND": "redis_streams", **REDIS})
    assert isinstance(sink, RedisStreamsSink)
    assert sink.name == "redis"
    with pytest.raises(ImproperlyConfigured, match="option BACKEND is required"):
        buses.load("x", REDIS)
    with pytest.raises(ImproperlyConfigured, match="unknown BACKEND 'redis'"):
        buses.load("x", {"BACKEND": "redis"})
    with pytest.raises(ImproperlyConfigured, match=r"cannot import BACKEND 'no\.such\.Sink'"):
        buses.load("x", {"BACKEND": "no.such.Sink"})
