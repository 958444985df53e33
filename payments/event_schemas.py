"""The data of the events payments publishes (payment.*, payment_method.*), as it travels.

Registered from PaymentsConfig.ready(); built by payments.event_data and payments.methods.
"""

from pydantic import Field

from core.events.schemas import Currency, EventData, Money, optional


class Allocation(EventData):
    """What the payment pays for one item, and what that item did with the money."""

    purpose: str = Field(description="The registered purpose of the item: order, booking, subscription...")
    purpose_id: str = Field(description="The item's id within its purpose")
    amount: Money
    refunded_amount: Money = Field(description="Refunded from this item so far, in all")
    kind: str = Field(description="full or deposit")
    outcome: str = Field(description="open, accepted, held or refused")


class RefundAllocation(EventData):
    """What one refund took from one item."""

    purpose: str
    purpose_id: str
    amount: Money


class PaymentData(EventData):
    payment_id: str = Field(examples=["pay_3K9Q..."])
    purpose: str
    customer_id: int
    amount: Money
    currency: Currency
    kind: str = Field(description="full, or deposit when every allocation is a deposit")
    status: str = Field(description="The payment's status after the change the event reports")
    allocations: list[Allocation]
    purpose_id: str = optional("The one item's id, when the payment pays exactly one item")
    off_session: bool = optional("Present (true) when charged to a saved method, without the customer")


class PaymentCreated(PaymentData):
    pass


class PaymentCompleted(PaymentData):
    late: bool = optional("Present (true) when it succeeded after it had expired, failed or been cancelled")


class PaymentFailed(PaymentData):
    error: str = Field(description="The gateway's reason, in its words (may be empty)")


class PaymentCancelled(PaymentData):
    reason: str = optional("expired, or gateway_refused; absent when the gateway reported the cancellation")
    error: str = optional("The gateway's refusal, with reason gateway_refused")


class PaymentFlagged(PaymentData):
    reason: str = Field(description="What staff must look at (this flag's reason only)")


class PaymentRefunded(PaymentData):
    amount: Money = Field(description="This refund's amount (the payment's is payment_amount)")
    payment_amount: Money
    refund_id: str = Field(examples=["ref_..."])
    reason: str
    full: bool = Field(description="Whether the refund is for all of the payment")
    refund_allocations: list[RefundAllocation] = Field(description="What this refund took from each item")


class PaymentMethodData(EventData):
    method_id: str = Field(examples=["spm_..."])
    customer_id: int
    gateway: str
    label: str = Field(description="A label such as 'Visa *4242'; never card data")


class PaymentMethodSaved(PaymentMethodData):
    payment_id: str = Field(description="The payment whose success saved the method")


class PaymentMethodDeleted(PaymentMethodData):
    pass


SCHEMAS: dict[str, type[EventData]] = {
    "payment.created": PaymentCreated,
    "payment.completed": PaymentCompleted,
    "payment.failed": PaymentFailed,
    "payment.cancelled": PaymentCancelled,
    "payment.refunded": PaymentRefunded,
    "payment.flagged": PaymentFlagged,
    "payment_method.saved": PaymentMethodSaved,
    "payment_method.deleted": PaymentMethodDeleted,
}
