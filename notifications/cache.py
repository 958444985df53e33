"""Staff's rules and templates as the subscriber sees them: read once and kept for a few seconds.

Every event used to read its rules' rows and, for each message, the staff-written templates
of its name: queries for rows that staff change a few times a year. The subscriber instead
takes a snapshot of both tables (all rules, all staff templates: a few dozen rows), reused
by this process for CACHE_SECONDS. A change saved in the admin applies in the process that
saved it at once (saving or deleting a row drops that process's snapshot, again when the
transaction commits) and in every other process (the workers) within CACHE_SECONDS. A change
made with QuerySet.update() sends no signal: it applies within CACHE_SECONDS, or at once
after clear().

The admin's preview does not use this: it reads the rows themselves (rendering.render
without a snapshot), so what staff just saved is what they see.
"""

import time
from dataclasses import dataclass

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from notifications.models import MessageTemplate, Rule
from notifications.rendering import StaffTemplates

CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Snapshot:
    rules: dict[str, Rule]  # by key; a rule without a row uses the code's defaults
    templates: StaffTemplates
    read_at: float  # time.monotonic()


_snapshot: Snapshot | None = None


def current() -> Snapshot:
    """This process's snapshot, read again when it is CACHE_SECONDS old (or was dropped)."""
    global _snapshot
    snapshot = _snapshot
    if snapshot is None or time.monotonic() - snapshot.read_at >= CACHE_SECONDS:
        rules = {rule.key: rule for rule in Rule.objects.all()}
        sources = MessageTemplate.objects.values_list("name", "language", "source")
        templates = StaffTemplates({(name, language): source for name, language, source in sources})
        snapshot = _snapshot = Snapshot(rules=rules, templates=templates, read_at=time.monotonic())
    return snapshot


def clear() -> None:
    """Drop the snapshot: the next event reads the rows again."""
    global _snapshot
    _snapshot = None


def _changed(**kwargs) -> None:
    # Now, for this transaction's own reads; and after the commit, for any read made in between
    # by another thread of this process (which saw the rows before the change).
    clear()
    transaction.on_commit(clear)


for _model in (Rule, MessageTemplate):
    post_save.connect(_changed, sender=_model, dispatch_uid=f"notifications.cache.{_model.__name__}.save")
    post_delete.connect(_changed, sender=_model, dispatch_uid=f"notifications.cache.{_model.__name__}.delete")
