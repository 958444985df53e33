"""The data of the events orders publishes (order.*, product.updated, stock.low), as it travels.

Registered from OrdersConfig.ready(); built by orders.services.order_event_data,
orders.catalogue and orders.stock.
"""

from pydantic import Field

from core.events.schemas import Currency, EventData, Money, optional


class OrderData(EventData):
    order_id: str = Field(description="The order's number (also in `number`)")
    number: str
    customer_id: int
    status: str = Field(description="The order's status after the change")
    total: Money
    currency: Currency
    payment_id: str | None = Field(description="The order's current payment, if it has one")


class OrderCreated(OrderData):
    lines: int = Field(description="How many lines the order has")


class OrderPaid(OrderData):
    late: bool = optional("Present (true) when paid after it had expired or been cancelled")


class OrderCancelled(OrderData):
    reason: str


class OrderExpired(OrderData):
    pass


class OrderFulfilled(OrderData):
    pass


class OrderRefunded(OrderData):
    amount: Money = Field(description="The amount refunded")


class ProductUpdated(EventData):
    """One product changed, or (product_id null) a whole category did."""

    product_id: int | None
    slug: str | None
    category_id: int | None
    reason: str = Field(description="edited, stock, category, ...")
    category_slug: str | None = optional("With a category's event (product_id null)")


class StockLow(EventData):
    variant_id: int
    sku: str
    product_id: int
    available: int = Field(description="Available stock after the change")
    threshold: int = Field(description="The variant's low-stock threshold it went under")


SCHEMAS: dict[str, type[EventData]] = {
    "order.created": OrderCreated,
    "order.paid": OrderPaid,
    "order.cancelled": OrderCancelled,
    "order.fulfilled": OrderFulfilled,
    "order.expired": OrderExpired,
    "order.refunded": OrderRefunded,
    "product.updated": ProductUpdated,
    "stock.low": StockLow,
}
