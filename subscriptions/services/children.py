"""Children: a parent's own, with what a box is chosen by (age, interests)."""

from datetime import date

from django.db import transaction
from django.utils import timezone

from core.errors import BusinessRuleViolation
from subscriptions.models import Child, Subscription
from subscriptions.services.common import invalid

MAX_INTERESTS = 20


def interests_clean(interests) -> list[str]:
    """Tags, lower-cased, without repeats: ["STEM", "music "] -> ["stem", "music"]."""
    if not isinstance(interests, list) or not all(isinstance(tag, str) for tag in interests):
        raise invalid("interests", "a list of tags (strings)")
    tags = list(dict.fromkeys(tag.strip().lower() for tag in interests if tag.strip()))
    if len(tags) > MAX_INTERESTS or any(len(tag) > 40 for tag in tags):
        raise invalid("interests", f"at most {MAX_INTERESTS} tags of at most 40 characters")
    return tags


def _birth_date_check(birth_date: date) -> None:
    if birth_date > timezone.localdate():
        raise invalid("birth_date", "cannot be in the future", code="birth_date_in_future")


def child_create(*, customer_id: int, name: str, birth_date: date, interests=(), notes: str = "") -> Child:
    _birth_date_check(birth_date)
    return Child.objects.create(
        customer_id=customer_id,
        name=name.strip(),
        birth_date=birth_date,
        interests=interests_clean(list(interests)),
        notes=notes,
    )


def child_update(*, child: Child, **changes) -> Child:
    if "birth_date" in changes:
        _birth_date_check(changes["birth_date"])
    if "interests" in changes:
        changes["interests"] = interests_clean(changes["interests"])
    if "name" in changes:
        changes["name"] = changes["name"].strip()
    for field, value in changes.items():
        setattr(child, field, value)
    child.save(update_fields=[*changes, "updated_at"])
    return child


def child_delete(*, child: Child) -> None:
    """Delete a child who has no subscription (a cancelled one keeps its history: refused too)."""
    with transaction.atomic():
        if Subscription.objects.filter(child=child).exists():
            raise BusinessRuleViolation(
                "This child has subscriptions; cancel them instead (their boxes and invoices stay).",
                code="child_has_subscriptions",
            )
        child.delete()
