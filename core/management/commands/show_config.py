import os

from django.conf import settings
from django.core.management.base import BaseCommand

from core.management.commands._services import services_lines


class Command(BaseCommand):
    help = (
        "Print the database, broker and cache this configuration uses (passwords hidden) and, "
        "with --urls, where the processes of `make run` answer."
    )

    def add_arguments(self, parser):
        parser.add_argument("--urls", action="store_true", help="Also the URLs of web and Flower.")

    def handle(self, *args, urls: bool = False, **options):
        self.stdout.write(services_lines())
        if not urls:
            return
        site = settings.SITE_URL.rstrip("/")
        # flowerconfig.py reads these from the environment (which the settings filled from .env).
        address = os.environ.get("FLOWER_ADDRESS", "127.0.0.1")
        port = os.environ.get("FLOWER_PORT", "5555")
        auth = os.environ.get("FLOWER_BASIC_AUTH", "not set")
        self.stdout.write(
            f"\nAPI docs: {site}/api/docs/\n"
            f"Admin:    {site}/admin/   (demo staff user above)\n"
            f"Flower:   http://{address}:{port}/   (FLOWER_BASIC_AUTH: {auth})\n"
            f"Health:   {site}/readyz\n"
        )
