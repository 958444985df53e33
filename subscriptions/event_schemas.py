"""The data of the events subscriptions publishes (subscription.*, invoice.*, toybox.*), as it
travels.

Registered from SubscriptionsConfig.ready(); built by subscriptions.services.common.
"""

from datetime import datetime

from pydantic import Field

from core.events.schemas import Currency, EventData, Money, optional


class SubscriptionData(EventData):
    subscription_id: str = Field(examples=["sub_..."])
    user_id: int = Field(description="The customer (also customer_id)")
    customer_id: int
    child_id: int
    plan_id: int
    status: str
    current_period_start: datetime | None
    current_period_end: datetime | None
    next_renewal_at: datetime | None
    cancel_at_period_end: bool


class SubscriptionCreated(SubscriptionData):
    pass


class SubscriptionActivated(SubscriptionData):
    invoice_id: str = Field(description="The invoice whose payment started the first period")


class SubscriptionRenewed(SubscriptionData):
    invoice_id: str = optional("The invoice that paid the new period (absent for a skipped one)")
    skipped: bool = optional("Present (true) when the period was skipped: no charge, no box")


class SubscriptionPastDue(SubscriptionData):
    invoice_id: str


class SubscriptionPaused(SubscriptionData):
    reason: str


class SubscriptionResumed(SubscriptionData):
    pass


class SubscriptionCancelled(SubscriptionData):
    at_period_end: bool = Field(description="true: it runs to the end of the paid period")
    reason: str
    voided_invoices: list[str] = optional("With a cancellation now: the open invoices voided")


class InvoiceData(EventData):
    invoice_id: str = Field(description="The invoice's number", examples=["INV-K7Q2-M9XD"])
    subscription_id: str
    user_id: int
    customer_id: int
    amount: Money
    currency: Currency
    period_start: datetime
    period_end: datetime
    status: str
    attempts: int = Field(description="Charges of a saved method tried")
    next_attempt_at: datetime | None
    payment_url: str = Field(description="Where the customer can pay it (may be empty)")


class InvoiceCreated(InvoiceData):
    pass


class InvoicePaid(InvoiceData):
    payment_id: str


class InvoicePaymentFailed(InvoiceData):
    payment_id: str | None
    error: str
    final: bool = Field(description="true: no more attempts; the invoice is uncollectible")


class Toy(EventData):
    sku: str
    name: str


class ToyboxData(EventData):
    toybox_id: str = Field(examples=["box_..."])
    user_id: int
    customer_id: int
    child_id: int
    subscription_id: str
    payment_id: str = Field(description="The payment of the invoice that paid the box's period")
    invoice_id: str
    period_start: datetime
    status: str
    toys: list[Toy]


class ToyboxCreated(ToyboxData):
    pass


class ToyboxShort(ToyboxData):
    missing: int = Field(description="Toys the stock could not provide")


class ToyboxShipped(ToyboxData):
    tracking_number: str


SCHEMAS: dict[str, type[EventData]] = {
    "subscription.created": SubscriptionCreated,
    "subscription.activated": SubscriptionActivated,
    "subscription.renewed": SubscriptionRenewed,
    "subscription.past_due": SubscriptionPastDue,
    "subscription.paused": SubscriptionPaused,
    "subscription.resumed": SubscriptionResumed,
    "subscription.cancelled": SubscriptionCancelled,
    "invoice.created": InvoiceCreated,
    "invoice.paid": InvoicePaid,
    "invoice.payment_failed": InvoicePaymentFailed,
    "toybox.created": ToyboxCreated,
    "toybox.short": ToyboxShort,
    "toybox.shipped": ToyboxShipped,
}
