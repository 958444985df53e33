"""Progress of long management commands: a bar on a terminal, plain lines anywhere else.

    bar = progress(letters, label="dead letters", stream=self.stdout)
    for letter in bar:
        ...
        bar.write(f"#{letter.pk} queued")  # a line of the command's own, above the bar

On a terminal the bar is tqdm's. In a log, a pipe, cron's mail or a test, a line says how far
it got whenever another tenth is done or PLAIN_EVERY_SECONDS passed (never more often than
once a second, so a quick run prints none), and a last line sums up. The command's own lines
go through `write()`, which keeps them from breaking the bar.
"""

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.core.management.base import OutputWrapper
from tqdm import tqdm

PLAIN_EVERY_PERCENT = 10
PLAIN_EVERY_SECONDS = 10.0
PLAIN_MIN_SECONDS = 1.0


class _Unterminated:
    """The stream as tqdm needs it: its redraws end in "\\r", and OutputWrapper would add a newline."""

    def __init__(self, stream: OutputWrapper):
        self.stream = stream

    def write(self, text: str) -> None:
        self.stream.write(text, ending="")

    def flush(self) -> None:
        self.stream.flush()


class Progress:
    def __init__(
        self,
        iterable: Iterable,
        *,
        total: int | None,
        label: str,
        stream: Any,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.iterable, self.label, self.clock = iterable, label, clock
        self.total = total if total is not None else getattr(iterable, "__len__", lambda: None)()
        self.stream = stream if isinstance(stream, OutputWrapper) else OutputWrapper(stream)
        self.done = 0
        self._terminal = _Unterminated(self.stream) if self.stream.isatty() else None

    def __iter__(self) -> Iterator:
        return self._bar() if self._terminal else self._lines()

    def write(self, text: str, stream: Any = None) -> None:
        """Print one of the command's lines (to `stream`, by default the progress's own)."""
        target = stream or self.stream
        if self._terminal is None:
            target.write(text)
            return
        with tqdm.external_write_mode(file=self._terminal):
            target.write(text)

    def _bar(self) -> Iterator:
        with tqdm(self.iterable, total=self.total, desc=self.label, file=self._terminal) as bar:
            for item in bar:
                yield item
                self.done += 1

    def _lines(self) -> Iterator:
        started = last = self.clock()
        next_percent = PLAIN_EVERY_PERCENT
        for item in self.iterable:
            yield item
            self.done += 1
            now = self.clock()
            percent = 100 * self.done / self.total if self.total else None
            due = (percent is not None and percent >= next_percent) or now - last >= PLAIN_EVERY_SECONDS
            if due and now - last >= PLAIN_MIN_SECONDS:
                self.stream.write(f"{self.label}: {self._count(percent)}, {now - started:.0f}s")
                last = now
            if percent is not None:
                while next_percent <= percent:
                    next_percent += PLAIN_EVERY_PERCENT
        self.stream.write(f"{self.label}: {self.done} done in {self.clock() - started:.1f}s")

    def _count(self, percent: float | None) -> str:
        if percent is None:
            return f"{self.done} done"
        return f"{self.done}/{self.total} ({percent:.0f}%)"


def progress(iterable: Iterable, *, total: int | None = None, label: str, stream: Any) -> Progress:
    """Iterate over `iterable` showing progress on `stream` (a command's self.stdout)."""
    return Progress(iterable, total=total, label=label, stream=stream)
