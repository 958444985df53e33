"""Which database, broker and cache a command is configured for, said in one line each.

`make run` prints these at start and `make smoke` before its round trip, so a second shell
that reads another configuration (no service variables, say) shows it at once. Passwords
are hidden.
"""

from celery import current_app
from django.conf import settings
from kombu.utils.url import maybe_sanitize_url

EMBEDDED = "embedded default"


def database_in_use() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"SQLite {db['NAME']} ({EMBEDDED})"
    vendor = db["ENGINE"].rsplit(".", 1)[-1]
    user = f"{db['USER']}@" if db.get("USER") else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"{vendor} {user}{db.get('HOST') or 'localhost'}{port}/{db['NAME']}"


def broker_in_use() -> str:
    url = current_app.conf.broker_url
    if url.startswith("filesystem"):
        folder = current_app.conf.broker_transport_options.get("data_folder_in", "")
        return f"kombu filesystem transport {folder} ({EMBEDDED})"
    return maybe_sanitize_url(url)


def cache_in_use() -> str:
    cache = settings.CACHES["default"]
    if cache["BACKEND"].endswith("LocMemCache"):
        return f"local memory, per process ({EMBEDDED})"
    return maybe_sanitize_url(cache["LOCATION"])


def services_in_use() -> list[tuple[str, str]]:
    return [("database", database_in_use()), ("broker", broker_in_use()), ("cache", cache_in_use())]


def services_lines() -> str:
    return "\n".join(f"{name + ':':10}{value}" for name, value in services_in_use())
