"""Webhook fuzz, per gateway (issue 18): whatever anyone posts to /api/payments/webhook/<gateway>
is refused or kept out of the payment, as docs/payments.md (Flow, 3-4; API) says.

For every gateway in the registry, against a pending payment whose checkout is open at the
gateway's fake: random bodies, the genuine notice truncated (with its signature, and re-signed),
missing, garbage and borrowed signatures (another notice's, a tampered body's; at Stripe an
expired timestamp), 1 MB bodies (text, binary, a padded notice) and one past the size limit,
text/plain, form and empty content types, and every other HTTP method.

- A refusal is the documented 4xx in the API's error shape: 400 `bad_signature` or
  `malformed_webhook` (kept for staff: a `WebhookEvent` with `signature_valid` off, `proof`
  "none", the reason in `error`, the body's first 16,384 characters and, for a body that is
  not text, its bytes), 413 `request_too_large` past DATA_UPLOAD_MAX_MEMORY_SIZE and 405
  `method_not_allowed` with `Allow: POST` (both answered before the view: nothing kept).
- YooKassa signs nothing, so a well-formed forged notice is answered 200 and kept
  `unconfirmed`; the API contradicts it and it is closed `contradicted`.
- Nothing is applied: the payment's status, its ledger (at YooKassa: the verifications a
  forged notice asks for, each answered "pending") and the outbox stay as they were, with the
  worker running and beat's webhook sweep run.
- Afterwards the genuine notice, posted twice, completes the payment once.

Random bodies come from hypothesis (derandomized): TEST_FUZZ_EXAMPLES per gateway and kind of
case (default 10, as tests/core/test_api_fuzz.py).
"""

import hashlib
import hmac
import json
import os
import random
import time
from urllib.parse import parse_qsl, urlencode

import pytest
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from core.models import OutboxEvent
from payments import reconciliation
from payments.gateways.sandbox import SIGNATURE_HEADER, sign
from payments.models import Payment, WebhookEvent
from payments.registry import GATEWAY_CLASSES, gateway_for
from payments.webhooks import REFUSED_BODY_KEPT
from tests.conftest import wait_for
from tests.payments.test_reconcile_disagreements import GATEWAYS, Provider, open_payment, provider_running

EXAMPLES = int(os.environ.get("TEST_FUZZ_EXAMPLES", "10"))
MEGABYTE = 1 << 20
OTHER_METHODS = ("GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE")
# Where the signature travels: a header over the raw body, or a field inside the body.
SIGNATURE_HEADERS = {
    "sandbox": SIGNATURE_HEADER,
    "paystack": "X-Paystack-Signature",
    "stripe": "Stripe-Signature",
}
SIGNATURE_FIELDS = {"tinkoff": "Token", "sberpay": "checksum"}
# A body signed with the right key that is no notification: `malformed_webhook`
# (docs/payments.md). Sber's checksum covers parsed fields, so a 1 MB text is no callback to
# sign; its signed callback without mdOrder is checked in tests/payments.
SIGNED_BUT_NO_NOTICE = ("sandbox", "paystack", "stripe")

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_every_registered_gateway_is_fuzzed():
    assert set(GATEWAYS) == set(GATEWAY_CLASSES)


# --- requests and what must follow them ---------------------------------------------------


def url(provider: Provider) -> str:
    return f"/api/payments/webhook/{provider.name}"


def send(client, provider, body: bytes, headers=None, content_type="application/json", method="POST"):
    """One request; (the response, the webhook rows it added)."""
    newest = WebhookEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    headers = {k: v for k, v in (headers or {}).items() if k.lower() != "content-type"}
    response = client.generic(method, url(provider), body, content_type=content_type, headers=headers)
    return response, list(WebhookEvent.objects.filter(pk__gt=newest).order_by("pk"))


