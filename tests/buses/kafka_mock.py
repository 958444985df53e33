"""librdkafka's built-in mock Kafka cluster, driven through ctypes.

confluent-kafka ships librdkafka with its mock cluster (real brokers speaking the Kafka
protocol on loopback ports, in this process) but binds none of its controls in Python.
This calls them in the very library the extension loaded: create a cluster, read its
bootstrap servers, create topics, slow a broker down and inject request errors.
"""

import ctypes
import ctypes.util
import glob
import os

import confluent_kafka

PRODUCE_API_KEY = 0
TOPIC_AUTHORIZATION_FAILED = 29  # not retriable: the producer reports it at once


def _library() -> ctypes.CDLL:
    package = os.path.dirname(confluent_kafka.__file__)
    bundled = sorted(glob.glob(os.path.join(package, os.pardir, "confluent_kafka.libs", "librdkafka*.so*")))
    path = bundled[0] if bundled else ctypes.util.find_library("rdkafka")
    lib = ctypes.CDLL(path)
    p, i, i16, i32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int16, ctypes.c_int32
    signatures = {
        "rd_kafka_conf_new": ([], p),
        "rd_kafka_conf_set": ([p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t], i),
        "rd_kafka_new": ([i, p, ctypes.c_char_p, ctypes.c_size_t], p),
        "rd_kafka_destroy": ([p], None),
        "rd_kafka_mock_cluster_new": ([p, i], p),
        "rd_kafka_mock_cluster_destroy": ([p], None),
        "rd_kafka_mock_cluster_bootstraps": ([p], ctypes.c_char_p),
        "rd_kafka_mock_topic_create": ([p, ctypes.c_char_p, i, i], i),
        "rd_kafka_mock_broker_set_rtt": ([p, i32, i], i),
        "rd_kafka_mock_push_request_errors_array": ([p, i16, ctypes.c_size_t, ctypes.POINTER(i)], None),
        "rd_kafka_mock_clear_request_errors": ([p, i16], None),
        "rd_kafka_mock_group_initial_rebalance_delay_ms": ([p, i32], None),
    }
    for name, (argtypes, restype) in signatures.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = argtypes, restype
    return lib


class MockCluster:
    """A mock cluster of `brokers` brokers (ids 1..brokers); use as a context manager."""

    def __init__(self, brokers: int = 3):
        self.lib = _library()
        self.brokers = brokers
        errstr = ctypes.create_string_buffer(512)
        conf = self.lib.rd_kafka_conf_new()
        # The cluster's own handle connects nowhere: no warning that it has no bootstrap.servers.
        self.lib.rd_kafka_conf_set(conf, b"log_level", b"3", errstr, len(errstr))
        self._rk = self.lib.rd_kafka_new(0, conf, errstr, len(errstr))
        if not self._rk:
            raise RuntimeError(f"rd_kafka_new failed: {errstr.value.decode()}")
        self._cluster = self.lib.rd_kafka_mock_cluster_new(self._rk, brokers)
        if not self._cluster:
            self.lib.rd_kafka_destroy(self._rk)
            raise RuntimeError("rd_kafka_mock_cluster_new failed")
        self.lib.rd_kafka_mock_group_initial_rebalance_delay_ms(self._cluster, 0)
        self.bootstrap_servers = self.lib.rd_kafka_mock_cluster_bootstraps(self._cluster).decode()

    def create_topic(self, topic: str, partitions: int = 4) -> None:
        err = self.lib.rd_kafka_mock_topic_create(self._cluster, topic.encode(), partitions, self.brokers)
        assert err == 0, f"mock topic {topic}: error {err}"

    def set_rtt(self, milliseconds: int) -> None:
        """Every broker answers `milliseconds` late."""
        for broker in range(1, self.brokers + 1):
            self.lib.rd_kafka_mock_broker_set_rtt(self._cluster, broker, milliseconds)

    def fail_produce_requests(self, count: int, error: int = TOPIC_AUTHORIZATION_FAILED) -> None:
        """The next `count` Produce requests, to any broker, are answered with `error`."""
        errors = (ctypes.c_int * count)(*([error] * count))
        self.lib.rd_kafka_mock_push_request_errors_array(self._cluster, PRODUCE_API_KEY, count, errors)

    def clear_produce_errors(self) -> None:
        self.lib.rd_kafka_mock_clear_request_errors(self._cluster, PRODUCE_API_KEY)

    def close(self) -> None:
        if self._cluster:
            self.lib.rd_kafka_mock_cluster_destroy(self._cluster)
            self.lib.rd_kafka_destroy(self._rk)
            self._cluster = self._rk = None

    def __enter__(self) -> "MockCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
