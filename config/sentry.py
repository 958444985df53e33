"""Errors to Sentry, when SENTRY_DSN is set (config/settings/base.py calls `sentry_init` last).

The settings are loaded by every process (web, worker, beat), so each reports its unhandled
exceptions (a view's, a task's) and its ERROR log lines. No personal data is sent, which the
SDK 3's `data_collection` says per category (it replaced send_default_pii): no user identity
or client address, no cookies, no request bodies (sign-ups, payment webhooks); headers and
query parameters lose the values of sensitive names (the SDK's denylist: token, auth, key...).
No performance traces unless SENTRY_TRACES_SAMPLE_RATE asks for a share of requests and tasks.
"""

# What the SDK collects: the defaults minus what can hold personal or card data.
DATA_COLLECTION = {"user_info": False, "cookies": {"mode": "off"}, "http_bodies": []}


def sentry_init(*, dsn: str, environment: str, traces_sample_rate: float) -> bool:
    """Start the Sentry SDK with the Django and Celery integrations; nothing without a DSN."""
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment or None,  # None: the SDK's own default ("production")
        traces_sample_rate=traces_sample_rate,
        data_collection=DATA_COLLECTION,
        integrations=[DjangoIntegration(), CeleryIntegration()],
    )
    return True
