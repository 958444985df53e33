"""Liveness and readiness probes for load balancers and orchestrators."""

import logging
import uuid

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from core.models import Heartbeat
from core.services import BEAT_HEARTBEAT

logger = logging.getLogger(__name__)
CHECK_TIMEOUT_SECONDS = 2


class CheckFailed(Exception):
    """A check's own finding (not an error raised by a dependency): shown as it is."""


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_broker() -> None:
    with current_app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=CHECK_TIMEOUT_SECONDS)


def check_cache() -> None:
    token = uuid.uuid4().hex
    cache.set("readyz", token, timeout=10)
    if cache.get("readyz") != token:
        raise RuntimeError("value written to the cache was not read back")


def check_heartbeat() -> None:
    """A worker recorded beat's heartbeat lately: beat, the broker and a worker all work.

    Missing (a first start before beat's first tick, or periodic tasks never installed) is
    not ready either: nothing proves yet that tasks run.
    """
    last_seen = Heartbeat.objects.filter(name=BEAT_HEARTBEAT).values_list("last_seen", flat=True).first()
    if last_seen is None:
        raise CheckFailed(
            "no heartbeat yet: a worker records beat's core.heartbeat within a minute of beat's start "
            "(are beat and a worker running, and `manage.py setup_periodic_tasks` done?)"
        )
    age, limit = (timezone.now() - last_seen).total_seconds(), settings.HEARTBEAT_STALE_SECONDS
    if age > limit:
        raise CheckFailed(
            f"stale: the last heartbeat is {age:.0f}s old (HEARTBEAT_STALE_SECONDS={limit}): "
            "is beat running, and is a worker consuming the default queue?"
        )


CHECKS = {
    "database": check_database,
    "broker": check_broker,
    "cache": check_cache,
    "heartbeat": check_heartbeat,
}


@never_cache
def healthz(request):
    """The process is alive and serving requests; touches no dependency."""
    return JsonResponse({"status": "ok"})


@never_cache
def readyz(request):
    """Every dependency answers; 503 naming the ones that do not."""
    results, ok = {}, True
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            ok = False
            detail = str(exc) if isinstance(exc, CheckFailed) else f"{type(exc).__name__}: {exc}"
            results[name] = f"error: {detail}"[:300]
            logger.warning("readiness check failed", extra={"check": name, "error": results[name]})
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", "checks": results}, status=200 if ok else 503
    )