def is_text(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in body


def assert_refused(response, added, provider: Provider, body: bytes, code: str | set[str]) -> None:
    """400 in the API's error shape with `code`, and the attempt kept for staff, nothing more."""
    assert response.status_code == 400, (provider.name, response.status_code, response.content[:300])
    answer = response.json()
    assert set(answer) == {"code", "message", "extra"}
    assert answer["code"] in ({code} if isinstance(code, str) else code), answer
    assert answer["extra"] == {"gateway": provider.name}
    (kept,) = added
    assert (kept.gateway, kept.signature_valid, kept.proof, kept.event_id) == (
        provider.name,
        False,
        "none",
        "",
    )
    assert kept.error and kept.payment_id is None and kept.dispatched_at is None
    assert len(kept.body) <= REFUSED_BODY_KEPT
    if is_text(body):
        assert kept.raw_body is None and kept.body == body.decode()[:REFUSED_BODY_KEPT]
    else:
        assert bytes(kept.raw_body) == body[:REFUSED_BODY_KEPT]


def assert_refused_or_forged(response, added, provider: Provider, body: bytes, code: str | set[str]) -> None:
    """Refused; or, at YooKassa, a well-formed notice anyone could post: 200, kept unconfirmed."""
    if provider.name == "yookassa" and response.status_code == 200:
        (kept,) = added
        assert (kept.signature_valid, kept.proof) == (False, "unconfirmed")
        return
    assert_refused(response, added, provider, body, code)


def unsigned_code(body: bytes) -> str:
    return "bad_signature" if is_text(body) else "malformed_webhook"


# --- the genuine notice, and what can be done to it ---------------------------------------


def parsed(provider: Provider, body: bytes) -> dict:
    return dict(parse_qsl(body.decode())) if provider.name == "sberpay" else json.loads(body)


def serialised(provider: Provider, fields: dict) -> bytes:
    return urlencode(fields).encode() if provider.name == "sberpay" else json.dumps(fields).encode()


def without_signature(provider: Provider, headers: dict, body: bytes) -> tuple[dict, bytes]:
    if provider.name in SIGNATURE_HEADERS:
        return {
            k: v for k, v in headers.items() if k.lower() != SIGNATURE_HEADERS[provider.name].lower()
        }, body
    fields = parsed(provider, body)
    fields.pop(SIGNATURE_FIELDS[provider.name])
    return headers, serialised(provider, fields)


def with_signature_of(provider: Provider, signer: tuple[dict, bytes], body: bytes, headers: dict):
    """`body` carrying the signature of another request `signer` (headers, body)."""
    other_headers, other_body = signer
    if provider.name in SIGNATURE_HEADERS:
        name = SIGNATURE_HEADERS[provider.name]
        return {**headers, name: next(v for k, v in other_headers.items() if k.lower() == name.lower())}, body
    key = SIGNATURE_FIELDS[provider.name]
    return headers, serialised(provider, {**parsed(provider, body), key: parsed(provider, other_body)[key]})


def tampered(provider: Provider, body: bytes) -> bytes:
    """The notice with one more field: what the signature covers has changed."""
    return serialised(provider, {**parsed(provider, body), "amount_paid": "1"})


def resigned(provider: Provider, body: bytes) -> dict[str, str]:
    """Headers signing `body` with the gateway's own key (header-signed gateways)."""
    config = provider.config
    if provider.name == "sandbox":
        return {SIGNATURE_HEADER: sign(body, gateway_for("sandbox").secret)}
    if provider.name == "paystack":
        return {
            "X-Paystack-Signature": hmac.new(config["secret_key"].encode(), body, hashlib.sha512).hexdigest()
        }
    now = int(time.time())
    digest = hmac.new(
        config["webhook_secret"].encode(), f"{now}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return {"Stripe-Signature": f"t={now},v1={digest}"}


def forged_success(provider: Provider, reference: str) -> bytes:
    """YooKassa's notice of the payment as it would look once paid (it is not)."""
    payment = provider.fake.payments[reference] | {"status": "succeeded", "paid": True}
    return json.dumps({"type": "notification", "event": "payment.succeeded", "object": payment}).encode()


# --- hypothesis: random bodies -------------------------------------------------------------

LEAVES = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
JSON = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
)
BODIES = (
    st.binary(min_size=1, max_size=2048)
    | st.text(min_size=1, max_size=512).map(lambda text: text.encode("utf-8", "surrogatepass"))
    | JSON.map(lambda value: json.dumps(value).encode())
)


def fuzzed(test):
    return hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )(test)


