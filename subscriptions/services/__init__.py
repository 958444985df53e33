"""Writes on subscriptions, by subdomain: children, the lifecycle, billing and dunning,
renewal, and toyboxes. Each owns its transaction, locks the subscription first (then its
invoice, then payments' rows), follows subscriptions.transitions and publishes events in the
same transaction."""

from subscriptions.services.billing import (
    invoice_attempt_failed,
    invoice_charge,
    invoice_charge_postponed,
    invoice_held,
    invoice_paid,
    invoices_paid_by,
)
from subscriptions.services.children import child_create, child_delete, child_update
from subscriptions.services.lifecycle import (
    subscription_cancel,
    subscription_create,
    subscription_pause,
    subscription_resume,
    subscription_skip,
    subscriptions_expire_unpaid,
)
from subscriptions.services.renewals import (
    invoice_charge_request,
    renewals_dispatch,
    subscription_renew,
    subscriptions_renew,
)
from subscriptions.services.toyboxes import (
    toybox_build,
    toybox_deliver,
    toybox_rebuild,
    toybox_ship,
    toyboxes_sweep,
)

__all__ = [
    "child_create",
    "child_delete",
    "child_update",
    "invoice_attempt_failed",
    "invoice_charge",
    "invoice_charge_postponed",
    "invoice_charge_request",
    "invoice_held",
    "invoice_paid",
    "invoices_paid_by",
    "renewals_dispatch",
    "subscription_cancel",
    "subscription_create",
    "subscription_pause",
    "subscription_renew",
    "subscription_resume",
    "subscription_skip",
    "subscriptions_expire_unpaid",
    "subscriptions_renew",
    "toybox_build",
    "toybox_deliver",
    "toybox_rebuild",
    "toybox_ship",
    "toyboxes_sweep",
]
