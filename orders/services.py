"""Writes on carts and orders. Each owns its transaction, locks the order row first, follows
orders.transitions, writes an audit row and publishes an order.* event.

Locks are taken in one order everywhere: cart, then order, then the payment and its
allocation (payments.policy) when the order reads or changes it, then variants (by primary
key), so concurrent checkouts, payments and expiries cannot deadlock. How an order's
payment is opened, closed and refunded is payments' policy (payments.policy); orders
decides only what the order does.
"""

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import events
from core.errors import BusinessRuleViolation, InvalidInput, NotFound
from core.money import quantize
from orders import stock
from orders.models import Cart, CartItem, Order, OrderAudit, OrderLine, Variant
from orders.purposes import PURPOSE
from orders.transitions import ORDER
from payments import policy
from payments.policy import Completion

# --- Cart ----------------------------------------------------------------------------------


def _sellable(variant_id: int, *, field: str = "variant_id") -> Variant:
    variant = Variant.objects.select_related("product").filter(pk=variant_id).first()
    if variant is None:
        raise InvalidInput(
            f"There is no variant {variant_id}.",
            code="unknown_variant",
            extra={"fields": {field: ["unknown"]}},
        )
    if not (variant.is_active and variant.product.is_active):
        raise BusinessRuleViolation(
            f"{variant.product.name} ({variant.sku}) is not on sale.",
            code="not_on_sale",
            extra={"fields": {field: ["not on sale"]}},
        )
    return variant


def _check_quantity(variant: Variant, quantity: int) -> None:
    if quantity <= 0:
        raise InvalidInput("The quantity must be at least 1.", extra={"fields": {"quantity": ["at least 1"]}})
    if quantity > settings.ORDER_MAX_LINE_QUANTITY:
        raise InvalidInput(
            f"At most {settings.ORDER_MAX_LINE_QUANTITY} of one variant per order.",
            extra={"fields": {"quantity": [f"at most {settings.ORDER_MAX_LINE_QUANTITY}"]}},
        )
    if quantity > variant.stock_available:
        raise BusinessRuleViolation(
            f"Only {variant.stock_available} of {variant.sku} in stock.",
            code="out_of_stock",
            extra={
                "fields": {"quantity": [f"{variant.stock_available} in stock"]},
                "available": variant.stock_available,
            },
        )


def _cart_locked(customer_id: int) -> Cart:
    Cart.objects.get_or_create(customer_id=customer_id)
    return Cart.objects.select_for_update().get(customer_id=customer_id)


def cart_item_add(*, customer_id: int, variant_id: int, quantity: int) -> CartItem:
    """Put `quantity` more of a variant in the customer's cart (stock is held only at checkout)."""
    with transaction.atomic():
        cart = _cart_locked(customer_id)
        variant = _sellable(variant_id)
        item = cart.items.filter(variant=variant).first()
        other = cart.items.exclude(variant__currency=variant.currency).select_related("variant").first()
        if other is not None:
            raise BusinessRuleViolation(
                f"The cart holds {other.variant.currency} items; "
                f"{variant.sku} is priced in {variant.currency}.",
                code="currency_mismatch",
                extra={"fields": {"variant_id": ["another currency"]}},
            )
        if quantity <= 0:
            _check_quantity(variant, quantity)
        total = quantity + (item.quantity if item else 0)
        _check_quantity(variant, total)
        if item is None:
            item = CartItem.objects.create(cart=cart, variant=variant, quantity=total)
        else:
            item.quantity = total
            item.save(update_fields=["quantity"])
        cart.save(update_fields=["updated_at"])
    return item


def cart_item_set(*, customer_id: int, item_id: int, quantity: int) -> CartItem | None:
    """Set an item's quantity; 0 removes it (returns None)."""
    with transaction.atomic():
        cart = _cart_locked(customer_id)
        item = cart.items.select_related("variant__product").filter(pk=item_id).first()
        if item is None:
            raise NotFound(f"Your cart has no item {item_id}.")
        if quantity == 0:
            item.delete()
            return None
        _check_quantity(_sellable(item.variant_id), quantity)
        item.quantity = quantity
        item.save(update_fields=["quantity"])
        cart.save(update_fields=["updated_at"])
    return item


