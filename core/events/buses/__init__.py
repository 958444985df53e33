"""Sinks that deliver event envelopes to buses other than RabbitMQ (docs/events.md, "Other buses").

Every sink has the interface of `base.Sink`: built from its configured name and options,
`send(batch, timeout=...)` returns only once the bus acknowledged every event, else raises
SinkUnavailable. `load()` builds one from settings without importing the other buses' clients.
"""

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from core.events.buses.base import Sink, SinkUnavailable

BACKENDS = {
    "redis_streams": "core.events.buses.redis_streams.RedisStreamsSink",
    "nats": "core.events.buses.nats.NatsJetStreamSink",
    "kafka": "core.events.buses.kafka.KafkaSink",
    "memory": "core.events.buses.memory.MemorySink",
}

__all__ = ["BACKENDS", "Sink", "SinkUnavailable", "load"]


def load(name: str, options: dict[str, Any]) -> Sink:
    """The sink `name` from its options: BACKEND (a key of BACKENDS or a dotted class path)
    picks the class, which gets the other options."""
    options = dict(options)
    backend = options.pop("BACKEND", None)
    if not isinstance(backend, str) or not backend:
        raise ImproperlyConfigured(
            f"event bus {name!r}: option BACKEND is required: one of {', '.join(BACKENDS)}"
        )
    path = BACKENDS.get(backend, backend)
    if "." not in path:
        raise ImproperlyConfigured(
            f"event bus {name!r}: unknown BACKEND {backend!r}; one of {', '.join(BACKENDS)}"
        )
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"event bus {name!r}: cannot import BACKEND {path!r}: {exc}") from exc
    return cls(name, options)
