"""Subscribers: functions run as Celery tasks for the events whose type matches their patterns.

A subscriber's optional `when` (a condition on the event's data) is checked by the relay
before it enqueues anything, so an event the subscriber is not for costs it no task.

Patterns are AMQP topic patterns over dot-separated words: `*` is exactly one word, `#` is
zero or more (`booking.*`, `payment.#`, `#`). Each subscriber's effect commits in one
transaction with its (event id, subscriber) row in ProcessedEvent, so a redelivered or
retried event has no second effect.
"""

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.db import InterfaceError, OperationalError

from core.errors import TransientError
from core.events.event import Event
from core.events.runner import make_subscriber_task
from core.queues import QUEUE_NAMES

__all__ = ["SUBSCRIBERS", "TRANSIENT_ERRORS", "Event", "Subscriber", "subscriber", "subscribers_for"]

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
)

# What `when=` may compare with: the values event data can hold after their JSON round trip.
_SCALARS = (str, int, float, bool, type(None))
_ONE_OF = (tuple, frozenset, set, list)
_ABSENT = object()

# A subscriber's `when`, normalised: ((key, the values it accepts), ...).
Condition = tuple[tuple[str, tuple[object, ...]], ...]


def _condition(when: Mapping[str, object] | None) -> Condition:
    """Check `when` once, at registration, and keep it in the form accepts() reads fastest."""
    condition = []
    for key, expected in (when or {}).items():
        if not isinstance(key, str):
            raise ValueError(f"when= keys name fields of the event's data; {key!r} is not a string")
        values = tuple(expected) if isinstance(expected, _ONE_OF) else (expected,)
        if not values:
            raise ValueError(f"when={{{key!r}: ...}} lists no value, so no event could match")
        for value in values:
            if not isinstance(value, _SCALARS):
                raise ValueError(
                    f"when={{{key!r}: {value!r}}}: event data arrive as JSON, so only str, int, float, "
                    "bool or None (or a tuple/frozenset of them) can match; compare with the string "
                    "the event carries (a Decimal or UUID is published as a string)"
                )
        condition.append((key, values))
    return tuple(condition)


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
    when: Condition = ()
    batch: int = 1
    task: Any = field(default=None, repr=False)

    def matches(self, event_type: str) -> bool:
        return any(_pattern(p).fullmatch(event_type) for p in self.patterns)

    def accepts(self, data: Mapping[str, Any]) -> bool:
        """The event's data meet `when`: each named key is present and equal to (one of) its values."""
        for key, values in self.when:  # noqa: SIM110 - the relay's hot path: cheaper than all(generator)
            if data.get(key, _ABSENT) not in values:
                return False
        return True

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
    when: Mapping[str, object] | None = None,
    batch: int = 1,
) -> Callable[[Callable[[Event], None]], Callable[[Event], None]]:
    """Register `func(event)` for events matching `patterns`, run on `queue` by a worker.

    `when` narrows it down by the event's data: {"purpose": "booking"} takes only events whose
    data["purpose"] == "booking", {"purpose": ("order", "booking")} either; every key must
    match. The relay enqueues no task for an event that does not match.

    Errors in `retry_for` are retried `max_retries` times with exponential backoff
    (up to retry_backoff * 2**n seconds before retry n+1: full jitter unless retry_jitter
    is False); after that, or at once for any other
    error, the delivery is dead-lettered (core.models.DeadLetter and `<queue>.dlq`).

    `batch` > 1 declares it safe to run up to that many events in one transaction: when the
    events consumer hands a pool job several first deliveries for it, their effects commit
    together with their processed-event rows. If any of them raises, all are rolled back and
    run again one by one, each with its own retries, so one bad event never fails its
    neighbours. Only for a subscriber whose effect is a database write that may share a
    transaction (no call to another system, no lock held long).
    """
    if not patterns:
        raise ValueError("a subscriber needs at least one event pattern")
    if queue not in QUEUE_NAMES:
        raise ValueError(f"subscriber queue {queue!r} is not one of the declared queues {QUEUE_NAMES}")
    condition = _condition(when)
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch= is how many events may share a transaction (1 or more), not {batch!r}")

    def register(func: Callable[[Event], None]) -> Callable[[Event], None]:
        sub = Subscriber(
            name=name or f"{func.__module__}.{func.__qualname__}",
            patterns=tuple(patterns),
            func=func,
            queue=queue,
            max_retries=max_retries,
            retry_for=retry_for,
            retry_backoff=retry_backoff,
            retry_jitter=retry_jitter,
            when=condition,
            batch=batch,
        )
        if sub.name in SUBSCRIBERS and SUBSCRIBERS[sub.name].func is not func:
            raise ValueError(f"two subscribers are named {sub.name}")
        sub.task = make_subscriber_task(sub)
        SUBSCRIBERS[sub.name] = sub
        subscribers_for.cache_clear()
        return func

    return register
