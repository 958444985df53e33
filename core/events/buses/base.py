"""What every bus sink shares: the interface, its one error, option checks and per-process state.

The relay hands a sink a batch of (envelope, request_id) pairs and marks the rows published
only if `send` returns. A sink that cannot be sure the bus holds every event raises
SinkUnavailable, and the relay sends the whole batch again later: a consumer may therefore see
a prefix of a batch twice, and dedupes on the envelope's `id` (docs/events.md, "Other buses").
"""

import json
import os
from typing import Any, Protocol
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

Batch = list[tuple[dict[str, Any], str | None]]

DEFAULT_PREFIX = "fulfil.events"


class SinkUnavailable(Exception):
    """The bus is down, refused an event, or did not acknowledge every event in time."""


class Sink(Protocol):
    name: str

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        """Check the options (ImproperlyConfigured if wrong); no network call."""

    def send(self, batch: Batch, *, timeout: float) -> None:
        """Deliver the pairs in order; return only once the bus acknowledged every one."""

    def close(self) -> None:
        """Drop connections; the next send reconnects."""


class Options:
    """The options of one configured sink, checked against what its class accepts.

    `spec` maps each accepted option to its type and default (`REQUIRED` for none); anything
    else, or a value of the wrong type, is an ImproperlyConfigured that names the sink.
    """

    REQUIRED = object()

    def __init__(self, sink: str, options: dict[str, Any], spec: dict[str, tuple[type | tuple, Any]]):
        self.sink = sink
        if not isinstance(options, dict):
            raise self.error(f"options must be a dict, not {type(options).__name__}")
        unknown = sorted(set(options) - set(spec))
        if unknown:
            raise self.error(f"unknown option(s) {', '.join(unknown)}; accepted: {', '.join(sorted(spec))}")
        self.values: dict[str, Any] = {}
        for key, (kind, default) in spec.items():
            if key not in options:
                if default is self.REQUIRED:
                    raise self.error(f"option {key} is required")
                self.values[key] = default
                continue
            value = options[key]
            kinds = kind if isinstance(kind, tuple) else (kind,)
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                expected = " or ".join(k.__name__ for k in kinds)
                raise self.error(f"option {key} must be {expected}, not {value!r}")
            self.values[key] = value

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def error(self, message: str) -> ImproperlyConfigured:
        return ImproperlyConfigured(f"event bus {self.sink!r}: {message}")

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.values[key]
        if value not in choices:
            raise self.error(f"option {key} must be one of {', '.join(choices)}, not {value!r}")
        return value

    def positive(self, key: str) -> int | float:
        value = self.values[key]
        if value <= 0:
            raise self.error(f"option {key} must be positive, not {value!r}")
        return value

    def url(self, key: str, schemes: tuple[str, ...]) -> str:
        """A URL with one of `schemes`, a host and, if given, a valid port."""
        value = self.values[key]
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
        except ValueError as exc:
            raise self.error(f"option {key} is not a valid URL ({exc}): {value!r}") from None
        if parts.scheme not in schemes or not parts.hostname:
            raise self.error(f"option {key} must be a {'/'.join(schemes)}:// URL with a host, not {value!r}")
        return value

    def name_token(self, key: str) -> str:
        """A dot-separated prefix of subject/stream/topic names: no empty part, space or wildcard."""
        value = self.values[key]
        parts = value.split(".")
        if not value or any(not p or any(c in p for c in " \t*>") for p in parts):
            raise self.error(f"option {key} must be dot-separated words without spaces or * >, not {value!r}")
        return value


def domain_of(event_type: str) -> str:
    """The first word of an event type: `payment` for `payment.completed`."""
    return event_type.split(".", 1)[0]


def dumps(envelope: dict[str, Any]) -> str:
    """The envelope as compact JSON, as the RabbitMQ sink sends it."""
    return json.dumps(envelope, separators=(",", ":"))


class PerProcess:
    """Connection state that belongs to the process that opened it.

    The relay runs in Celery prefork children, which inherit their parent's sockets (and,
    for Kafka and NATS, objects whose threads did not survive the fork). `current()` returns
    the state only in the process that stored it; a child sees None and opens its own.
    What a child inherited is kept referenced, never closed or collected there: closing a
    librdkafka handle whose threads are gone would hang, and a shared socket is the parent's.
    """

    _inherited: list[Any] = []

    def __init__(self) -> None:
        self._pid: int | None = None
        self._value: Any = None

    def current(self) -> Any:
        if self._value is not None and self._pid != os.getpid():
            PerProcess._inherited.append(self._value)
            self._value = self._pid = None
        return self._value

    def set(self, value: Any) -> Any:
        self._pid, self._value = os.getpid(), value
        return value

    def take(self) -> Any:
        """Forget the state and return it for closing (None if another process opened it)."""
        value = self.current()
        self._value = self._pid = None
        return value
