"""What a payment can be for: purposes that other apps register with payments.

An app that sells something (orders, bookings...) registers a Purpose from its
AppConfig.ready():

    class OrderPurpose(Purpose):
        name = "order"

        def payables(self, item_ids):
            return {order.number: Payable(...) for order in Order.objects.filter(number__in=item_ids)}

    purposes.register(OrderPurpose())

Payments then prices every item server-side through `payables()` before it creates a
payment, and refuses (with the reason, creating nothing) an item that is unknown, another
customer's, not payable now, or already paid. Payments knows no app by name: only this
registry.
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from payments.errors import PaymentErrorCode, PaymentRefused


class Payability(StrEnum):
    PAYABLE = "payable"
    PAID = "paid"  # paid already (by another payment, or at the desk)
    CLOSED = "closed"  # cancelled, expired, fulfilled...: it takes no money now


@dataclass(frozen=True)
class Payable:
    """One item as its app prices it for a payment now. Payments takes the amount from here only."""

    item_id: str
    customer_id: int
    amount: Decimal
    currency: str
    payability: Payability = Payability.PAYABLE
    reason: str = ""  # why it is not payable, in the app's words
    kind: str = "full"  # "deposit" when the amount is a deposit on the item
    description: str = ""
    deadline: datetime | None = None  # a payment for it expires no later than this


class Purpose(ABC):
    """How payments finds, checks and prices one app's items."""

    name: str  # the purpose's name in payments and in payment.* events: "order", "booking"...
    # Charged again later without the customer (subscriptions): its checkouts ask the gateway
    # to keep the payment method, and payments keep it once the payment succeeds.
    saves_methods: bool = False
    # A batch may name the items by what the customer knows them by instead of item ids:
    # POST /api/payments/batch {"<batch_field>": [...]}, mapped by items_named().
    batch_field: str = ""

    @abstractmethod
    def payables(self, item_ids: Sequence[str]) -> dict[str, Payable]:
        """The items among `item_ids` that exist, by id, priced now; an unknown id is left out.

        Called inside payments' transaction; it must only read.
        """

    def items_named(self, values: Sequence[str], customer_id: int) -> list[str]:
        """The item ids that `values` of `batch_field` name for this customer, in order; refuse
        (PaymentRefused) a value that is not the customer's or names nothing payable."""
        raise NotImplementedError(f"{self.name} names its items by id only")


PURPOSES: dict[str, Purpose] = {}


def batch_fields() -> dict[str, Purpose]:
    """The purposes whose items a batch may name by another field, by that field."""
    return {purpose.batch_field: purpose for purpose in PURPOSES.values() if purpose.batch_field}


def register(purpose: Purpose) -> None:
    """Register an app's purpose (from its AppConfig.ready); registering the same name twice is an error."""
    existing = PURPOSES.get(purpose.name)
    if existing is not None and type(existing) is not type(purpose):
        raise ValueError(f"two purposes are named {purpose.name!r}")
    PURPOSES[purpose.name] = purpose


def purpose_get(name: str) -> Purpose:
    try:
        return PURPOSES[name]
    except KeyError:
        known = ", ".join(sorted(PURPOSES)) or "none"
        raise PaymentRefused(
            f"Nothing can be paid for as {name!r} here (registered purposes: {known}).",
            code=PaymentErrorCode.PURPOSE_NOT_REGISTERED,
            extra={"fields": {"purpose": ["not registered"]}, "purpose": name},
        ) from None


def items_priced(*, purpose: str, item_ids: Sequence[str], customer_id: int) -> list[Payable]:
    """Price `item_ids` of `purpose` for `customer_id`, in the order given, or refuse them all.

    Refused whole, naming the first item at fault: a repeated id, an id that is unknown or
    another customer's (the same answer, so ids of others cannot be probed), an item already
    paid or not payable, or items in different currencies.
    """
    if not item_ids:
        raise PaymentRefused(
            "Name at least one item to pay for.",
            code=PaymentErrorCode.NO_ITEMS,
            extra={"fields": {"item_ids": ["at least one"]}},
        )
    seen: set[str] = set()
    for item_id in item_ids:
        if item_id in seen:
            raise item_refused(PaymentErrorCode.ITEM_REPEATED, purpose, item_id, "is named more than once")
        seen.add(item_id)
    found = purpose_get(purpose).payables(list(item_ids))
    items = []
    for item_id in item_ids:
        item = found.get(item_id)
        if item is None or item.customer_id != customer_id:
            raise item_refused(PaymentErrorCode.ITEM_NOT_FOUND, purpose, item_id, "is not one of yours")
        if item.payability == Payability.PAID:
            raise item_refused(PaymentErrorCode.ITEM_ALREADY_PAID, purpose, item_id, item.reason or "is paid")
        if item.payability != Payability.PAYABLE:
            raise item_refused(
                PaymentErrorCode.ITEM_NOT_PAYABLE, purpose, item_id, item.reason or "cannot be paid now"
            )
        items.append(item)
    currencies = {item.currency for item in items}
    if len(currencies) > 1:
        raise PaymentRefused(
            f"One payment takes one currency; these items are priced in {', '.join(sorted(currencies))}.",
            code=PaymentErrorCode.MIXED_CURRENCIES,
            extra={"purpose": purpose, "currencies": sorted(currencies)},
        )
    return items


def item_refused(code: PaymentErrorCode, purpose: str, item_id: str, why: str) -> PaymentRefused:
    return PaymentRefused(
        f"{purpose} {item_id} {why}.", code=code, extra={"purpose": purpose, "item_id": item_id}
    )