# --- Checkout and payment -------------------------------------------------------------------


def order_event_data(order: Order, **extra: Any) -> dict[str, Any]:
    return {
        "order_id": order.number,
        "number": order.number,
        "customer_id": order.customer_id,
        "status": order.status,
        "total": quantize(order.total, order.currency),
        "currency": order.currency,
        "payment_id": order.payment.public_id if order.payment_id else None,
        **extra,
    }


def _audit(order: Order, *, actor: str, note: str = "", from_status: str = "", to_status: str = "") -> None:
    OrderAudit.objects.create(
        order=order, actor=actor, note=note, from_status=from_status, to_status=to_status
    )


def _move(order: Order, target: str, *, actor: str, note: str = "", fields: tuple[str, ...] = ()) -> None:
    ORDER.check(order.status, target)
    source = order.status
    order.status = target
    now = timezone.now()
    stamp = {"paid": "paid_at", "fulfilled": "fulfilled_at"}.get(target, "closed_at")
    setattr(order, stamp, now)
    order.save(update_fields=["status", stamp, "updated_at", *fields])
    _audit(order, actor=actor, note=note, from_status=source, to_status=target)


def _new_payment(order: Order, *, gateway: str | None):
    """The order's payment, opened by payments' policy (priced from the order; due by its deadline)."""
    return policy.payment_open(
        customer_id=order.customer_id, purpose=PURPOSE, item_ids=[order.number], gateway=gateway
    )


def order_checkout(*, customer_id: int, gateway: str | None = None) -> Order:
    """Turn the customer's cart into an order awaiting payment, its stock held, its payment created.

    Everything commits together or not at all: a shortfall (`out_of_stock`) reserves nothing.
    The payment's checkout is opened afterwards (payments.services.payment_checkout_open: a
    network call).
    """
    with transaction.atomic():
        cart = _cart_locked(customer_id)
        items = list(cart.items.select_related("variant__product").order_by("variant_id"))
        if not items:
            raise BusinessRuleViolation("The cart is empty.", code="cart_empty")
        for index, item in enumerate(items):
            _sellable(item.variant_id, field=f"items[{index}].variant_id")
        stock.stock_reserve(stock.quantities_of(items))
        currency = items[0].variant.currency
        total = sum((item.variant.price * item.quantity for item in items), Decimal(0))
        order = Order.objects.create(
            customer_id=customer_id,
            currency=currency,
            total=quantize(total, currency),
            deadline=timezone.now() + timedelta(minutes=settings.ORDER_PAYMENT_MINUTES),
        )
        OrderLine.objects.bulk_create(
            OrderLine(
                order=order,
                variant=item.variant,
                sku=item.variant.sku,
                name=f"{item.variant.product.name} {item.variant.name}".strip(),
                unit_price=item.variant.price,
                quantity=item.quantity,
            )
            for item in items
        )
        order.payment = _new_payment(order, gateway=gateway)
        order.save(update_fields=["payment", "updated_at"])
        _audit(order, actor=f"customer {customer_id}", to_status=order.status, note="checkout")
        events.publish("order.created", order_event_data(order, lines=len(items)))
        cart.items.all().delete()
    return order


def order_payment_renew(*, order_id: int, gateway: str | None = None) -> Order:
    """Give an unpaid order a payment the customer can pay now.

    The current payment if it is still open; a new one after it failed, was cancelled or
    expired, as long as the order's deadline has not passed.
    """
    with transaction.atomic():
        order = Order.objects.select_for_update(of=("self",)).select_related("payment").get(pk=order_id)
        if order.status != Order.Status.PENDING_PAYMENT:
            raise BusinessRuleViolation(f"The order is {order.status}: nothing to pay.", code="not_payable")
        if order.deadline <= timezone.now():
            raise BusinessRuleViolation(
                "The order's payment window has closed.", code="payment_window_closed"
            )
        if order.payment_id and policy.payment_is_open(payment_id=order.payment_id):
            return order
        order.payment = _new_payment(order, gateway=gateway)
        order.payment_error = ""
        order.save(update_fields=["payment", "payment_error", "updated_at"])
        _audit(order, actor=f"customer {order.customer_id}", note=f"new payment {order.payment.public_id}")
    return order


