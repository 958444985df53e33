"""Benchmarks (bench/): the local services of the tests, but a database of their own and
production's connection handling, so that what is measured is what production would do."""

from .base import CELERY_DB_REUSE_MAX as PRODUCTION_DB_REUSE_MAX
from .base import database_from_url, env
from .test import *  # noqa: F403

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "tests.testapp"]
DATABASES = {
    "default": database_from_url(
        env("BENCH_DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/fulfil_bench")
    )
}
CELERY_DB_REUSE_MAX = PRODUCTION_DB_REUSE_MAX
# bench/webhooks.py serves the project under gunicorn with one extra, bare view to compare
# against (bench/urls.py: the project's urlpatterns plus /bench/bare). DEBUG stays False
# and ALLOWED_HOSTS (from test) accepts 127.0.0.1.
ROOT_URLCONF = "bench.urls"
# The load generators send thousands of requests a second from one address: rate limits stay
# on (their Redis round trip is part of what a request costs) but never refuse.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"anon": "100000000/min", "user": "100000000/min", "auth": "100000000/min"},
}
