"""Staff views of payments. Nothing here edits a status: the buttons call the services the API
and the tasks call, and every page of a system-written row is read-only (no Save button).

- payments.py: payments and the flagged ones, with Refund..., Re-verify and Resolve the flag;
- records.py: refunds, the webhook inbox (Re-process) and the sandbox's saved cards;
- parts.py: what a payment's page shows with it (allocations, ledger, refunds, webhooks) and
  the links from a payment to what it pays for.
"""

from payments.admin import payments, records  # noqa: F401 - each registers its model admins
