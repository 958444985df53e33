"""Reads on subscriptions: what a caller may see (staff everything, a customer their own)."""

from django.db.models import QuerySet

from subscriptions.models import Child, Invoice, Plan, Subscription, Toybox


def _own(queryset: QuerySet, user) -> QuerySet:
    return queryset if user.is_staff else queryset.filter(customer=user)


def children_visible_to(user) -> QuerySet[Child]:
    return _own(Child.objects.all(), user)


def plans_offered() -> QuerySet[Plan]:
    return Plan.objects.filter(is_active=True)


def subscriptions_visible_to(user) -> QuerySet[Subscription]:
    return _own(Subscription.objects.select_related("plan", "child"), user)


def invoices_visible_to(user) -> QuerySet[Invoice]:
    return _own(Invoice.objects.select_related("subscription"), user)


def toyboxes_visible_to(user) -> QuerySet[Toybox]:
    return _own(Toybox.objects.select_related("subscription", "invoice").prefetch_related("items"), user)
