"""Periodic tasks declared in code: what `manage.py setup_periodic_tasks` installs.

The project's list (settings.PERIODIC_TASKS names it, by default config/periodic.py) holds
PeriodicTaskSpec entries. The command creates what is missing in django-celery-beat's
tables and never overwrites a schedule staff have changed in the admin (`--reset` puts the
declared schedules back). A spec is found by its name, the one staff see in the admin (what
the task does), or by one of its `former_names`, which the command renames: a renamed task
keeps its row, hence its schedule and last run, and is never installed twice. Every periodic
task is idempotent and expires before its next run, so a late or doubled tick does no harm.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class PeriodicTaskSpec:
    name: str
    task: str
    every_seconds: int
    args: list = field(default_factory=list)
    description: str = ""
    former_names: tuple[str, ...] = ()

    @property
    def expires_seconds(self) -> int:
        return max(1, int(self.every_seconds * 0.9))


def periodic_tasks() -> Sequence[PeriodicTaskSpec]:
    """The declared periodic tasks: the list settings.PERIODIC_TASKS names by its dotted path."""
    return import_string(settings.PERIODIC_TASKS)
