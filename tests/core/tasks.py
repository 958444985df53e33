"""Tasks that exist only for the tests; they talk to Redis so the test can see each attempt."""

import time

import redis
from celery import shared_task
from django.conf import settings

from core.logging import request_id_var


class TransientError(Exception):
    """Stands for a timeout or 5xx from a service that may answer next time."""


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


@shared_task(
    name="tests.always_transient",
    bind=True,
    acks_late=True,
    autoretry_for=(TransientError,),
    retry_backoff=1,
    retry_jitter=False,
    max_retries=3,
)
def always_transient(self, key: str) -> None:
    _redis().rpush(key, f"{time.time():.3f}")
    raise TransientError(f"attempt {self.request.retries + 1} failed")


@shared_task(name="tests.record_request_id", acks_late=True)
def record_request_id(key: str) -> None:
    _redis().set(key, request_id_var.get() or "", ex=60)
