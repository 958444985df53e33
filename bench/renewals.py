"""Subscription renewal throughput, and the memory of the beat-side batcher and the worker.

    .venv/bin/python bench/renewals.py --sizes 1000,10000

Reported as a ratio against bench/celery_baseline.py (bare no-op tasks drained by the same
kind of worker), measured first, in the same invocation.

What runs: config.settings.bench (the test services on localhost, the database
`fulfil_bench`, created and migrated if missing, production's connection reuse). For each
size N: N customers, each with one child, one active monthly subscription due for renewal
now, and a saved sandbox card (SavedPaymentMethod + SandboxMethod, as a first payment leaves
them), and toys enough in stock for every box. Then:

  batcher: `subscriptions.services.renewals_dispatch()`, what beat's subscriptions.renew_due
    runs, in a process of its own (this script with --dispatch): it reads the due ids in
    keyset batches of SUBSCRIPTION_RENEWAL_BATCH and sends one renew_batch task per batch.
    Its peak RSS (VmHWM) is reported: it must not grow with N.
  worker: a real `celery worker` subprocess (prefork, WORKER_CONCURRENCY processes, 4 by
    default) on the queues subscriptions, payments, events and default: each renewal opens
    the next invoice, charges the saved card through the sandbox gateway (a payment with its
    own idempotency key), applies the answer (payment.completed through the outbox and the
    relay), marks the invoice paid in the subscriptions subscriber and builds the period's
    toybox (stock reserved through orders' stock service).

Figures, per size: renewals/s = N / the time from dispatch to the N-th invoice paid (polled
every 0.25 s), and the same to the N-th toybox built; the peak RSS of the batcher, and the
peak RSS of the worker (the largest process of its group, and the group's total), sampled
from /proc every 0.25 s while it works.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.bench")
os.environ["DJANGO_READ_DOT_ENV"] = "0"

from bench.celery_baseline import BenchError, Worker, hard_deadline, measure_baseline  # noqa: E402

QUEUES = "subscriptions,payments,events,default"
UNUSABLE = "!"  # Django's mark of an unusable password: these customers never log in
TOYS = 12


def log(message: str) -> None:
    print(f"[renewals] {message}", file=sys.stderr, flush=True)


def setup_django() -> None:
    import django

    django.setup()
    from bench.events import ensure_database

    ensure_database()


def reset() -> None:
    """Empty what a previous run left (bench database only)."""
    from django.db import connection

    tables = [
        "subscriptions_toyboxitem",
        "subscriptions_toybox",
        "subscriptions_invoice",
        "subscriptions_subscription",
        "subscriptions_child",
        "subscriptions_plan",
        "payments_refundshare",
        "payments_refund",
        "payments_paymentledgerentry",
        "payments_paymentallocation",
        "payments_webhookevent",
        "payments_payment",
        "payments_savedpaymentmethod",
        "payments_sandboxcharge",
        "payments_sandboxmethod",
        "core_outboxevent",
        "core_processedevent",
        "core_deadletter",
        "core_idempotencyrecord",
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
        cursor.execute("DELETE FROM orders_variant WHERE sku LIKE 'BENCH-TOY-%%'")
        cursor.execute("DELETE FROM orders_product WHERE slug LIKE 'bench-toy-%%'")
        cursor.execute("DELETE FROM accounts_user WHERE email LIKE 'renewal-%%@bench.invalid'")


def populate(n: int) -> None:
    """N customers with a child, a due subscription and a saved sandbox card; toys in stock."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from orders.models import Category, Product, Variant
    from payments.methods import customer_key
    from payments.models import SandboxMethod, SavedPaymentMethod
    from subscriptions.models import Child, Plan, Subscription

    now = timezone.now()
    User = get_user_model()
    with transaction.atomic():
        category, _ = Category.objects.get_or_create(slug="bench-toys", defaults={"name": "Bench toys"})
        for t in range(TOYS):
            product = Product.objects.create(category=category, name=f"Toy {t}", slug=f"bench-toy-{t}")
            Variant.objects.create(
                product=product,
                sku=f"BENCH-TOY-{t}",
                price=Decimal("5.00"),
                stock_on_hand=n * 4,
                age_min_months=0,
                age_max_months=200,
                tags=["stem"] if t % 2 else ["music"],
            )
        plan = Plan.objects.create(
            name="Bench plan", slug="bench-plan", price=Decimal("30.00"), toys_per_box=3, age_max_months=200
        )
        users = User.objects.bulk_create(
            User(email=f"renewal-{i}@bench.invalid", phone=f"+1999{i:07d}", password=UNUSABLE)
            for i in range(n)
        )
        children = Child.objects.bulk_create(
            Child(
                customer=u,
                name=f"Child {u.pk}",
                birth_date=(now - timedelta(days=1500)).date(),
                interests=["stem"],
            )
            for u in users
        )
        Subscription.objects.bulk_create(
            Subscription(
                customer_id=c.customer_id,
                child=c,
                plan=plan,
                status=Subscription.Status.ACTIVE,
                current_period_start=now - timedelta(days=31),
                current_period_end=now - timedelta(minutes=1),
                next_renewal_at=now - timedelta(minutes=1),
            )
            for c in children
        )
        SandboxMethod.objects.bulk_create(
            SandboxMethod(token=f"sbxm_bench_{u.pk}", customer_key=customer_key(u.pk), label="sandbox card")
            for u in users
        )
        SavedPaymentMethod.objects.bulk_create(
            SavedPaymentMethod(
                customer=u,
                gateway="sandbox",
                token=f"sbxm_bench_{u.pk}",
                customer_reference=customer_key(u.pk),
                label="sandbox card",
            )
            for u in users
        )


