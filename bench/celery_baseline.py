"""Celery baseline: how fast a real prefork worker drains no-op tasks from RabbitMQ.

    .venv/bin/python bench/celery_baseline.py --tasks 10000 [--broker amqp://...]

Later benchmarks (events, webhooks) import `measure_baseline` and report their own figure
as a ratio against it, measured in the same invocation: this machine is shared and noisy,
so absolute figures taken minutes apart are not comparable, ratios within one run are.

What runs
  The project's Celery app (`config.celery.app`) with every project setting as it stands:
  JSON, late acks, prefetch multiplier 1, publisher confirms, no task events (Flower turns them on),
  Django JSON logging at LOG_LEVEL (INFO unless --log-level). Settings default to
  config.settings.test (the local RabbitMQ); --broker overrides the broker URL for this
  process and the worker (TEST_CELERY_BROKER_URL, the only broker variable the test settings
  read).
  The queue is `bench` (bench/tasks.py), declared like the project's queues with
  `config.celery.work_queue` (durable, dead-lettered to `dlx`, with its `bench.dlq`); both
  are purged before the run and after it.
  The worker is a real subprocess, `celery -A bench.tasks worker --pool prefork
  --concurrency 4 -Q bench` (4: production's WORKER_CONCURRENCY default, which the
  environment variable changes here too; plus --without-gossip --without-mingle so other workers on the
  shared broker, e.g. pytest's, do not talk to it), in its own process group; it is ready
  once it answers `app.control.ping`. Whatever happens (error, timeout, Ctrl-C, SIGTERM) it
  is stopped: SIGTERM (warm shutdown), then SIGKILL to its whole process group.

The two figures
  publish/s: N `noop.apply_async()` calls in one loop on one producer, the project's normal
    publish path (each call waits for RabbitMQ's publisher confirm; it would also send a
    task-sent event if the settings turned task_send_sent_event on).
  drain/s: N / the time to execute N tasks already waiting in the queue. The worker's
    consumer is cancelled while publishing (`control.cancel_consumer`), so the drain
    measures the worker alone and not the publisher's pace; the clock starts when the
    consumer is added back (`control.add_consumer`).

Completion detection: a sentinel task, FIFO behind the N no-ops
  After the N no-ops the bench publishes one `bench.sentinel` task to the same queue. A
  single queue with a single consumer delivers in order, and with late acks and a prefetch
  window of 4 (concurrency 4 x multiplier 1) the sentinel can only be delivered once all
  but at most three of the no-ops have been acknowledged, i.e. executed. When it runs, it
  publishes one message to an exclusive reply queue the bench is consuming; its arrival
  stops the clock. The residual error is at most three no-ops still running in the other
  children, i.e. microseconds. Passive queue_declare is used as a check, not as the signal:
  the ready count must be exactly N+1 before the drain (publishes are confirmed, so it is
  exact) and 0 after it; it is also the progress figure reported on a timeout.
  Rejected: counting the worker's task-succeeded events (the project enables task events)
    would mean a second consumer receiving 3 events per task, competing with the worker
    for the 2 cores and lagging behind it, so it would measure itself; polling the queue's
    message count alone cannot see the prefetched, unacknowledged messages (AMQP reports
    only ready ones), and the management API's counters are refreshed every 5 s; making
    the no-op count itself (Redis INCR, a result backend) would make it more than a no-op.
  The no-op stays a no-op: one extra message per run, not per task.

Bounded: the worker must be ready within --ready-timeout (60 s), the drain must finish
within --timeout (300 s), and a hard alarm covers the whole measurement (publishing too,
e.g. should RabbitMQ block publishers on a memory alarm).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: bench/ is on the path, the project is not
    sys.path.insert(0, str(REPO))

from bench.process import STOP_GRACE_SECONDS, BackgroundProcess, BenchError  # noqa: E402
from core.alarm import raise_after  # noqa: E402

DEFAULT_TASKS = 10_000
DEFAULT_DRAIN_TIMEOUT = 300.0
DEFAULT_READY_TIMEOUT = 60.0
CONCURRENCY = int(os.environ.get("WORKER_CONCURRENCY", "4"))  # as the Procfile's worker


class DeadlineExceeded(BenchError):
    """The hard deadline expired (not a TimeoutError: socket timeouts are expected on the way)."""


def log(message: str) -> None:
    print(f"[celery_baseline] {message}", file=sys.stderr, flush=True)


def load_project(broker: str | None = None) -> Any:
    """Import the project's Celery app and the bench tasks; returns the `bench.tasks` module.

    DJANGO_SETTINGS_MODULE defaults to config.settings.test, which takes its broker from
    TEST_CELERY_BROKER_URL only. A broker URL given here is put there, for this process and
    for the worker, which inherits the environment.
    """
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    if broker:
        os.environ["TEST_CELERY_BROKER_URL"] = broker
    from bench import tasks as bench_tasks

    if broker:
        bench_tasks.app.conf.broker_url = broker
    if not bench_tasks.app.conf.broker_url.startswith(("amqp", "pyamqp")):
        raise BenchError(
            f"the baseline needs RabbitMQ, not {bench_tasks.app.conf.broker_url.split(':')[0]}:// "
            "(use config.settings.test or --broker amqp://...)"
        )
    return bench_tasks


# --- The worker subprocess -------------------------------------------------------------------
class Worker(BackgroundProcess):
    """`celery worker` as a subprocess in its own process group, logging to a temporary file."""

    name = "worker"

    def __init__(
        self,
        app: Any,
        queue: str,
        concurrency: int = CONCURRENCY,
        log_level: str | None = None,
        module: str = "bench.tasks",
        env: dict[str, str] | None = None,
    ):
        self.app = app
        self.queue = queue
        self.nodename = f"bench-{os.getpid()}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
        command = [
            sys.executable, "-m", "celery", "-A", module, "worker",
            "--pool", "prefork", "--concurrency", str(concurrency), "-Q", queue,
            "-n", self.nodename, "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        extra = {"TEST_CELERY_BROKER_URL": app.conf.broker_url, "BENCH_QUEUE": queue, **(env or {})}
        if log_level:
            extra["LOG_LEVEL"] = log_level
        super().__init__(command, extra)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if self.app.control.ping(destination=[self.nodename], timeout=0.5):
                return
        raise BenchError(f"the worker did not answer ping within {timeout:.0f} s\n{self.log_tail()}")

    def control(self, command: str, queue: str | None = None, **kwargs: Any) -> None:
        replies = getattr(self.app.control, command)(
            queue or self.queue, destination=[self.nodename], reply=True, timeout=5, **kwargs
        )
        if not replies:
            raise BenchError(f"the worker did not answer {command}\n{self.log_tail()}")


# --- Helpers -----------------------------------------------------------------------------------
@contextlib.contextmanager
def hard_deadline(seconds: float, what: str) -> Iterator[None]:
    """Raise DeadlineExceeded in the main thread after `seconds` (no-op outside the main thread)."""
    with raise_after(seconds, lambda: DeadlineExceeded(f"{what}: gave up after {seconds:.0f} s")):
        yield


def ready_count(channel: Any, queue: str) -> tuple[int, int]:
    """(ready messages, consumers) of `queue`, from a passive queue_declare."""
    ok = channel.queue_declare(queue=queue, passive=True)
    return ok.message_count, ok.consumer_count


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- The measurement ---------------------------------------------------------------------------
def measure_baseline(
    tasks: int = DEFAULT_TASKS,
    *,
    broker: str | None = None,
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    ready_timeout: float = DEFAULT_READY_TIMEOUT,
    log_level: str | None = None,
) -> dict:
    """Drain `tasks` no-op tasks through RabbitMQ with a real prefork worker (CONCURRENCY processes).

    Returns {"bench": "celery_baseline", "tasks", "publish_per_s", "drain_per_s", "seconds"
    (the drain), "publish_seconds", "broker", "rabbitmq", "celery"}. The worker it starts is
    stopped before it returns or raises.
    """
    if tasks < 1:
        raise ValueError("tasks must be at least 1")
    bench_tasks = load_project(broker)
    # Covers everything, publishing included (a blocked broker would hang it): generous.
    budget = ready_timeout + drain_timeout + max(120.0, tasks / 50) + 2 * STOP_GRACE_SECONDS
    with hard_deadline(budget, "celery_baseline"):
        return _measure(bench_tasks, tasks, drain_timeout, ready_timeout, log_level)


def _measure(
    bench_tasks: Any, tasks: int, drain_timeout: float, ready_timeout: float, log_level: str | None
) -> dict:
    import celery
    from kombu import Consumer, Queue

    app = bench_tasks.app
    queue = bench_tasks.bench_queue
    worker = Worker(app, queue.name, log_level=log_level)
    ok = False
    with app.connection_for_write(heartbeat=0) as conn:
        conn.ensure_connection(max_retries=3)
        channel = conn.channel()
        queue(channel).declare()
        bench_tasks.bench_dead_letter_queue(channel).declare()
        if consumers := ready_count(channel, queue.name)[1]:
            raise BenchError(f"{consumers} consumer(s) on {queue.name!r} already: is another run going on?")
        queue(channel).purge()
        bench_tasks.bench_dead_letter_queue(channel).purge()
        reply_queue = Queue(
            f"bench.reply.{uuid.uuid4().hex}", exclusive=True, auto_delete=True, durable=False
        )
        reply_queue(channel).declare()
        done: list[float] = []
        try:
            log(f"starting {' '.join(worker.command[1:])}")
            worker.start()
            worker.wait_ready(ready_timeout)
            log(f"worker {worker.nodename} ready; pausing its consumer while publishing")
            worker.control("cancel_consumer")
            wait_for(lambda: ready_count(channel, queue.name)[1] == 0, 10, f"no consumer on {queue.name!r}")

            with app.producer_or_acquire() as producer:
                started = time.perf_counter()
                for _ in range(tasks):
                    bench_tasks.noop.apply_async(queue=queue.name, producer=producer)
                publish_seconds = time.perf_counter() - started
                bench_tasks.sentinel.apply_async(args=[reply_queue.name], queue=queue.name, producer=producer)
            # With confirms the count is exact at once; without, let the last publishes land.
            expected = tasks + 1
            wait_for(lambda: ready_count(channel, queue.name)[0] >= expected, 10, f"{expected} messages")
            waiting, _ = ready_count(channel, queue.name)
            if waiting != expected:
                raise BenchError(f"expected {expected} messages in {queue.name!r}, found {waiting}")
            log(f"published {tasks} in {publish_seconds:.2f} s; draining")

            def on_reply(body: Any, message: Any) -> None:
                done.append(time.perf_counter())

            reply_consumer = Consumer(
                conn.channel(), queues=[reply_queue], callbacks=[on_reply], accept=["json"], no_ack=True
            )
            with reply_consumer:
                started = time.perf_counter()
                worker.control("add_consumer")
                deadline = time.monotonic() + drain_timeout
                while not done:
                    if time.monotonic() > deadline:
                        left, _ = ready_count(channel, queue.name)
                        raise BenchError(
                            f"drain not finished after {drain_timeout:.0f} s: {left} messages left"
                        )
                    worker.check_alive()
                    with contextlib.suppress(TimeoutError):
                        conn.drain_events(timeout=0.5)
            drain_seconds = done[0] - started
            left, _ = ready_count(channel, queue.name)
            if left:
                raise BenchError(f"the sentinel ran but {left} messages are still waiting in {queue.name!r}")
            ok = True
        finally:
            worker.stop()
            with contextlib.suppress(Exception):  # best effort: the run may have failed on the broker
                queue(conn.channel()).purge()
            if ok:
                worker.remove_log()
            elif worker.log_path is not None:
                log(f"worker log kept: {worker.log_path}")
        return {
            "bench": "celery_baseline",
            "tasks": tasks,
            "publish_per_s": round(tasks / publish_seconds, 1),
            "drain_per_s": round(tasks / drain_seconds, 1),
            "seconds": round(drain_seconds, 3),
            "publish_seconds": round(publish_seconds, 3),
            "broker": conn.as_uri(),
            "rabbitmq": _text(conn.connection.server_properties.get("version", "?")),
            "celery": celery.__version__,
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS, help="no-op tasks to drain (10000)")
    parser.add_argument("--broker", help="broker URL (default: the settings', the local RabbitMQ in test)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_DRAIN_TIMEOUT, help="drain timeout, s (300)")
    parser.add_argument(
        "--ready-timeout", type=float, default=DEFAULT_READY_TIMEOUT, help="worker start, s (60)"
    )
    parser.add_argument("--log-level", help="the worker's LOG_LEVEL (default: the project's, INFO)")
    args = parser.parse_args(argv)

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally that stops the worker

    signal.signal(signal.SIGTERM, terminate)
    from kombu.exceptions import OperationalError  # the broker is unreachable

    try:
        result = measure_baseline(
            args.tasks,
            broker=args.broker,
            drain_timeout=args.timeout,
            ready_timeout=args.ready_timeout,
            log_level=args.log_level,
        )
    except (BenchError, ValueError, OperationalError, OSError) as exc:
        log(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; worker stopped")
        return 130
    print(
        f"celery baseline: {result['tasks']} no-op tasks, publish {result['publish_per_s']:,.0f}/s "
        f"({result['publish_seconds']:.2f} s), "
        f"drain {result['drain_per_s']:,.0f}/s ({result['seconds']:.2f} s), "
        f"prefork x{CONCURRENCY}, RabbitMQ {result['rabbitmq']}, Celery {result['celery']}"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