# --- the test --------------------------------------------------------------------------------


@pytest.fixture(params=GATEWAYS)
def provider(request, settings):
    settings.PAYMENT_WEBHOOK_CONFIRM_INTERVAL_SECONDS = 0.2  # a forged YooKassa notice is closed soon
    with provider_running(request.param, settings) as running:
        yield running


def snapshot(payment: Payment) -> tuple:
    """What applying a webhook would change: the payment, its ledger (but the verifications a
    forged YooKassa notice asks for, each "pending"), and the outbox."""
    payment = Payment.objects.get(pk=payment.pk)
    ledger = payment.ledger.exclude(source="verify", reported_status="pending")
    return (
        payment.status,
        payment.flagged_reason,
        list(ledger.values_list("pk", flat=True)),
        OutboxEvent.objects.exclude(type="payment.created").count(),
    )


def test_whatever_is_posted_is_refused_and_kept_and_applies_nothing(provider, celery_worker, client):
    started = time.monotonic()
    payment = open_payment(provider)
    other = open_payment(provider)  # its notice lends its signature
    reference = payment.gateway_reference
    headers, genuine = provider.notice(reference)
    before = snapshot(payment)
    seeded = random.Random(f"webhook-fuzz-{provider.name}")

    @fuzzed
    @given(body=BODIES)
    def random_bodies(body):
        response, added = send(client, provider, body)
        assert_refused_or_forged(response, added, provider, body, unsigned_code(body))

    random_bodies()

    for cut in sorted(seeded.sample(range(1, len(genuine)), min(EXAMPLES, len(genuine) - 1))):
        truncated = genuine[:cut]
        response, added = send(client, provider, truncated, headers)
        assert_refused(response, added, provider, truncated, "bad_signature")
        if provider.name in SIGNED_BUT_NO_NOTICE:  # re-signed: signed, but no notification
            response, added = send(client, provider, truncated, resigned(provider, truncated))
            assert_refused(response, added, provider, truncated, "malformed_webhook")

    if provider.name == "yookassa":  # nothing is signed: a forged claim is stored, then contradicted
        forged = forged_success(provider, reference)
        response, added = send(client, provider, forged)
        assert response.status_code == 200 and added[0].proof == "unconfirmed"
    else:
        cases = {
            "missing": without_signature(provider, headers, genuine),
            "another notice's": with_signature_of(
                provider, provider.notice(other.gateway_reference), genuine, headers
            ),
            "tampered": (headers, tampered(provider, genuine)),
        }
        if provider.name in SIGNATURE_HEADERS:
            cases["garbage"] = ({**headers, SIGNATURE_HEADERS[provider.name]: "0" * 64}, genuine)
            cases["another body's"] = with_signature_of(
                provider, (headers, genuine), tampered(provider, genuine), headers
            )
        if provider.name == "stripe":  # a genuine signature replayed after Stripe's 5-minute tolerance
            stale = int(time.time()) - 600
            digest = hmac.new(
                provider.config["webhook_secret"].encode(), f"{stale}.".encode() + genuine, hashlib.sha256
            ).hexdigest()
            cases["replayed late"] = ({**headers, "Stripe-Signature": f"t={stale},v1={digest}"}, genuine)
        for case, (case_headers, case_body) in cases.items():
            response, added = send(client, provider, case_body, case_headers)
            assert response.status_code == 400, case
            assert_refused(response, added, provider, case_body, "bad_signature")

    big_text = bytes(seeded.choices(b'abcdefghij {}":,', k=MEGABYTE))
    big_binary = seeded.randbytes(MEGABYTE)
    for body in (big_text, big_binary):
        response, added = send(client, provider, body)
        assert_refused(response, added, provider, body, unsigned_code(body))
    if provider.name in SIGNED_BUT_NO_NOTICE:
        response, added = send(client, provider, big_text, resigned(provider, big_text))
        assert_refused(response, added, provider, big_text, "malformed_webhook")
    if provider.name != "sberpay":  # a notice padded to 1 MB: its signature is wrong, or it is forged
        notice = forged_success(provider, reference) if provider.name == "yookassa" else genuine
        padded = json.dumps({**json.loads(notice), "padding": "x" * MEGABYTE}).encode()
        response, added = send(client, provider, padded, headers)
        assert_refused_or_forged(response, added, provider, padded, "bad_signature")
    too_large = b"x" * (django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    response, added = send(client, provider, too_large)
    assert (response.status_code, response.json()["code"], added) == (413, "request_too_large", [])

    unsigned_headers, unsigned_body = (
        (headers, genuine) if provider.name == "yookassa" else without_signature(provider, headers, genuine)
    )
    if provider.name == "yookassa":
        unsigned_body = genuine[:-1]  # YooKassa: a notice with any content type, but not a notice
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        response, added = send(client, provider, unsigned_body, unsigned_headers, content_type=content_type)
        assert_refused(response, added, provider, unsigned_body, "bad_signature")

    for method in OTHER_METHODS:  # with the genuine notice, and as Sber's default GET callback
        query = "?" + genuine.decode() if provider.name == "sberpay" else ""
        response = client.generic(
            method, url(provider) + query, genuine, content_type="application/json", headers=headers
        )
        assert response.status_code == 405, method
        assert response["Allow"] == "POST"
        if method != "HEAD":
            assert response.json()["code"] == "method_not_allowed"
    assert not WebhookEvent.objects.filter(signature_valid=True).exists()

    # Whatever was accepted (forged YooKassa notices) is processed, as beat's sweep would.
    reconciliation.webhooks_sweep(older_than_seconds=0)
    wait_for(
        lambda: not WebhookEvent.objects.filter(proof="unconfirmed").exists(),
        what="accepted notices to be processed",
    )
    assert set(WebhookEvent.objects.values_list("proof", flat=True)) <= {"none", "contradicted"}
    assert snapshot(payment) == before
    assert Payment.objects.get(pk=other.pk).status == "pending"
    fuzzed_in = time.monotonic() - started

    # Sanity: the genuine notice of the paid payment, twice, completes it once.
    provider.pay(reference)
    headers, genuine = provider.notice(reference)
    for _ in range(2):
        response, _ = send(client, provider, genuine, headers)
        assert response.status_code == 200
    wait_for(lambda: Payment.objects.get(pk=payment.pk).status == "succeeded", what="the genuine notice")
    wait_for(
        lambda: (
            not WebhookEvent.objects.filter(proof="unconfirmed").exists()
            and not WebhookEvent.objects.filter(signature_valid=True, processed_at__isnull=True).exists()
        ),
        what="both copies to be processed",
    )
    copies = WebhookEvent.objects.exclude(proof__in=["none", "contradicted"])
    if provider.name == "yookassa":  # both kept unconfirmed; the API confirms one, the other repeats it
        assert sorted(copies.values_list("proof", flat=True)) == ["confirmed", "repeated"]
    else:
        assert copies.count() == 1  # the replay is a duplicate: stored once
    completed = OutboxEvent.objects.filter(type="payment.completed", data__payment_id=payment.public_id)
    assert completed.count() == 1
    assert fuzzed_in < 60, f"{provider.name}: the fuzz took {fuzzed_in:.1f}s"
