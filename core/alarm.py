"""Interrupt a block of code after a number of seconds, with SIGALRM."""

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def raise_after(seconds: float, error: Callable[[], BaseException]) -> Iterator[None]:
    """Raise `error()` in the block if it still runs after `seconds`.

    Only the main thread receives signals: elsewhere (a threads pool, a test's worker thread)
    the block runs without this limit, and the caller's own bound applies.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise error()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
