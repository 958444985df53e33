"""`manage.py payments reconcile`: beat's reconciliation, on demand, in this process."""

from collections import Counter

from django.core.management.base import BaseCommand

from core.progress import progress
from payments import reconciliation, services
from payments.gateways.base import GatewayError

GATEWAY_ERROR = "gateway error (beat tries again)"


def _summary(outcomes: Counter) -> str:
    return ", ".join(f"{n} {what}" for what, n in sorted(outcomes.items())) or "none"


class Command(BaseCommand):
    help = "Payments: `reconcile` verifies stale pending payments with their gateway and sends lost refunds."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser(
            "reconcile",
            help="What beat's payments.reconcile sends tasks for, done here: the same payments and refunds.",
        )

    def handle(self, *args, action: str, **options):
        payments: Counter = Counter()
        stale = reconciliation.payments_stale_take()
        for payment_id in progress(stale, label="payments verified", stream=self.stdout):
            try:
                payments[services.payment_verify(payment_id=payment_id).status] += 1
            except GatewayError as exc:
                services.payment_record_error(payment_id=payment_id, error=str(exc))
                payments[GATEWAY_ERROR] += 1
        refunds: Counter = Counter()
        for refund_id in progress(reconciliation.refunds_unsent(), label="refunds sent", stream=self.stdout):
            try:
                refunds[services.refund_execute(refund_id=refund_id).status] += 1
            except GatewayError:
                refunds[GATEWAY_ERROR] += 1
        self.stdout.write(f"payments verified: {_summary(payments)}; refunds sent: {_summary(refunds)}")
