import os
from importlib import import_module

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils.module_loading import module_has_submodule

from core.progress import progress


class Command(BaseCommand):
    help = "Load demo data and the demo staff user (development only; idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Run even with DEBUG off.")

    def handle(self, *args, force: bool = False, **options):
        if not settings.DEBUG and not force:
            raise CommandError("load_demo is for development (DEBUG on); pass --force to insist.")
        email = os.environ.get("DEMO_STAFF_EMAIL", "admin@example.com")
        password = os.environ.get("DEMO_STAFF_PASSWORD", "")
        if not password:
            raise CommandError("Set DEMO_STAFF_PASSWORD (make run writes one into .env).")
        User = get_user_model()
        staff = User.objects.filter(email=email).first() or User.objects.create_superuser(email=email)
        staff.is_staff = staff.is_superuser = True
        staff.set_password(password)
        staff.save()
        customer = User.objects.filter(email="customer@example.com").first() or User.objects.create_user(
            email="customer@example.com", phone="+15550100001"
        )
        customer.set_password(password)
        customer.save()
        self.stdout.write(f"demo staff user:    {email} / {password}")
        self.stdout.write(f"demo customer user: customer@example.com / {password}")
        # Each app may bring its own demo data: a `demo.py` with `load(stdout)`, idempotent.
        loaders = [
            import_module(f"{app_config.name}.demo")
            for app_config in apps.get_app_configs()
            if module_has_submodule(app_config.module, "demo")
        ]
        bar = progress(loaders, label="demo data", stream=self.stdout)
        for loader in bar:
            loader.load(stdout=bar)