def _lines(order: Order) -> dict[int, int]:
    return stock.quantities_of(order.lines.all())


def _close_payment(order: Order) -> None:
    """An order that will not be paid closes its open payments (a late success is then refunded)."""
    policy.item_payments_close(purpose=PURPOSE, item_id=order.number)


def _payment_received(order: Order) -> bool:
    """A payment for the order succeeded and its payment.completed is on its way (locks them)."""
    return policy.item_payment_received(purpose=PURPOSE, item_id=order.number)


def order_cancel(*, order_id: int, actor: str, reason: str = "") -> Order:
    """Cancel an unpaid order: its stock returns and its payment is closed."""
    with transaction.atomic():
        order = Order.objects.select_for_update(of=("self",)).select_related("payment").get(pk=order_id)
        if ORDER.is_repeat(order.status, Order.Status.CANCELLED):
            return order
        if order.status == Order.Status.PENDING_PAYMENT and _payment_received(order):
            raise BusinessRuleViolation(
                "The payment for this order has been received; it will be marked paid. Ask for a refund.",
                code="payment_received",
            )
        _move(order, Order.Status.CANCELLED, actor=actor, note=reason)
        _release(order)
        _close_payment(order)
        events.publish("order.cancelled", order_event_data(order, reason=reason or "cancelled"))
    return order


def order_expire(*, order_id: int) -> Order:
    """An order unpaid at its deadline expires: its stock returns, its payment is closed."""
    with transaction.atomic():
        order = Order.objects.select_for_update(of=("self",)).select_related("payment").get(pk=order_id)
        if order.status != Order.Status.PENDING_PAYMENT or order.deadline > timezone.now():
            return order  # paid or cancelled meanwhile, or its deadline moved
        if _payment_received(order):
            return order  # paid in time: payment.completed is on its way and will pay it
        _move(order, Order.Status.EXPIRED, actor="beat", note="unpaid at the deadline")
        _release(order)
        _close_payment(order)
        events.publish("order.expired", order_event_data(order))
    return order


def order_expire_overdue() -> int:
    """Expire the orders past their deadline (beat); returns how many expired."""
    overdue = Order.objects.filter(
        status=Order.Status.PENDING_PAYMENT, deadline__lte=timezone.now()
    ).values_list("pk", flat=True)[: settings.ORDER_EXPIRE_BATCH]
    count = 0
    for order_id in list(overdue):
        if order_expire(order_id=order_id).status == Order.Status.EXPIRED:
            count += 1
    return count


def _release(order: Order) -> None:
    if order.stock_state == Order.Stock.RESERVED:
        stock.stock_release(_lines(order))
        order.stock_state = Order.Stock.RELEASED
        order.save(update_fields=["stock_state", "updated_at"])


def order_fulfil(*, order_id: int, actor: str) -> Order:
    """Staff shipped a paid order."""
    with transaction.atomic():
        order = Order.objects.select_for_update(of=("self",)).select_related("payment").get(pk=order_id)
        if ORDER.is_repeat(order.status, Order.Status.FULFILLED):
            return order
        _move(order, Order.Status.FULFILLED, actor=actor)
        events.publish("order.fulfilled", order_event_data(order))
    return order


# --- What payments tell us (subscribers) -----------------------------------------------------


def _order_for_payment(number: str | None) -> Order | None:
    return (
        Order.objects.select_for_update(of=("self",))
        .select_related("payment")
        .filter(number=number or "")
        .first()
    )


