from celery import shared_task

from orders import services


@shared_task(name="orders.expire_overdue", acks_late=True)
def expire_overdue() -> int:
    """Beat: orders unpaid past their deadline expire and their stock is released."""
    return services.order_expire_overdue()
