"""The sandbox gateway's hosted payment page (HTML, for customers trying the system)."""

from django.conf import settings
from django.db import transaction
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from core.money import quantize
from payments.gateways.sandbox import method_save
from payments.models import SandboxCharge
from payments.tasks import sandbox_webhook_deliver

OUTCOMES = {
    "pay": (SandboxCharge.Status.SUCCEEDED, ""),
    "decline": (SandboxCharge.Status.FAILED, "Declined by the customer on the sandbox page"),
    "cancel": (SandboxCharge.Status.CANCELLED, ""),
}


@require_http_methods(["GET", "POST"])
def sandbox_pay(request, reference: str):
    if settings.PAYMENT_ENV == "production":
        raise Http404("The sandbox is off in production.")
    if request.method == "POST":
        if request.POST.get("action") not in OUTCOMES:
            return HttpResponseBadRequest("action must be pay, decline or cancel")
        status, reason = OUTCOMES[request.POST["action"]]
        with transaction.atomic():
            charge = get_object_or_404(SandboxCharge.objects.select_for_update(), reference=reference)
            if charge.status == SandboxCharge.Status.PENDING:  # a second press changes nothing
                charge.status, charge.decline_reason = status, reason
                if charge.save_method and status == SandboxCharge.Status.SUCCEEDED:
                    charge.method = method_save(charge)  # the card is kept for renewals
                charge.save(update_fields=["status", "decline_reason", "method", "updated_at"])
                # robust: the customer's answer stands if the broker refuses the webhook's
                # task; the payment is then verified by reconciliation, as with a provider
                # whose webhook never came.
                reference = charge.reference
                transaction.on_commit(lambda: sandbox_webhook_deliver.delay(reference), robust=True)
        if charge.return_url:
            return redirect(charge.return_url)
        return redirect("sandbox-pay", reference=reference)
    charge = get_object_or_404(SandboxCharge, reference=reference)
    charge.amount_display = quantize(charge.amount, charge.currency)
    return render(request, "payments/sandbox_pay.html", {"charge": charge})