def dispatch_in_a_process() -> dict:
    """Run the beat-side batcher in its own process; its figures (sent ids, peak RSS)."""
    out = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, __file__, "--dispatch"], capture_output=True, text=True, check=False, env=os.environ
    )
    if out.returncode != 0:
        raise BenchError(f"the batcher failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_rss_kib() -> int:
    """This program's peak RSS. VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across
    exec, so a process started from a big parent reports the parent's size at the fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def dispatch_main() -> int:
    setup_django()
    from subscriptions.services import renewals_dispatch

    t0 = time.monotonic()
    subscriptions, invoices = renewals_dispatch()
    rss_kib = _peak_rss_kib()
    print(
        json.dumps(
            {
                "sent": subscriptions,
                "invoices": invoices,
                "seconds": time.monotonic() - t0,
                "rss_kib": rss_kib,
            }
        )
    )
    return 0


class RssSampler(threading.Thread):
    """The peak RSS of a process group (largest process, and the group's total), from /proc."""

    def __init__(self, pgid: int):
        super().__init__(daemon=True)
        self.pgid = pgid
        self.peak_process = self.peak_total = 0
        self.stopping = threading.Event()

    def sample(self) -> None:
        sizes = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[2]) != self.pgid:
                    continue
                status = Path(f"/proc/{entry}/status").read_text()
            except (OSError, ValueError, IndexError):
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]))
        if sizes:
            self.peak_process = max(self.peak_process, max(sizes))
            self.peak_total = max(self.peak_total, sum(sizes))

    def run(self) -> None:
        while not self.stopping.wait(0.25):
            self.sample()


def counts() -> tuple[int, int]:
    from subscriptions.models import Invoice, Toybox

    return (
        Invoice.objects.filter(status=Invoice.Status.PAID).count(),
        Toybox.objects.filter(status__in=[Toybox.Status.READY, Toybox.Status.SHORT]).count(),
    )


def measure_size(n: int, timeout: float) -> dict:
    from django.db import connection

    from config.celery import app
    from core.models import DeadLetter

    reset()
    populate(n)
    connection.close()
    app.control.purge()
    worker = Worker(app, QUEUES, module="config")
    worker.start()
    sampler = None
    try:
        worker.wait_ready(60)
        sampler = RssSampler(worker.proc.pid)
        sampler.start()
        t0 = time.monotonic()
        batcher = dispatch_in_a_process()
        if batcher["sent"] != n:
            raise BenchError(f"the batcher sent {batcher['sent']} of {n} subscriptions")
        deadline, paid_at, built_at = t0 + timeout, None, None
        while built_at is None:
            worker.check_alive()
            paid, built = counts()
            now = time.monotonic()
            if paid >= n and paid_at is None:
                paid_at = now
            if built >= n:
                built_at = now
            if now > deadline:
                done = f"{paid} invoices paid and {built} boxes built of {n}"
                raise BenchError(f"{done} after {timeout:.0f} s\n{worker.log_tail()}")
            time.sleep(0.25)
        dead = DeadLetter.objects.count()
    finally:
        if sampler is not None:
            sampler.stopping.set()
            sampler.join()
        worker.stop()
        worker.remove_log()
        connection.close()
    if dead:
        raise BenchError(f"{dead} dead letters after the run")
    return {
        "subscriptions": n,
        "renewals_per_s": round(n / (paid_at - t0), 1),
        "boxes_per_s": round(n / (built_at - t0), 1),
        "renewed_seconds": round(paid_at - t0, 1),
        "batcher_seconds": round(batcher["seconds"], 2),
        "batcher_peak_rss_mib": round(batcher["rss_kib"] / 1024, 1),
        "worker_peak_process_rss_mib": round(sampler.peak_process / 1024, 1),
        "worker_peak_total_rss_mib": round(sampler.peak_total / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="numbers of due subscriptions, comma-separated")
    parser.add_argument("--baseline-tasks", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=900.0, help="per size")
    parser.add_argument("--dispatch", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dispatch:
        return dispatch_main()

    sizes = [int(size) for size in args.sizes.split(",")]
    baseline = measure_baseline(args.baseline_tasks)
    base = baseline["drain_per_s"]
    log(f"baseline: {base:,.0f} no-op tasks/s")
    setup_django()
    results = []
    with hard_deadline(args.timeout * len(sizes) + 300, "renewals bench"):
        for n in sizes:
            result = measure_size(n, args.timeout)
            result["ratio"] = round(result["renewals_per_s"] / base, 4)
            log(json.dumps(result))
            results.append(result)
    for r in results:
        print(
            f"renewals: {r['subscriptions']:>6,} due: {r['renewed_seconds']:.0f} s, "
            f"{r['renewals_per_s']:,.0f}/s = {r['ratio']:.3f} x baseline; "
            f"batcher peak RSS {r['batcher_peak_rss_mib']} MiB; "
            f"worker peak RSS {r['worker_peak_process_rss_mib']} MiB per process, "
            f"{r['worker_peak_total_rss_mib']} MiB in all"
        )
    print(json.dumps({"bench": "renewals", "baseline_drain_per_s": base, "sizes": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
