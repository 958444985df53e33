"""`manage.py subscriptions renew [--dry-run]`: the renewal pass, on demand, in this process."""

from collections.abc import Iterable, Iterator

from django.core.management.base import BaseCommand
from django.utils import timezone

from core.progress import progress
from payments.errors import GatewayUnreachable
from subscriptions import services
from subscriptions.services.renewals import due_invoices, due_subscriptions


def _each(batches: Iterable[list[int]]) -> Iterator[int]:
    for ids in batches:
        yield from ids


class Command(BaseCommand):
    help = (
        "Subscriptions: `renew` renews every due subscription and charges every invoice due for an attempt."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        renew = sub.add_parser(
            "renew", help="Renew what is due now (what beat's subscriptions.renew_due sends)."
        )
        renew.add_argument("--dry-run", action="store_true", help="Only list what is due; change nothing.")
        renew.add_argument("--batch", type=int, default=500, help="Ids read at a time (bounded memory).")

    def handle(self, *args, action: str, dry_run: bool = False, batch: int = 500, **options):
        now = timezone.now()
        subscriptions = sum(len(ids) for ids in due_subscriptions(now, batch))
        if dry_run:
            invoices = sum(len(ids) for ids in due_invoices(now, batch))
            self.stdout.write(
                f"due now: {subscriptions} subscriptions to renew, {invoices} invoices to charge again"
            )
            return
        renewed = 0
        outcomes: dict[str, int] = {}

        def charge(invoice_id: int, *, first: bool) -> None:
            try:
                outcome = services.invoice_charge(invoice_id=invoice_id, now=now, force=first)
            except GatewayUnreachable:
                outcome = "gateway unreachable (beat tries again)"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

        due = _each(due_subscriptions(now, batch))
        for subscription_id in progress(due, total=subscriptions, label="subscriptions", stream=self.stdout):
            invoice = services.subscription_renew(subscription_id=subscription_id, now=now, send_charge=False)
            if invoice is not None:
                renewed += 1
                charge(invoice.pk, first=True)  # this process charges it, no task
        # Counted now: the renewals above may have left invoices due again (a gateway away).
        invoices = sum(len(ids) for ids in due_invoices(now, batch))
        again = _each(due_invoices(now, batch))
        for invoice_id in progress(again, total=invoices, label="invoices due again", stream=self.stdout):
            charge(invoice_id, first=False)
        summary = ", ".join(f"{n} {what}" for what, n in sorted(outcomes.items())) or "none charged"
        self.stdout.write(f"renewed {renewed} subscriptions; invoices: {summary}")
