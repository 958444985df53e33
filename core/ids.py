"""Public ids: what the API and events show instead of database keys."""

import secrets


def public_id(prefix: str) -> str:
    """An unguessable id like "pay_9f3kQ2xYv1aB7cDe" (96 bits), letters and digits only after
    the prefix, so it reads and copies as one word."""
    return f"{prefix}_{secrets.token_urlsafe(12).replace('-', 'x').replace('_', 'y')}"
