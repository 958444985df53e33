"""Prometheus metrics: `GET /metrics`, request metrics, and the project's own figures.

- Request metrics are counted by `RequestMetricsMiddleware` in the process that served the
  request. gunicorn runs several: with PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py does),
  each writes its values there and a scrape adds them up (prometheus_client's multiprocess
  mode); without it, the process's own values are served.
- The project's figures (outbox, dead letters, queues, heartbeats, payments, webhooks,
  notifications) are read when Prometheus scrapes, from the database, the broker and Redis,
  so any web process gives the same answer. Apps add theirs with `register()` from their
  AppConfig.ready(); core does not import them.
- Task retries and failures happen in worker processes, maybe on other hosts: each is counted
  in Redis (HINCRBY) from Celery's signals and served from there.

The endpoint needs `Authorization: Bearer <METRICS_TOKEN>` (or a superuser's session); with no
METRICS_TOKEN it does not exist for anyone else (404). See docs/operations.md.
"""

import hmac
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator

from celery import current_app
from django.conf import settings
from django.db.models import Count
from django.http import Http404, HttpResponse, HttpResponseNotAllowed
from django.utils import timezone
from django.views.decorators.cache import never_cache
from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client import Counter as PrometheusCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from core.events.delivery import sink_lag
from core.events.registry import SUBSCRIBERS
from core.events.relay import outbox_lag_seconds
from core.models import DeadLetter, Heartbeat, OutboxEvent
from core.queues import QUEUE_NAMES

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 2
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# --- Request metrics ----------------------------------------------------------------------
# Labels are bounded: the route is the URL pattern's name, never the path, and an unknown
# method is "other". Buckets reach gunicorn's 30 s timeout.
REQUEST_SECONDS = Histogram(
    "fulfil_http_request_duration_seconds",
    "Time Django took to answer, by method and route (the URL pattern's name).",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RESPONSES = PrometheusCounter(
    "fulfil_http_responses",
    'Responses by method, route ("unmatched": no URL pattern) and status class (2xx, 4xx...).',
    ["method", "route", "status"],
)


class RequestMetricsMiddleware:
    """Times each request and counts its response by route, never by path (bounded labels)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        method = request.method if request.method in _METHODS else "other"
        match = request.resolver_match
        route = match.view_name if match else "unmatched"
        try:
            REQUEST_SECONDS.labels(method, route).observe(time.perf_counter() - started)
            RESPONSES.labels(method, route, f"{response.status_code // 100}xx").inc()
        except OSError:  # the multiprocess directory is gone or full: metrics never fail a request
            logger.warning("could not record request metrics", exc_info=True)
        return response


# --- The project's figures, read at scrape time -------------------------------------------
CollectFunction = Callable[[], Iterable[Metric]]
_collectors: dict[str, CollectFunction] = {}


def register(name: str, collect: CollectFunction) -> None:
    """Add an app's figures: `collect()` returns metric families, read at every scrape.

    Called from the app's AppConfig.ready(). A collector that fails is logged and reported as
    fulfil_metrics_collector_up{collector=name} 0; the others are still served.
    """
    _collectors[name] = collect


def _outbox() -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "fulfil_outbox_lag_seconds",
        "Age of the oldest unpublished outbox event (0 when everything is published).",
        value=outbox_lag_seconds(),
    )
    yield GaugeMetricFamily(
        "fulfil_outbox_unpublished",
        "Outbox events not yet confirmed by the broker.",
        value=OutboxEvent.objects.filter(published_at__isnull=True).count(),
    )
    waiting = GaugeMetricFamily(
        "fulfil_bus_waiting", "Published events another bus (EVENTS_SINKS) has not taken yet.", labels=["bus"]
    )
    lag = GaugeMetricFamily(
        "fulfil_bus_lag_seconds", "Age of the oldest event waiting for the bus (0: none).", labels=["bus"]
    )
    for name, (count, age) in sink_lag().items():
        waiting.add_metric([name], count)
        lag.add_metric([name], age)
    yield waiting
    yield lag


def _dead_letters() -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "fulfil_dead_letters",
        "Dead letters waiting for staff (not resolved), by subscriber.",
        labels=["subscriber"],
    )
    counts = dict.fromkeys(SUBSCRIBERS, 0)  # every subscriber has its series, 0 included
    rows = DeadLetter.objects.filter(resolved_at__isnull=True).values("subscriber").annotate(n=Count("id"))
    counts.update({row["subscriber"]: row["n"] for row in rows.order_by()})
    for subscriber, count in sorted(counts.items()):
        family.add_metric([subscriber], count)
    yield family


def _heartbeats() -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "fulfil_heartbeat_age_seconds",
        'Seconds since a probe last went through the broker to a worker ("beat": every 30 s).',
        labels=["name"],
    )
    now = timezone.now()
    for name, last_seen in Heartbeat.objects.values_list("name", "last_seen"):
        family.add_metric([name], (now - last_seen).total_seconds())
    yield family


def _queues() -> Iterator[Metric]:
    """Messages and consumers of each work and dead-letter queue (a passive declare each)."""
    messages = GaugeMetricFamily(
        "fulfil_queue_messages", "Messages ready in the queue (not yet taken by a worker).", labels=["queue"]
    )
    consumers = GaugeMetricFamily("fulfil_queue_consumers", "Consumers of the queue.", labels=["queue"])
    up = 1
    try:
        with current_app.connection_for_read(
            transport_options={
                "read_timeout": BROKER_TIMEOUT_SECONDS,
                "write_timeout": BROKER_TIMEOUT_SECONDS,
            }
        ) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_SECONDS)
            channel = conn.channel()
            for name in (*QUEUE_NAMES, *(f"{q}.dlq" for q in QUEUE_NAMES)):
                try:
                    _, ready, consuming = channel.queue_declare(queue=name, passive=True)
                except conn.channel_errors:  # not declared yet: the broker closed the channel
                    channel = conn.channel()
                    continue
                messages.add_metric([name], ready)
                consumers.add_metric([name], consuming)
    except Exception as exc:  # noqa: BLE001 - any failure means the broker did not answer
        logger.warning("metrics: the broker did not answer", extra={"error": f"{type(exc).__name__}: {exc}"})
        up = 0
    yield GaugeMetricFamily("fulfil_broker_up", "1 if the broker answered this scrape, else 0.", value=up)
    if up:
        yield messages
        yield consumers


# --- Task retries and failures, counted in Redis by whichever worker saw them -------------
TASK_COUNTERS = {
    "retries": "Task retries (Celery's task_retry) by task name, in every worker.",
    "failures": "Tasks that failed for good (Celery's task_failure) by task name, in every worker.",
}


def _redis():
    """The cache's Redis client, or None with the embedded local-memory cache (nothing shared)."""
    if not settings.CACHES["default"]["BACKEND"].startswith("django_redis."):
        return None
    from django_redis import get_redis_connection

    return get_redis_connection("default")


def _task_counter_key(kind: str) -> str:
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    return f"{prefix}:metrics:celery_task_{kind}"


def _task_count(kind: str, task) -> None:
    """HINCRBY the task's counter. Never raises: a task's retry must not fail on a metric."""
    client, name = _redis(), getattr(task, "name", None)
    if client is None or not name:
        return
    try:
        client.hincrby(_task_counter_key(kind), name, 1)
    except Exception as exc:  # noqa: BLE001
        logger.warning("metrics: could not count a task %s in Redis", kind, extra={"error": str(exc)})


def _on_task_retry(sender=None, **kwargs) -> None:
    _task_count("retries", sender)


def _on_task_failure(sender=None, **kwargs) -> None:
    _task_count("failures", sender)


def connect_celery_signals() -> None:
    from celery import signals

    signals.task_retry.connect(_on_task_retry, weak=False, dispatch_uid="core.metrics.task_retry")
    signals.task_failure.connect(_on_task_failure, weak=False, dispatch_uid="core.metrics.task_failure")


def _tasks() -> Iterator[Metric]:
    client = _redis()
    if client is None:
        return
    for kind, documentation in TASK_COUNTERS.items():
        family = CounterMetricFamily(f"fulfil_celery_task_{kind}", documentation, labels=["task"])
        for name, count in sorted(client.hgetall(_task_counter_key(kind)).items()):
            family.add_metric([name.decode()], int(count))
        yield family


register("outbox", _outbox)
register("dead_letters", _dead_letters)
register("heartbeats", _heartbeats)
register("queues", _queues)
register("celery_tasks", _tasks)


class _ProjectCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "fulfil_metrics_collector_up",
            "1 if the collector's figures were read at this scrape, 0 if it failed (see the logs).",
            labels=["collector"],
        )
        for name, collect in _collectors.items():
            try:
                families = list(collect())
            except Exception:
                logger.exception("metrics: collector %s failed", name)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from families
        yield up


class _Scrape(Collector):
    """What one scrape serves: the request metrics (this process's, or all gunicorn workers'
    in multiprocess mode) and the project's figures."""

    def collect(self) -> Iterator[Metric]:
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:  # as prometheus_client decides its mode
            processes = CollectorRegistry()
            MultiProcessCollector(processes)
            yield from processes.collect()
        else:
            yield from REGISTRY.collect()
        yield from _ProjectCollector().collect()


# --- The endpoint -------------------------------------------------------------------------
def _allowed(request) -> bool:
    token = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    # Besides Prometheus' token, a superuser's session (the figures span every app's data,
    # more than any one model permission covers).
    user = getattr(request, "user", None)
    return bool(user and user.is_active and user.is_superuser)


@never_cache
def metrics_view(request):
    """Prometheus' scrape target: the bearer token METRICS_TOKEN, or a superuser's session."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    if not _allowed(request):
        if not settings.METRICS_TOKEN:
            raise Http404("No metrics endpoint: METRICS_TOKEN is not set.")
        response = HttpResponse("A valid bearer token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    if request.method == "HEAD":
        return HttpResponse(content_type=content_type)
    return HttpResponse(encoder(_Scrape()), content_type=content_type)
