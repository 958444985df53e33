"""Tests run against the real PostgreSQL, RabbitMQ and Redis on localhost (override with env)."""

from .base import *  # noqa: F403
from .base import REST_FRAMEWORK, cache_from_url, celery_broker, database_from_url, env

DEBUG = False
INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
SECRET_KEY = env("DJANGO_SECRET_KEY", default="test-only-insecure-key")
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
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"anon": "10000/min", "user": "10000/min", "auth": "10000/min"},
}
