"""Kafka: an idempotent producer (acks=all), the batch produced then flushed, every report checked."""

from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from core.events.buses.base import (
    DEFAULT_PREFIX,
    Batch,
    Options,
    PerProcess,
    SinkUnavailable,
    domain_of,
    dumps,
)
from core.logging import REQUEST_ID_HEADER

TOPIC_MODES = ("per_domain", "single")
# Set by the sink for its guarantees; CONFIG may not change them.
FIXED_CONFIG = ("bootstrap.servers", "enable.idempotence", "acks", "request.required.acks")
CONFIG_VALUE_TYPES = (str, int, float, bool)


class KafkaSink:
    """Each event is a record of the topic `<PREFIX>.<domain>` (TOPIC=per_domain, the default;
    `fulfil.events.payment` for `payment.completed`) or `<PREFIX>` (TOPIC=single), keyed by
    the envelope's aggregate_id (no key when it has none), with the JSON envelope as value
    and the headers event_id, event_type, event_version and request_id (when there is one).
    Topics are not created by the sink: create them, or let the brokers auto-create them.

    Delivered: the delivery report of every record of the batch arrived without an error
    within the timeout. With acks=all that means the partition leader wrote it and every
    in-sync replica has it (at least the topic's min.insync.replicas).

    Order: records of one aggregate go to one partition, and the idempotent producer keeps
    their order there even through its own retries. A batch that fails is purged from the
    producer, which is then dropped, so nothing of it is delivered late behind a re-sent
    batch; records it had delivered are delivered again by the re-send (dedupe on event_id).
    CONFIG passes further librdkafka settings (security, linger.ms, compression.type, ...).
    """

    def __init__(self, name: str, options: dict[str, Any]):
        opts = Options(
            name,
            options,
            {
                "BOOTSTRAP_SERVERS": (str, Options.REQUIRED),
                "PREFIX": (str, DEFAULT_PREFIX),
                "TOPIC": (str, "per_domain"),
                "CONFIG": (dict, {}),
            },
        )
        self.name = name
        self.bootstrap_servers = _bootstrap_servers(opts)
        self.prefix = opts.name_token("PREFIX")
        self.mode = opts.choice("TOPIC", TOPIC_MODES)
        self.config = _extra_config(opts)
        self._config_error = opts.error
        self._producer = PerProcess()

    def topic_for(self, event_type: str) -> str:
        return self.prefix if self.mode == "single" else f"{self.prefix}.{domain_of(event_type)}"

    def send(self, batch: Batch, *, timeout: float) -> None:
        if not batch:
            return
        producer = self._connect()
        reports: list[KafkaError | bool | None] = [None] * len(batch)
        try:
            for position, (envelope, request_id) in enumerate(batch):
                producer.produce(
                    self.topic_for(envelope["type"]),
                    value=dumps(envelope).encode(),
                    key=(envelope.get("aggregate_id") or None),
                    headers=_headers(envelope, request_id),
                    on_delivery=_recorder(reports, position),
                )
            producer.flush(timeout)
        except (KafkaException, BufferError) as exc:
            self.close()
            raise SinkUnavailable(f"kafka {self.name!r}: cannot produce: {exc}") from exc
        failed = [report for report in reports if report is not True]
        if failed:
            self.close()
            errors = [report for report in failed if isinstance(report, KafkaError)]
            reason = f"first error: {errors[0]}" if errors else f"no delivery report within {timeout}s"
            raise SinkUnavailable(
                f"kafka {self.name!r}: {len(failed)} of {len(batch)} events not acknowledged; {reason}"
            )

    def close(self) -> None:
        """Purge what is still queued or in flight, so nothing of a failed batch arrives later."""
        producer = self._producer.take()
        if producer is not None:
            producer.purge()
            producer.flush(0)

    def _connect(self) -> Producer:
        producer = self._producer.current()
        if producer is not None:
            return producer
        config = {
            "client.id": f"fulfil-{self.name}",
            **self.config,
            "bootstrap.servers": self.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
        }
        try:
            return self._producer.set(Producer(config))
        except KafkaException as exc:  # librdkafka rejects an unknown or invalid setting here
            raise self._config_error(f"librdkafka refused CONFIG: {exc}") from exc


def _recorder(reports: list, position: int):
    def on_delivery(err: KafkaError | None, msg) -> None:
        reports[position] = err or True

    return on_delivery


def _headers(envelope: dict[str, Any], request_id: str | None) -> list[tuple[str, bytes]]:
    headers = [
        ("event_id", envelope["id"].encode()),
        ("event_type", envelope["type"].encode()),
        ("event_version", str(envelope["version"]).encode()),
    ]
    if request_id:
        headers.append((REQUEST_ID_HEADER, request_id.encode()))
    return headers


def _bootstrap_servers(opts: Options) -> str:
    """`host:port[,host:port...]`, every port a number."""
    value = opts["BOOTSTRAP_SERVERS"]
    for server in value.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise opts.error(f"option BOOTSTRAP_SERVERS must be host:port[,host:port...], not {value!r}")
    return value


def _extra_config(opts: Options) -> dict[str, Any]:
    config = opts["CONFIG"]
    for key, value in config.items():
        if not isinstance(key, str) or not isinstance(value, CONFIG_VALUE_TYPES):
            raise opts.error(
                f"option CONFIG must map librdkafka setting names to str/int/float/bool: {key!r}"
            )
        if key in FIXED_CONFIG:
            raise opts.error(
                f"option CONFIG may not set {key!r}: the sink sets {', '.join(FIXED_CONFIG[:3])}"
            )
    return dict(config)