def order_payment_completed(*, order_number: str, payment_id: str) -> Order | None:
    """payment.completed: the order is paid, once (the payment's allocation to the order records
    what the order did with the money, so a repeated completion changes nothing).

    Money the order cannot take (it is paid already, cancelled, gone, or the payment does not
    match it) is refunded through payments' policy and the order flagged for staff. A payment
    for an expired order whose stock is still there holds the stock again for staff to accept
    or refund.
    """
    with transaction.atomic():
        order = _order_for_payment(order_number)
        completion = policy.completion_claim(payment_id=payment_id, purpose=PURPOSE, item_id=order_number)
        if completion is None:
            return order  # repeated, or not a payment for this order
        if order is None:
            policy.completion_refuse(completion, reason=f"order {order_number} no longer exists")
            return None
        actor = f"payment {payment_id}"
        problem = _payment_mismatch(order, completion)
        if problem:
            _refund_unwanted(order, completion, note=f"{problem}: refunded")
        elif order.status == Order.Status.PENDING_PAYMENT:
            if order.payment_id != completion.payment_pk:  # an earlier attempt succeeded after all: it pays
                _close_payment(order)  # and the newer attempt is closed
                order.payment_id = completion.payment_pk
            stock.stock_sell(_lines(order))
            order.stock_state = Order.Stock.SOLD
            order.payment_error = ""
            _move(order, Order.Status.PAID, actor=actor, fields=("payment", "stock_state", "payment_error"))
            policy.completion_accept(completion)
            events.publish("order.paid", order_event_data(order))
        elif order.status in (Order.Status.PAID, Order.Status.FULFILLED, Order.Status.REFUNDED):
            _refund_unwanted(order, completion, note="a second payment for an order already paid: refunded")
        else:  # cancelled or expired
            _late_payment(order, completion)
    return order


def _payment_mismatch(order: Order, completion: Completion) -> str:
    """Why this payment cannot pay this order ("" if it can)."""
    if not completion.succeeded:
        return "the payment is refunded by now"
    if completion.customer_id != order.customer_id:
        return "the payment was made by another customer"
    total = quantize(order.total, order.currency)
    if completion.currency != order.currency or completion.amount != total:
        return f"the payment is {completion.amount} {completion.currency}, the order {total} {order.currency}"
    return ""


def _late_payment(order: Order, completion: Completion) -> None:
    if order.status == Order.Status.CANCELLED:
        _refund_unwanted(order, completion, note="paid after it was cancelled: refunded")
        return
    if order.stock_state == Order.Stock.RESERVED:  # another late payment already holds the stock
        _refund_unwanted(order, completion, note="a second late payment: refunded")
        return
    try:
        stock.stock_reserve(_lines(order))
    except BusinessRuleViolation as exc:
        _refund_unwanted(
            order, completion, note=f"paid after it expired; the stock is gone ({exc.message}) refunded"
        )
        return
    order.stock_state = Order.Stock.RESERVED
    order.payment_id = completion.payment_pk  # the one staff accept or refund
    note = (
        f"Paid after it expired (payment {completion.payment_id}). The stock is held again: "
        "accept the late payment to sell it, or refund it."
    )
    policy.completion_hold(completion, reason=f"order {order.number}: {note}")
    _flag(order, note, actor=f"payment {completion.payment_id}", fields=("stock_state", "payment"))


def _refund_unwanted(order: Order, completion: Completion, *, note: str) -> None:
    outcome = policy.completion_refuse(completion, reason=f"order {order.number}: {note}")
    text = note if outcome.requested and not outcome.flagged else f"{note} ({outcome.note})"
    _flag(order, f"Payment {completion.payment_id}: {text}", actor=f"payment {completion.payment_id}")


def _flag(order: Order, note: str, *, actor: str, fields: tuple[str, ...] = ()) -> None:
    order.needs_attention = True
    order.attention_note = note
    order.save(update_fields=["needs_attention", "attention_note", "updated_at", *fields])
    _audit(order, actor=actor, note=note)


def order_accept_late_payment(*, order_id: int, actor: str) -> Order:
    """Staff: an expired order whose late payment holds its stock again becomes paid."""
    with transaction.atomic():
        order = Order.objects.select_for_update(of=("self",)).select_related("payment").get(pk=order_id)
        if not (
            order.needs_attention
            and order.status == Order.Status.EXPIRED
            and order.stock_state == Order.Stock.RESERVED
            and policy.held_accept(payment_id=order.payment_id, purpose=PURPOSE, item_id=order.number)
        ):
            raise BusinessRuleViolation(
                "Only an expired order whose late payment succeeded and whose stock is held can be accepted.",
                code="no_late_payment",
            )
        stock.stock_sell(_lines(order))
        order.stock_state = Order.Stock.SOLD
        order.needs_attention = False
        _move(
            order,
            Order.Status.PAID,
            actor=actor,
            note="late payment accepted",
            fields=("stock_state", "needs_attention"),
        )
        events.publish("order.paid", order_event_data(order, late=True))
    return order


