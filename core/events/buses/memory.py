"""An in-process bus: a list per sink name, for tests and the embedded `make run` (no services).

Each process has its own lists: in Celery prefork children every child keeps what it sent,
so read them in the process that sent (a test, or a single-process worker). A list keeps the
last MAXLEN events (10,000 by default), so a long `make run` does not grow without end.
"""

import copy
import threading
from collections import deque
from typing import Any

from core.events.buses.base import Batch, Options

_lock = threading.Lock()
_sent: dict[str, deque[tuple[dict[str, Any], str | None]]] = {}


def take(name: str, *, clear: bool = True) -> list[tuple[dict[str, Any], str | None]]:
    """What the sink `name` received in this process, oldest first; forgotten unless clear=False."""
    with _lock:
        return list(_sent.pop(name, ()) if clear else _sent.get(name, ()))


class MemorySink:
    """Appends each (envelope, request_id) to the process-wide list of its name.

    Delivered: once `send` returns, every pair of the batch is in the list, in order, and a
    concurrent `take` sees the whole batch or none of it. Envelopes are copied, so a caller
    that changes its dict afterwards does not change what was delivered.
    """

    def __init__(self, name: str, options: dict[str, Any]):
        self.maxlen = Options(name, options, {"MAXLEN": (int, 10_000)}).positive("MAXLEN")
        self.name = name

    def send(self, batch: Batch, *, timeout: float) -> None:
        copied = [(copy.deepcopy(envelope), request_id) for envelope, request_id in batch]
        with _lock:
            _sent.setdefault(self.name, deque(maxlen=self.maxlen)).extend(copied)

    def close(self) -> None:
        """Nothing to drop: the list outlives the sink, until `take`."""
