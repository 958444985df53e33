"""The benchmark's queue and tasks, kept out of the project's apps.

A worker started with ``celery -A bench.tasks worker -Q bench`` loads the project's app
(``config.celery.app``, every project setting unchanged) plus the ``bench`` queue, declared
exactly like the project's work queues (``config.celery.work_queue``: durable, direct
exchange of the same name, dead-lettered to ``dlx``). BENCH_QUEUE renames it.
"""

import os

from config.celery import app, dead_letter_queue, work_queue

BENCH_QUEUE = os.environ.get("BENCH_QUEUE", "bench")
bench_queue = work_queue(BENCH_QUEUE)
bench_dead_letter_queue = dead_letter_queue(BENCH_QUEUE)

# task_create_missing_queues is False, so a worker's -Q and a publisher's queue= must name a
# queue the app knows: add it to the configured queues (and to the live map if already built).
if BENCH_QUEUE not in {queue.name for queue in app.conf.task_queues}:
    app.conf.task_queues = [*app.conf.task_queues, bench_queue]
if "queues" in app.amqp.__dict__ and BENCH_QUEUE not in app.amqp.queues:
    app.amqp.queues.add(bench_queue)


@app.task(name="bench.noop", queue=BENCH_QUEUE, ignore_result=True)
def noop() -> None:
    """Do nothing: what is measured is Celery's own cost per task."""


@app.task(name="bench.sentinel", bind=True, queue=BENCH_QUEUE, ignore_result=True)
def sentinel(self, reply_to: str) -> None:
    """Report that the worker reached this message: publish one reply to queue `reply_to`."""
    with self.app.producer_or_acquire() as producer:
        producer.publish(
            {"pid": os.getpid()},
            exchange="",
            routing_key=reply_to,
            serializer="json",
            retry=True,
            retry_policy={"max_retries": 3},
        )
