"""Settings shared by every environment; values come from the environment (django-environ).

dev, test and prod import this module and set only what differs. Nothing here holds a
secret: the secret key, database and broker credentials are read from the environment,
with defaults only in dev and test.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from import_export.formats.base_formats import CSV

from core.logging import QUIET_TASK_LOGGERS, json_formatter

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()
# A local .env (written by `make run`, or by hand) is read unless DJANGO_READ_DOT_ENV=0;
# variables already in the environment win over it.
if env.bool("DJANGO_READ_DOT_ENV", default=True) and (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

PROJECT_NAME = env("PROJECT_NAME", default="Fulfil")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "console",  # the staff dashboard: before the admin, so its admin/index.html comes first
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc served from here, not from a CDN
    "django_celery_beat",
    "django_object_actions",  # buttons on an object's admin page (core.admin.object_action)
    "import_export",  # CSV exports of the lists the accountant needs
    "core",
    "accounts",
    "payments",
    "orders",
    "bookings",
    "subscriptions",
    "notifications",
]

MIDDLEWARE = [
    "core.logging.RequestIdMiddleware",
    "core.metrics.RequestMetricsMiddleware",  # request latency and responses by route (/metrics)
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


# --- Database -------------------------------------------------------------------------
# Services own their transactions (CONVENTIONS.md), so no ATOMIC_REQUESTS.
def database_from_url(url: str) -> dict:
    db = environ.Env.db_url_config(url)
    db["ATOMIC_REQUESTS"] = False
    if db["ENGINE"] == "django.db.backends.sqlite3":
        # Embedded default: web, worker and beat share one file; wait for locks, take them early.
        Path(db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        db["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    else:
        db["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
        db["CONN_HEALTH_CHECKS"] = True
        db.setdefault("OPTIONS", {})["connect_timeout"] = env.int("DB_CONNECT_TIMEOUT", default=5)
    return db


# With no DATABASE_URL the embedded default is a SQLite file under var/ (prod requires the URL).
DATABASES = {
    "default": database_from_url(env("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}"))
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# --- Cache (Redis in production; throttling and later the catalogue cache use it) --------
def cache_from_url(url: str) -> dict:
    """Redis when a URL is given, else the per-process local-memory cache (embedded default)."""
    if not url:
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": url,
        "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="fulfil"),
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
    }


REDIS_URL = env("REDIS_URL", default="")
CACHES = {"default": cache_from_url(REDIS_URL)}

# --- Auth -----------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- I18N -----------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ru", "Russian")]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = env("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- E-mail ---------------------------------------------------------------------------
EMAIL_CONFIG = env.email("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="shop@localhost")

# --- Payment gateways (used by the payments app; secrets only from the environment) ----
PAYMENT_ENV = env("PAYMENT_ENV", default="mock")  # mock | test | production
# The gateway of a payment that names none (with PAYMENT_ENV=mock every payment uses the sandbox).
PAYMENT_DEFAULT_GATEWAY = env("PAYMENT_DEFAULT_GATEWAY", default="sandbox")


def local_site_url() -> str:
    """Where the Procfile's web process listens (WEB_BIND:WEB_PORT), as a URL on this host.

    The default SITE_URL, so that `WEB_PORT=8010 make run` sends checkout pages and the
    sandbox's webhooks to port 8010. A wildcard bind (0.0.0.0, ::) is reached on 127.0.0.1.
    """
    host = env("WEB_BIND", default="127.0.0.1").strip("[]")
    if host in {"", "0.0.0.0", "::"}:  # noqa: S104 - recognising a wildcard, not binding to it
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{env.int('WEB_PORT', default=8000)}"


# The public base URL of this site: payment pages and webhooks are addressed from it. Unset,
# the web process's own address (WEB_BIND, WEB_PORT): right for `make run`, set it in production.
SITE_URL = env("SITE_URL", default="") or local_site_url()
PAYMENT_DEADLINE_MINUTES = env.int("PAYMENT_DEADLINE_MINUTES", default=30)  # unpaid after this: expired
PAYMENT_REVERIFY_AFTER_MINUTES = env.int(
    "PAYMENT_REVERIFY_AFTER_MINUTES", default=10
)  # pending this long: ask
# Paid payments are compared with their gateway again (a refund or chargeback made there, outside
# the system, is flagged) for this many days after they were made, each at most every N hours.
PAYMENT_PAID_RECHECK_DAYS = env.int("PAYMENT_PAID_RECHECK_DAYS", default=30)
PAYMENT_PAID_RECHECK_HOURS = env.int("PAYMENT_PAID_RECHECK_HOURS", default=6)
PAYMENT_REVERIFY_BATCH = env.int("PAYMENT_REVERIFY_BATCH", default=50)  # per gateway per pass (every 5 min)
# Each gateway's API base URL: empty, the provider's own (by PAYMENT_ENV where it has a test
# host); set it to reach the provider through a proxy, or a local fake in development.
PAYMENT_GATEWAYS = {
    "sandbox": {"secret": env("SANDBOX_WEBHOOK_SECRET", default="")},
    "paystack": {
        "secret_key": env("PAYSTACK_SECRET_KEY", default=""),
        "base_url": env("PAYSTACK_BASE_URL", default=""),
    },
    "yookassa": {
        "shop_id": env("YOOKASSA_SHOP_ID", default=""),
        "secret_key": env("YOOKASSA_SECRET_KEY", default=""),
        "base_url": env("YOOKASSA_BASE_URL", default=""),
    },
    "tinkoff": {
        "terminal_key": env("TINKOFF_TERMINAL_KEY", default=""),
        "password": env("TINKOFF_PASSWORD", default=""),
        "base_url": env("TINKOFF_BASE_URL", default=""),
    },
    "sberpay": {
        "username": env("SBERPAY_USERNAME", default=""),
        "password": env("SBERPAY_PASSWORD", default=""),
        "callback_token": env("SBERPAY_CALLBACK_TOKEN", default=""),
        "base_url": env("SBERPAY_BASE_URL", default=""),
    },
    "stripe": {
        "secret_key": env("STRIPE_SECRET_KEY", default=""),
        "webhook_secret": env("STRIPE_WEBHOOK_SECRET", default=""),
        "base_url": env("STRIPE_BASE_URL", default=""),
    },
}
# Seconds every gateway call of one API request may take in all (tries, retries and their
# pauses): a checkout answers 503 gateway_unavailable within it. Keep it below the web
# server's request timeout (gunicorn --timeout 30 in the Procfile, compose and the Dockerfile).
PAYMENT_GATEWAY_REQUEST_BUDGET_SECONDS = env.float("PAYMENT_GATEWAY_REQUEST_BUDGET_SECONDS", default=20.0)
# A webhook whose claim the gateway's API does not bear out yet (it says pending, the webhook
# says paid) is asked about this many times in all, this many seconds apart, then closed.
PAYMENT_WEBHOOK_CONFIRM_ATTEMPTS = env.int("PAYMENT_WEBHOOK_CONFIRM_ATTEMPTS", default=3)
PAYMENT_WEBHOOK_CONFIRM_INTERVAL_SECONDS = env.float("PAYMENT_WEBHOOK_CONFIRM_INTERVAL_SECONDS", default=15.0)
# Beat's webhook sweep: every this many seconds, stored webhooks never dispatched (their kick
# was lost, e.g. while the broker was down) get their task, and so do those dispatched longer
# than PAYMENT_WEBHOOK_REDISPATCH_SECONDS ago and still unprocessed (longer than a task's retries).
PAYMENT_WEBHOOK_SWEEP_SECONDS = env.int("PAYMENT_WEBHOOK_SWEEP_SECONDS", default=30)
PAYMENT_WEBHOOK_REDISPATCH_SECONDS = env.int("PAYMENT_WEBHOOK_REDISPATCH_SECONDS", default=600)

# --- REST framework and the OpenAPI schema ----------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Query parameters are checked (core.drf): a bad filter, ordering, limit, offset or cursor is a 400.
    "DEFAULT_PAGINATION_CLASS": "core.drf.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["core.drf.FilterBackend", "core.drf.OrderingFilter"],
    # DRF's parsers, refusing a body over DATA_UPLOAD_MAX_MEMORY_SIZE with a 413.
    "DEFAULT_PARSER_CLASSES": ["core.drf.JSONParser", "core.drf.FormParser", "core.drf.MultiPartParser"],
    # Anonymous and per-user limits let requests through while Redis is down; `auth` (logins) does not.
    "DEFAULT_THROTTLE_CLASSES": [
        "core.drf.FailOpenAnonRateThrottle",
        "core.drf.FailOpenUserRateThrottle",
        "core.drf.FailClosedScopedRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env("THROTTLE_ANON", default="120/min"),
        "user": env("THROTTLE_USER", default="600/min"),
        "auth": env("THROTTLE_AUTH", default="10/min"),
    },
    # drf-spectacular's, documenting every error response as the Error component (core.openapi).
    "DEFAULT_SCHEMA_CLASS": "core.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": f"{PROJECT_NAME} API",
    "DESCRIPTION": "Orders, bookings and subscription boxes, and the payments that pay for them.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a `status`: name each choice set after its model.
    "ENUM_NAME_OVERRIDES": {
        "PaymentStatusEnum": "payments.models.Payment.Status",
        "OrderStatusEnum": "orders.models.Order.Status",
        # a resource's kind (hall, staff) is not a payment's kind (full, deposit)
        "ResourceKindEnum": "bookings.models.Resource.Kind",
        "KindEnum": "payments.models.Payment.Kind",
        # a booking's payment status (unpaid, deposit_paid...) is not a payment's status
        "BookingPaymentStatusEnum": "bookings.models.Booking.PaymentStatus",
        "NotificationChannelEnum": "notifications.models.CHANNELS",
        "NotificationStatusEnum": "notifications.models.Notification.Status",
    },
    # Swagger UI and ReDoc from drf-spectacular-sidecar's static files: no CDN, no @latest.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # ...and no badge from validator.swagger.io either.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}


# --- Celery (topology and task defaults live in config/celery.py) -----------------------
def celery_broker(url: str) -> tuple[str, dict]:
    """The broker URL and its transport options.

    With no URL: the embedded default, kombu's server-less filesystem transport, driven by
    real worker and beat processes (never eager mode); messages are files under var/broker.
    With an AMQP URL: publisher confirms, so a publish returns only once RabbitMQ has it.
    With a Redis URL (for those who run Redis only): tasks are taken back after
    `visibility_timeout` if not acknowledged, which must outlast the longest countdown a task
    is retried with (an hour here; retries wait 10 minutes at most). Redis has no dead-letter
    queues: a task that fails for good is dropped from the broker (its error is logged, and a
    subscriber's is kept in its DeadLetter row); see docs/operations.md.
    """
    # Fail fast when the broker is down (a request must not hang on it): two tries, 1 s apart.
    fail_fast = {"max_retries": 2, "interval_start": 0, "interval_step": 1}
    if url.startswith(("redis://", "rediss://")):
        timeouts = {"socket_timeout": 5, "socket_connect_timeout": 5}
        return url, {**fail_fast, **timeouts, "visibility_timeout": 3600}
    if url:
        return url, {"confirm_publish": True, **fail_fast}
    root = Path(env("CELERY_FILESYSTEM_BROKER_DIR", default=str(BASE_DIR / "var" / "broker")))
    folders = {"queue": root / "queue", "processed": root / "processed", "control": root / "control"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return "filesystem://localhost//", {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        "store_processed": False,
    }


CELERY_BROKER_URL, CELERY_BROKER_TRANSPORT_OPTIONS = celery_broker(env("CELERY_BROKER_URL", default=""))


def consumer_default(broker_url: str, events_broker_url: str) -> bool:
    """Events consumed inside the worker when the tasks' broker is RabbitMQ and the relay
    publishes events to that same broker (the worker consumes them on its own connection)."""
    return broker_url.startswith(("amqp", "pyamqp")) and events_broker_url in ("", broker_url)


CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=None)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=120)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=150)
# Celery's Django fixup closes the worker's database connection around every task unless
# told to reuse it: reconnecting per task costs more than most tasks. Closed every N tasks.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=500)
RABBITMQ_MANAGEMENT_URL = env("RABBITMQ_MANAGEMENT_URL", default="")
# Bearer token Prometheus sends to GET /metrics (core.metrics); empty: only superusers'
# sessions may read it, and anyone else gets a 404.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
# The periodic tasks `manage.py setup_periodic_tasks` installs (core.periodic.PeriodicTaskSpec).
PERIODIC_TASKS = "config.periodic.PERIODIC_TASKS"
# /readyz answers 503 when no worker has recorded beat's heartbeat (every 30 s) for this long.
HEARTBEAT_STALE_SECONDS = env.int("HEARTBEAT_STALE_SECONDS", default=120)

# --- Event backbone (core.events; see docs/events.md) ---------------------------------
EVENTS_EXCHANGE = env("EVENTS_EXCHANGE", default="fulfil.events")  # durable topic exchange
EVENTS_BROKER_URL = env("EVENTS_BROKER_URL", default="")  # empty: the Celery broker
EVENTS_RELAY_BATCH_SIZE = env.int("EVENTS_RELAY_BATCH_SIZE", default=500)
EVENTS_RELAY_TIME_BUDGET = env.float("EVENTS_RELAY_TIME_BUDGET", default=20.0)  # seconds per relay task
EVENTS_RELAY_BACKOFF = env.float("EVENTS_RELAY_BACKOFF", default=1.0)  # first wait after a broker failure
# At most this long between the relay's tries while the broker fails: once it is back, what
# waits in the outbox goes out within this (plus EVENTS_SWEEP_SECONDS), well within a minute.
EVENTS_RELAY_MAX_BACKOFF = env.float("EVENTS_RELAY_MAX_BACKOFF", default=30.0)
EVENTS_CONFIRM_TIMEOUT = env.float("EVENTS_CONFIRM_TIMEOUT", default=10.0)
EVENTS_KICK_DEDUP_SECONDS = env.int("EVENTS_KICK_DEDUP_SECONDS", default=5)
EVENTS_SWEEP_SECONDS = env.int("EVENTS_SWEEP_SECONDS", default=5)
EVENTS_LAG_WARNING_SECONDS = env.int("EVENTS_LAG_WARNING_SECONDS", default=60)
# In-project subscribers consumed inside the worker, one message per event, from queues bound
# to the events exchange (core/events/consumer.py). On by default with RabbitMQ; the embedded
# filesystem broker (and any broker without per-message TTLs and dead-lettering) gets a
# Celery task per subscriber instead. Events a pool job takes, unacknowledged events a worker
# holds, and the time one subscriber may take with one event (then it is retried).
EVENTS_CONSUMER = env.bool("EVENTS_CONSUMER", default=consumer_default(CELERY_BROKER_URL, EVENTS_BROKER_URL))
EVENTS_CONSUMER_BATCH = env.int("EVENTS_CONSUMER_BATCH", default=25)
EVENTS_CONSUMER_PREFETCH = env.int("EVENTS_CONSUMER_PREFETCH", default=128)
EVENTS_SUBSCRIBER_TIME_LIMIT = env.int("EVENTS_SUBSCRIBER_TIME_LIMIT", default=60)


def event_sinks(
    names: list[str], *, embedded: bool, redis_url: str, nats_url: str, kafka_servers: str
) -> dict[str, dict]:
    """EVENTS_SINKS: the buses every committed event also goes to, by name, with their options
    (docs/events.md, "Other buses"). RabbitMQ's exchange always gets them (the in-project
    subscribers read it there), so `rabbitmq` may be listed but adds nothing. With none listed, the embedded
    default (no services) keeps them in memory. An unknown name stops the process here; a
    bad URL when the sinks are built, at start-up (core.apps)."""
    from django.core.exceptions import ImproperlyConfigured

    prefix = env("EVENTS_BUS_PREFIX", default="fulfil.events")
    known = {
        "redis": lambda: {
            "BACKEND": "redis_streams",
            "URL": redis_url,
            "PREFIX": prefix,
            "STREAM": env("EVENTS_REDIS_STREAM", default="per_domain"),
            "MAXLEN": env.int("EVENTS_REDIS_MAXLEN", default=100_000),
        },
        "nats": lambda: {
            "BACKEND": "nats",
            "URL": nats_url,
            "PREFIX": prefix,
            "STREAM_NAME": env("EVENTS_NATS_STREAM", default="FULFIL_EVENTS"),
        },
        "kafka": lambda: {
            "BACKEND": "kafka",
            "BOOTSTRAP_SERVERS": kafka_servers,
            "PREFIX": prefix,
            "TOPIC": env("EVENTS_KAFKA_TOPIC", default="per_domain"),
        },
        "memory": lambda: {"BACKEND": "memory"},
    }
    chosen = [name.strip() for name in names if name.strip() and name.strip() != "rabbitmq"]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise ImproperlyConfigured(
            f"EVENTS_SINKS names unknown buses {', '.join(unknown)}; "
            f"known: rabbitmq, {', '.join(known)} (docs/events.md, 'Other buses')"
        )
    if not names and embedded:
        chosen = ["memory"]
    return {name: known[name]() for name in dict.fromkeys(chosen)}


EVENTS_SINKS = event_sinks(
    env.list("EVENTS_SINKS", default=[]),
    embedded=CELERY_BROKER_URL.startswith("filesystem"),
    redis_url=env("EVENTS_REDIS_URL", default="") or REDIS_URL,
    nats_url=env("EVENTS_NATS_URL", default=""),
    kafka_servers=env("EVENTS_KAFKA_BOOTSTRAP_SERVERS", default=""),
)
# The AsyncAPI document (GET /api/events/asyncapi.json) for anyone, not only staff.
EVENTS_ASYNCAPI_PUBLIC = env.bool("EVENTS_ASYNCAPI_PUBLIC", default=False)
EVENTS_RETENTION_DAYS = env.int("EVENTS_RETENTION_DAYS", default=7)  # published outbox rows
EVENTS_PROCESSED_RETENTION_DAYS = env.int("EVENTS_PROCESSED_RETENTION_DAYS", default=30)

# --- Idempotency keys (core.idempotency; see docs/operations.md) ---------------------------
# Hours a key and its stored answer are kept (beat's core.idempotency.prune deletes older ones).
IDEMPOTENCY_RETENTION_HOURS = env.int("IDEMPOTENCY_RETENTION_HOURS", default=24)
# Seconds a running request holds its key (others get 409) if it never answers: above the
# web's 30 s request timeout, so only a process that died lets a retry run again.
IDEMPOTENCY_LOCK_SECONDS = env.int("IDEMPOTENCY_LOCK_SECONDS", default=60)

# --- Orders (orders; see docs/orders.md) -------------------------------------------------
ORDER_PAYMENT_MINUTES = env.int("ORDER_PAYMENT_MINUTES", default=30)  # stock held this long for payment
ORDER_MAX_LINE_QUANTITY = env.int("ORDER_MAX_LINE_QUANTITY", default=100)  # of one variant per order
ORDER_EXPIRE_BATCH = env.int("ORDER_EXPIRE_BATCH", default=500)  # overdue orders expired per beat run
CATALOGUE_CACHE_SECONDS = env.int("CATALOGUE_CACHE_SECONDS", default=300)  # 0: catalogue reads not cached

# --- Logging: one JSON line per record, with the request id or task id -----------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
# --- Admin ------------------------------------------------------------------------------
# Exports from the admin's lists are CSV (django-import-export); object buttons post.
EXPORT_FORMATS = [CSV]
DJANGO_OBJECT_ACTIONS_DEFAULT_HTTP_METHOD = "POST"
# A cell that starts with "=" loses it, so text a customer typed cannot run as a formula
# when the accountant opens the export in a spreadsheet.
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "core.logging.ContextFilter"},
        "quiet_tasks": {"()": "core.logging.QuietTasksFilter"},
    },
    "formatters": {"json": json_formatter()},  # gunicorn.conf.py uses it too
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["context"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "amqp": {"level": "WARNING"},
        "kombu": {"level": "WARNING"},
        "twilio.http_client": {"level": "WARNING"},  # a line per request, with the recipient's number
        "urllib3": {"level": "INFO"},  # at DEBUG it logs request lines: Telegram's carry the bot token
        # The frequent housekeeping tasks' "received"/"succeeded"/"Sending due task" lines at DEBUG.
        **{name: {"filters": ["quiet_tasks"]} for name in QUIET_TASK_LOGGERS},
    },
}

# --- Bookings (see docs/bookings.md) ----------------------------------------------------
BOOKING_HOLD_MINUTES = env.int("BOOKING_HOLD_MINUTES", default=15)  # unpaid hold (and payment) deadline
BOOKING_DEPOSIT_PERCENT = env.int("BOOKING_DEPOSIT_PERCENT", default=30)  # percent of the total
BOOKING_FREE_CANCEL_HOURS = env.int("BOOKING_FREE_CANCEL_HOURS", default=24)  # full refund up to this notice
# booking.reminder this long before each confirmed booking, once per window (e.g. a day and two hours).
BOOKING_REMINDER_HOURS = sorted(env.list("BOOKING_REMINDER_HOURS", cast=int, default=[24, 2]), reverse=True)
BOOKING_MAX_DAYS_AHEAD = env.int("BOOKING_MAX_DAYS_AHEAD", default=90)  # furthest start one can book
BOOKING_AVAILABILITY_MAX_DAYS = env.int("BOOKING_AVAILABILITY_MAX_DAYS", default=62)  # one query's window

# --- Subscriptions (see docs/subscriptions.md) ------------------------------------------
# A failed renewal is charged again this many days after the first failure (past_due meanwhile);
# after the last, the invoice is uncollectible and the subscription paused (or cancelled).
SUBSCRIPTION_DUNNING_DAYS = env.list("SUBSCRIPTION_DUNNING_DAYS", cast=int, default=[1, 3, 5])
SUBSCRIPTION_DUNNING_FINAL = env.str("SUBSCRIPTION_DUNNING_FINAL", default="pause")  # or "cancel"
if SUBSCRIPTION_DUNNING_FINAL not in ("pause", "cancel"):
    raise ImproperlyConfigured("SUBSCRIPTION_DUNNING_FINAL must be pause or cancel")
SUBSCRIPTION_RENEWAL_BATCH = env.int("SUBSCRIPTION_RENEWAL_BATCH", default=500)  # due ones read at a time
SUBSCRIPTION_RENEWAL_EVERY_SECONDS = env.int("SUBSCRIPTION_RENEWAL_EVERY_SECONDS", default=600)
SUBSCRIPTION_UNPAID_DAYS = env.int("SUBSCRIPTION_UNPAID_DAYS", default=7)  # never paid: cancelled after

# --- Notifications (see docs/notifications.md) ------------------------------------------
# A message is tried this many times in all (backoff with jitter from the base, doubling,
# capped at an hour), then failed. A sender holds a message for NOTIFICATIONS_LEASE_SECONDS
# (longer than any channel's timeout); past it, the sweep takes the message over.
NOTIFICATIONS_MAX_ATTEMPTS = env.int("NOTIFICATIONS_MAX_ATTEMPTS", default=5)
NOTIFICATIONS_RETRY_BACKOFF_SECONDS = env.float("NOTIFICATIONS_RETRY_BACKOFF_SECONDS", default=30.0)
NOTIFICATIONS_LEASE_SECONDS = env.int("NOTIFICATIONS_LEASE_SECONDS", default=120)
NOTIFICATIONS_SWEEP_SECONDS = env.int("NOTIFICATIONS_SWEEP_SECONDS", default=60)
# A queued message whose task has not taken it this long after it was due is sent again by the sweep.
NOTIFICATIONS_SWEEP_GRACE_SECONDS = env.int("NOTIFICATIONS_SWEEP_GRACE_SECONDS", default=120)
# New customers' quiet hours for SMS and Telegram, in their timezone ("" for none).
NOTIFICATIONS_QUIET_HOURS = env("NOTIFICATIONS_QUIET_HOURS", default="22:00-08:00")
# SMS through Twilio: unset, SMS are skipped. TWILIO_API_URL reaches Twilio through a proxy
# or a local fake (empty: https://api.twilio.com).
TWILIO_ACCOUNT_SID = env("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM_NUMBER = env("TWILIO_FROM_NUMBER", default="")
TWILIO_API_URL = env("TWILIO_API_URL", default="")
TWILIO_TIMEOUT_SECONDS = env.float("TWILIO_TIMEOUT_SECONDS", default=10.0)
# Telegram's Bot API: unset, Telegram is skipped. The webhook's secret is checked on every update.
TELEGRAM_BOT_TOKEN = env("TELEGRAM_BOT_TOKEN", default="")
TELEGRAM_BOT_USERNAME = env("TELEGRAM_BOT_USERNAME", default="")
TELEGRAM_WEBHOOK_SECRET = env("TELEGRAM_WEBHOOK_SECRET", default="")
TELEGRAM_STAFF_CHAT_ID = env("TELEGRAM_STAFF_CHAT_ID", default="")
TELEGRAM_API_URL = env("TELEGRAM_API_URL", default="https://api.telegram.org")
TELEGRAM_TIMEOUT_SECONDS = env.float("TELEGRAM_TIMEOUT_SECONDS", default=10.0)
TELEGRAM_LINK_MINUTES = env.int("TELEGRAM_LINK_MINUTES", default=30)  # a deep link's token is valid this long

# --- Errors to Sentry (config/sentry.py): off unless SENTRY_DSN is set ----------------------
SENTRY_DSN = env("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env("SENTRY_ENVIRONMENT", default="")  # empty: Sentry's "production"
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)  # share of requests traced

from config.sentry import sentry_init  # noqa: E402 - last: every process loads the settings

sentry_init(dsn=SENTRY_DSN, environment=SENTRY_ENVIRONMENT, traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE)
