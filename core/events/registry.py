"""Subscribers: functions run as Celery tasks for the events whose type matches their patterns.

Patterns are AMQP topic patterns over dot-separated words: `*` is exactly one word, `#` is
zero or more (`booking.*`, `payment.#`, `#`). Each subscriber's effect commits in one
transaction with its (event id, subscriber) row in ProcessedEvent, so a redelivered or
retried event has no second effect.
"""

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.db import InterfaceError, OperationalError

from core.errors import TransientError

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True)
class Event:
    id: uuid.UUID
    type: str
    version: int
    occurred_at: datetime
    source: str
    data: dict[str, Any]

    @classmethod
    def from_envelope(cls, envelope: dict[str, Any]) -> "Event":
        return cls(
            id=uuid.UUID(envelope["id"]),
            type=envelope["type"],
            version=envelope["version"],
            occurred_at=datetime.fromisoformat(envelope["occurred_at"]),
            source=envelope["source"],
            data=envelope["data"],
        )


@dataclass
class Subscriber:
    name: str
    patterns: tuple[str, ...]
    func: Callable[[Event], None]
    queue: str
    max_retries: int
    retry_for: tuple[type[BaseException], ...]
    retry_backoff: int
    retry_jitter: bool
    task: Any = field(default=None, repr=False)

    def matches(self, event_type: str) -> bool:
        return any(_pattern(p).fullmatch(event_type) for p in self.patterns)

    def task_id(self, event_id: str) -> str:
        """A stable task id per (event, subscriber), to follow one delivery in logs and Flower."""
        return str(uuid.uuid5(uuid.UUID(event_id), self.name))


SUBSCRIBERS: dict[str, Subscriber] = {}


@lru_cache(maxsize=512)
def _pattern(pattern: str) -> re.Pattern:
    """Compile an AMQP topic pattern; a `#` takes its neighbouring dot with it."""
    words: list[str] = []
    for word in pattern.split("."):
        if not (word == "#" and words and words[-1] == "#"):  # "#.#" means "#"
            words.append(word)
    if words == ["#"]:
        return re.compile(r".*")
    regex = ""
    for i, word in enumerate(words):
        if word == "#":
            regex += r"(?:[^.]+\.)*" if i == 0 else r"(?:\.[^.]+)*"
            continue
        dot = r"\." if i > 0 and not (i == 1 and words[0] == "#") else ""
        regex += dot + (r"[^.]+" if word == "*" else re.escape(word))
    return re.compile(regex)


@lru_cache(maxsize=256)
def subscribers_for(event_type: str) -> tuple[Subscriber, ...]:
    return tuple(s for s in SUBSCRIBERS.values() if s.matches(event_type))


def subscriber(
    *patterns: str,
    queue: str = "default",
    max_retries: int = 3,
    retry_for: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
    retry_backoff: int = 1,
    retry_jitter: bool = True,
    name: str | None = None,
) -> Callable[[Callable[[Event], None]], Callable[[Event], None]]:
    """Register `func(event)` for events matching `patterns`, run on `queue` by a worker.

    Errors in `retry_for` are retried `max_retries` times with exponential backoff
    (up to retry_backoff * 2**n seconds before retry n+1: full jitter unless retry_jitter
    is False); after that, or at once for any other
    error, the delivery is dead-lettered (core.models.DeadLetter and `<queue>.dlq`).
    """
    if not patterns:
        raise ValueError("a subscriber needs at least one event pattern")
    from config.celery import QUEUE_NAMES

    if queue not in QUEUE_NAMES:
        raise ValueError(f"subscriber queue {queue!r} is not one of the declared queues {QUEUE_NAMES}")

    def register(func: Callable[[Event], None]) -> Callable[[Event], None]:
        from core.events.runner import make_subscriber_task

        sub = Subscriber(
            name=name or f"{func.__module__}.{func.__qualname__}",
            patterns=tuple(patterns),
            func=func,
            queue=queue,
            max_retries=max_retries,
            retry_for=retry_for,
            retry_backoff=retry_backoff,
            retry_jitter=retry_jitter,
        )
        if sub.name in SUBSCRIBERS and SUBSCRIBERS[sub.name].func is not func:
            raise ValueError(f"two subscribers are named {sub.name}")
        sub.task = make_subscriber_task(sub)
        SUBSCRIBERS[sub.name] = sub
        subscribers_for.cache_clear()
        return func

    return register
