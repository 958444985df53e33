"""Write a development .env with fresh random secrets, once (never overwrites an existing one).

Used by `make run`. Settings read .env; variables already set in the environment win.
"""

import secrets
import sys
from pathlib import Path

ENV_FILE = Path(__file__).resolve().parent.parent / ".env"


def main() -> int:
    if ENV_FILE.exists():
        return 0
    ENV_FILE.write_text(
        "# Written by `make run` for local development. Not for production: see .env.example.\n"
        "DJANGO_SETTINGS_MODULE=config.settings.dev\n"
        f"DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}\n"
        f"SANDBOX_WEBHOOK_SECRET={secrets.token_urlsafe(32)}\n"
        f"FLOWER_BASIC_AUTH=admin:{secrets.token_urlsafe(12)}\n"
        "DEMO_STAFF_EMAIL=admin@example.com\n"
        f"DEMO_STAFF_PASSWORD={secrets.token_urlsafe(12)}\n"
        "# Uncomment to use the real services instead of the embedded defaults:\n"
        "# DATABASE_URL=postgres://postgres@127.0.0.1:5432/fulfil\n"
        "# CELERY_BROKER_URL=amqp://guest:guest@127.0.0.1:5672//\n"
        "# REDIS_URL=redis://127.0.0.1:6379/0\n"
    )
    print(f"wrote {ENV_FILE} with fresh development secrets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
