"""Production: every secret and service must come from the environment; no defaults.

A missing DJANGO_SECRET_KEY, DATABASE_URL, CELERY_BROKER_URL, REDIS_URL or ALLOWED_HOSTS
stops the process at import with ImproperlyConfigured.
"""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import cache_from_url, celery_broker, database_from_url, env

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
DATABASES = {"default": database_from_url(env("DATABASE_URL"))}
CELERY_BROKER_URL, CELERY_BROKER_TRANSPORT_OPTIONS = celery_broker(env("CELERY_BROKER_URL"))
REDIS_URL = env("REDIS_URL")
# No default: "mock" sends every payment to the sandbox, whose page lets anyone "pay".
PAYMENT_ENV = env("PAYMENT_ENV")
if PAYMENT_ENV not in {"mock", "test", "production"}:
    raise ImproperlyConfigured(f"PAYMENT_ENV must be mock, test or production, not {PAYMENT_ENV!r}")
PAYMENT_DEFAULT_GATEWAY = env("PAYMENT_DEFAULT_GATEWAY", default="sandbox" if PAYMENT_ENV == "mock" else "")
if PAYMENT_ENV == "production" and PAYMENT_DEFAULT_GATEWAY in {"", "sandbox"}:
    raise ImproperlyConfigured("With PAYMENT_ENV=production set PAYMENT_DEFAULT_GATEWAY to a real gateway")
CACHES = {"default": cache_from_url(REDIS_URL)}

# HTTPS everywhere; the proxy in front terminates TLS and says so.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
# Probes and the Prometheus scrape may come over plain HTTP from inside the private network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
# Preload is on so `check --deploy` is clean; set SECURE_HSTS_PRELOAD=0 before the domain is ready.
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
