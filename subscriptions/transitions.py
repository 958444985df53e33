"""Which status may follow which, for subscriptions, invoices and toyboxes."""

from core.transitions import Transitions

SUBSCRIPTION = Transitions(
    {
        "pending_payment": {"active", "cancelled"},
        "active": {"active", "past_due", "paused", "cancelled"},  # active -> active: renewed
        "past_due": {"active", "paused", "cancelled"},
        "paused": {"active", "past_due", "cancelled"},  # resumed owing an invoice: past_due
        "cancelled": set(),
    },
    name="subscription",
    repeatable={"active"},
)

INVOICE = Transitions(
    {"open": {"paid", "void", "uncollectible"}, "paid": set(), "void": set(), "uncollectible": set()},
    name="invoice",
)

TOYBOX = Transitions(
    {
        "building": {"ready", "short"},
        "short": {"ready", "short"},  # rebuilt once stock arrives
        "ready": {"shipped"},
        "shipped": {"delivered"},
        "delivered": set(),
    },
    name="toybox",
    repeatable={"short"},
)