def order_refund_late_payment(*, order_id: int, actor: str) -> Order:
    """Staff: refund the late payment of an expired order and give its held stock back."""
    with transaction.atomic():
        order = Order.objects.select_for_update(of=("self",)).select_related("payment").get(pk=order_id)
        if not (order.needs_attention and order.status == Order.Status.EXPIRED and order.payment_id):
            raise BusinessRuleViolation("This order has no late payment to refund.", code="no_late_payment")
        _release(order)
        note = f"late payment refunded by {actor}"
        outcome = policy.held_refuse(
            payment_id=order.payment_id,
            purpose=PURPOSE,
            item_id=order.number,
            reason=f"order {order.number}: {note}",
        )
        _flag(order, f"Payment {order.payment.public_id}: {note} ({outcome.note})", actor=actor)
    return order


def order_attention_resolve(*, order_id: int, actor: str, note: str = "") -> Order:
    """Staff dealt with what the order was flagged for."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.needs_attention:
            order.needs_attention = False
            order.save(update_fields=["needs_attention", "updated_at"])
            _audit(order, actor=actor, note=note or "flag resolved")
    return order


def order_payment_failed(*, order_number: str, payment_id: str, error: str) -> Order | None:
    """payment.failed: keep the error; the order stays payable (with a new payment) until its deadline."""
    with transaction.atomic():
        order = _order_for_payment(order_number)
        if order is None or order.status != Order.Status.PENDING_PAYMENT:
            return order
        if order.payment and order.payment.public_id != payment_id:
            return order  # an older attempt; the current one decides
        order.payment_error = error or "the payment failed"
        order.save(update_fields=["payment_error", "updated_at"])
        _audit(order, actor=f"payment {payment_id}", note=f"payment failed: {order.payment_error}")
    return order


def order_payment_cancelled(*, order_number: str, payment_id: str, reason: str, error: str) -> Order | None:
    """payment.cancelled of the order's current payment (the gateway refused its checkout, or it
    expired unpaid): keep why; the order stays payable with a new payment until its deadline."""
    with transaction.atomic():
        order = _order_for_payment(order_number)
        if order is None or order.status != Order.Status.PENDING_PAYMENT:
            return order  # closed by the order itself (cancel, expiry), or paid meanwhile
        if not order.payment_id or order.payment.public_id != payment_id:
            return order  # an older attempt
        what = "checkout refused" if reason == "gateway_refused" else f"payment {reason or 'cancelled'}"
        order.payment_error = f"{what}: {error}"[:2000] if error else what
        order.save(update_fields=["payment_error", "updated_at"])
        _audit(order, actor=f"payment {payment_id}", note=order.payment_error)
    return order


def order_payment_refunded(*, order_number: str, payment_id: str, full: bool, amount: str) -> Order | None:
    """payment.refunded: a full refund of the order's payment refunds the order (stock returns if
    it was not shipped); a partial one is noted."""
    with transaction.atomic():
        order = _order_for_payment(order_number)
        if order is None:
            return None
        actor = f"payment {payment_id}"
        paid_by_it = order.payment is not None and order.payment.public_id == payment_id
        if not full or not paid_by_it or order.status not in (Order.Status.PAID, Order.Status.FULFILLED):
            # The refund of the late payment the order held stock for (or of its own payment,
            # refused after a cancel) ends what the order was flagged for.
            closed = order.status in (Order.Status.EXPIRED, Order.Status.CANCELLED)
            if order.needs_attention and closed and paid_by_it and full:
                _release(order)
                order.needs_attention = False
                order.save(update_fields=["needs_attention", "updated_at"])
            _audit(
                order,
                actor=actor,
                note=f"{'full' if full else 'partial'} refund of {amount} {order.currency}",
            )
            return order
        fields: tuple[str, ...] = ()
        if order.status == Order.Status.PAID and order.stock_state == Order.Stock.SOLD:
            stock.stock_restock(_lines(order))
            order.stock_state = Order.Stock.RETURNED
            fields = ("stock_state",)
        _move(
            order,
            Order.Status.REFUNDED,
            actor=actor,
            note=f"refunded {amount} {order.currency}",
            fields=fields,
        )
        events.publish("order.refunded", order_event_data(order, amount=amount))
    return order
