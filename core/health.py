"""Liveness and readiness probes for load balancers and orchestrators."""

import logging
import uuid

from celery import current_app
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

logger = logging.getLogger(__name__)
CHECK_TIMEOUT_SECONDS = 2


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


CHECKS = {"database": check_database, "broker": check_broker, "cache": check_cache}


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
            results[name] = f"error: {type(exc).__name__}: {exc}"[:300]
            logger.warning("readiness check failed", extra={"check": name, "error": results[name]})
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", "checks": results}, status=200 if ok else 503
    )
