"""Tests run against the real PostgreSQL, RabbitMQ and Redis on localhost (override with TEST_*).

Only TEST_* variables configure the test suite. The shell's service variables
(DATABASE_URL, CELERY_BROKER_URL, REDIS_URL...), every other project variable and a .env
file in the project directory are ignored, whatever DJANGO_READ_DOT_ENV says: `make test`
has the same outcome in the shell that runs `make run` against real services as anywhere.
"""

import os

import environ

# Celery reads these from os.environ ahead of its configuration (celery.app.utils.Settings),
# and the worker processes tests start inherit os.environ: take them out of this process.
SHELL_SERVICE_VARIABLES = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_BROKER_READ_URL",
    "CELERY_BROKER_WRITE_URL",
    "CELERY_RESULT_BACKEND",
    "REDIS_URL",
    "EVENTS_BROKER_URL",
    "RABBITMQ_MANAGEMENT_URL",
)
for _name in SHELL_SERVICE_VARIABLES:
    os.environ.pop(_name, None)
os.environ["DJANGO_READ_DOT_ENV"] = "0"  # nor do the processes the tests start read .env

# The settings read the environment through django-environ only: while this module and base.py
# are imported they see the TEST_* variables alone (hence no .env, every other setting at its
# default); the real environment is put back at the end, for config.settings.bench.
# LOG_LEVEL changes what is logged, never an outcome (the benchmarks set it for their workers).
PASSED_THROUGH = ("LOG_LEVEL",)
TEST_ENVIRONMENT = {
    name: value for name, value in os.environ.items() if name.startswith("TEST_") or name in PASSED_THROUGH
}
_shell_environment = environ.Env.ENVIRON
environ.Env.ENVIRON = {**TEST_ENVIRONMENT, "DJANGO_READ_DOT_ENV": "0"}

from .base import *  # noqa: E402, F403
from .base import (  # noqa: E402
    EVENTS_BROKER_URL,
    REST_FRAMEWORK,
    cache_from_url,
    celery_broker,
    consumer_default,
    database_from_url,
    env,
    event_sinks,
)

DEBUG = False
INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
SECRET_KEY = "test-only-insecure-key"  # noqa: S105 - tests only
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]

DATABASES = {
    "default": database_from_url(env("TEST_DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/test"))
}
# Worker threads in tests open their own connections: close them after each task.
DATABASES["default"]["CONN_MAX_AGE"] = 0
CELERY_DB_REUSE_MAX = 0
CELERY_BROKER_URL, CELERY_BROKER_TRANSPORT_OPTIONS = celery_broker(
    env("TEST_CELERY_BROKER_URL", default="amqp://guest:guest@127.0.0.1:5672//")
)
REDIS_URL = env("TEST_REDIS_URL", default="redis://127.0.0.1:6379/15")
CACHES = {"default": cache_from_url(REDIS_URL)}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only; never in prod
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Worker processes a test starts reach that test's SMTP server and fakes through these (unset:
# e-mail stays in memory and SMS and Telegram are off, as for any test that does not set them).
if env("TEST_EMAIL_URL", default=""):
    vars().update(env.email("TEST_EMAIL_URL"))
    EMAIL_TIMEOUT = env.int("TEST_EMAIL_TIMEOUT", default=2)
SITE_URL = env("TEST_SITE_URL", default="") or SITE_URL
TWILIO_ACCOUNT_SID = env("TEST_TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env("TEST_TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM_NUMBER = env("TEST_TWILIO_FROM_NUMBER", default="")
TWILIO_API_URL = env("TEST_TWILIO_API_URL", default="")
# Events consumed inside the worker (core/events/consumer.py) as in production: on with a
# RabbitMQ broker; TEST_EVENTS_CONSUMER=0 runs the suite on a Celery task per subscriber.
EVENTS_CONSUMER = env.bool(
    "TEST_EVENTS_CONSUMER", default=consumer_default(CELERY_BROKER_URL, EVENTS_BROKER_URL)
)
# The time one subscriber may take with one event (a test's worker processes may shorten it).
EVENTS_SUBSCRIBER_TIME_LIMIT = env.int("TEST_EVENTS_SUBSCRIBER_TIME_LIMIT", default=60)
# Other buses the relay delivers to (docs/events.md, "Other buses"): none unless a test (or its worker
# processes, through TEST_EVENTS_SINKS) asks.
EVENTS_SINKS = event_sinks(
    env.list("TEST_EVENTS_SINKS", default=[]),
    embedded=False,
    redis_url=REDIS_URL,
    nats_url=env("TEST_NATS_URL", default="nats://127.0.0.1:4222"),
    kafka_servers=env("TEST_KAFKA_BOOTSTRAP_SERVERS", default=""),
)
for _options in EVENTS_SINKS.values():  # names of their own, e.g. for bench/events.py --sink
    if "PREFIX" in _options:
        _options["PREFIX"] = env("TEST_EVENTS_BUS_PREFIX", default=_options["PREFIX"])
    if "STREAM_NAME" in _options:
        _options["STREAM_NAME"] = env("TEST_EVENTS_NATS_STREAM", default=_options["STREAM_NAME"])
NOTIFICATIONS_LEASE_SECONDS = env.int("TEST_NOTIFICATIONS_LEASE_SECONDS", default=120)
# No quiet hours unless a test asks: a suite run at night must not hold its SMS till morning.
NOTIFICATIONS_QUIET_HOURS = env("TEST_NOTIFICATIONS_QUIET_HOURS", default="")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"anon": "10000/min", "user": "10000/min", "auth": "10000/min"},
}

environ.Env.ENVIRON = _shell_environment
