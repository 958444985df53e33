import json

from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from core.periodic import PeriodicTaskSpec, periodic_tasks


class Command(BaseCommand):
    help = (
        "Install the periodic tasks declared in settings.PERIODIC_TASKS (config/periodic.py); "
        "idempotent, keeps staff edits, renames the rows of earlier releases."
    )

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true", help="Put the declared schedules back.")

    @transaction.atomic
    def handle(self, *args, reset: bool = False, **options):
        for spec in periodic_tasks():
            # Staff may have added the same interval in the admin: any one of them will do.
            interval = IntervalSchedule.objects.filter(
                every=spec.every_seconds, period=IntervalSchedule.SECONDS
            ).order_by("pk").first() or IntervalSchedule.objects.create(
                every=spec.every_seconds, period=IntervalSchedule.SECONDS
            )
            declared = {
                "task": spec.task,
                "args": json.dumps(spec.args),
                "description": spec.description,
                "expire_seconds": spec.expires_seconds,
            }
            task = self._installed(spec)
            if task is None:
                PeriodicTask.objects.create(name=spec.name, interval=interval, **declared)
                self.stdout.write(f"created {spec.name} (every {spec.every_seconds}s)")
            elif reset:
                for key, value in declared.items():
                    setattr(task, key, value)
                task.interval, task.crontab, task.solar, task.clocked, task.enabled = (
                    interval,
                    None,
                    None,
                    None,
                    True,
                )
                task.save()
                self.stdout.write(f"reset {spec.name} (every {spec.every_seconds}s)")
            else:
                self.stdout.write(f"kept {spec.name} as staff left it")

    def _installed(self, spec: PeriodicTaskSpec) -> PeriodicTask | None:
        """The spec's row, found by its name or renamed from a former one; None if there is none.

        Rows under former names beside it (an older release installed them again) are deleted:
        beat would otherwise send the task twice. Saving and deleting through the model tells a
        running beat to reload its schedule.
        """
        rows = {
            row.name: row
            for row in PeriodicTask.objects.select_for_update().filter(
                name__in=[spec.name, *spec.former_names]
            )
        }
        task = rows.pop(spec.name, None)
        for former in spec.former_names:
            row = rows.get(former)
            if row is None:
                continue
            if task is None:
                row.name, task = spec.name, row
                row.save()
                self.stdout.write(f"renamed {former} to {spec.name}")
            else:
                row.delete()
                self.stdout.write(f"deleted {former}, a second row of {spec.name}")
        return task
