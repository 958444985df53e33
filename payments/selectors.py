"""Reads on payments that are more than one line."""

from django.db.models import QuerySet

from payments.models import Payment


def payments_visible_to(user) -> QuerySet[Payment]:
    """Staff see every payment; a customer only their own."""
    queryset = Payment.objects.select_related("customer").order_by("-created_at")
    return queryset if user.is_staff else queryset.filter(customer=user)
