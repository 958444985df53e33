"""Message templates: every rule in English and Russian on every channel, with objects as the
apps write them and event data as the outbox carries it (through JSON); money, times in the
resource's timezone, SMS within two segments, staff's overrides, broken templates, and the
admin's preview."""
# ruff: noqa: RUF001 - Russian text

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import unescape

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.template import Context, Template
from django.utils import timezone, translation
from django.utils.html import escape

from bookings.models import Booking
from bookings.services.common import booking_event_data as booking_event
from core.models import DeadLetter
from notifications.context import ContextError, context_for
from notifications.models import CHANNEL_NAMES, MessageTemplate, Rule
from notifications.preview import PreviewError, preview
from notifications.rendering import RenderError, language_for, render, sms_fit, sms_segments
from notifications.rules import RULES
from orders.models import Order, OrderLine
from orders.services import order_event_data as order_event
from payments.event_data import payment_event_data as payment_event
from payments.models import Payment, PaymentAllocation, Refund, RefundShare
from subscriptions.models import Invoice, Subscription, Toybox, ToyboxItem
from subscriptions.services.common import invoice_data, subscription_data, toybox_data
from tests.factories import ResourceFactory, ServiceFactory, UserFactory
from tests.notifications.factories import NotificationFactory
from tests.orders.factories import VariantFactory
from tests.subscriptions.factories import ChildFactory, PlanFactory, ToyFactory

pytestmark = pytest.mark.django_db

LONG = "Deluxe Wooden Montessori Rainbow Stacker with Twelve Hand-Painted Arches and a Felt Storage Bag"
PAY_URL = "https://pay.example.com/checkout/inv_7Q2M9XDK4T8B2R6N1P0W3Y5Z"
START = datetime(2031, 3, 5, 10, 0, tzinfo=UTC)  # 13:00 in Moscow
CYRILLIC = re.compile("[а-яё]", re.IGNORECASE)
TELEGRAM_TAGS = {"b", "i", "u", "s", "a", "code", "pre"}


def spaces(text: str) -> str:
    """Russian groups thousands with a (narrow) no-break space: compare with a plain one."""
    return text.replace("\xa0", " ").replace("\u202f", " ")


def as_published(data: dict) -> dict:
    """Event data as subscribers get it: through JSON, Decimals and datetimes as strings."""
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


@pytest.fixture(autouse=True)
def _site(settings):
    settings.PROJECT_NAME = "Fulfil"
    settings.SITE_URL = "https://shop.example.com"


@pytest.fixture
def customer():
    return UserFactory(first_name="Ada", preferred_language="en")


def make_order(customer, currency: str = "NGN", name: str = LONG) -> Order:
    """A paid order of 2 x 500.00 and 1 x 250.00: 1,250.00."""
    now, total = timezone.now(), Decimal("1250.00")
    payment = Payment.objects.create(
        customer=customer, amount=total, currency=currency, gateway="sandbox", purpose="order", deadline=now
    )
    order = Order.objects.create(
        customer=customer,
        currency=currency,
        total=total,
        status="paid",
        deadline=now,
        paid_at=now,
        payment=payment,
    )
    Payment.objects.filter(pk=payment.pk).update(status="succeeded")
    PaymentAllocation.objects.create(payment=payment, purpose="order", purpose_id=order.number, amount=total)
    for product, price, quantity in ((name, "500.00", 2), ("Bamboo rattle", "250.00", 1)):
        variant = VariantFactory(product__name=product, name="Ages 1-3", currency=currency)
        OrderLine.objects.create(
            order=order,
            variant=variant,
            sku=variant.sku,
            name=f"{product} Ages 1-3",
            unit_price=price,
            quantity=quantity,
        )
    return Order.objects.get(pk=order.pk)


@pytest.fixture
def order(customer):
    return make_order(customer)


@pytest.fixture
def booking(customer):
    """A deposit-paid booking of a service at a Moscow hall, 10:00-11:00 UTC (13:00-14:00 there)."""
    hall = ResourceFactory(name=f"Grand Hall {LONG}", timezone="Europe/Moscow")
    service = ServiceFactory(name="Family photo session", duration_minutes=60, resources=[hall])
    return Booking.objects.create(
        resource=hall,
        service=service,
        customer=customer,
        currency="EUR",
        starts_at=START,
        ends_at=START + timedelta(hours=1),
        status="confirmed",
        payment_status="deposit_paid",
        payment_kind="deposit",
        amount_total=Decimal("40.00"),
        amount_due=Decimal("10.00"),
    )


@pytest.fixture
def toybox(customer):
    """A shipped toybox for Masha, of a paused subscription whose next invoice failed once."""
    child = ChildFactory(customer=customer, name="Masha")
    plan = PlanFactory(name=f"Explorer {LONG}", price="30.00", currency="USD")
    start = timezone.now().replace(microsecond=0)
    subscription = Subscription.objects.create(
        customer=customer,
        child=child,
        plan=plan,
        status="paused",
        current_period_start=start,
        current_period_end=start + timedelta(days=30),
    )
    invoice = Invoice.objects.create(
        subscription=subscription,
        customer=customer,
        amount=30,
        currency="USD",
        period_start=start,
        period_end=start + timedelta(days=30),
        attempts=1,
        next_attempt_at=start + timedelta(days=3),
        payment_url=PAY_URL,
        last_error="card declined",
    )
    box = Toybox.objects.create(
        invoice=invoice,
        subscription=subscription,
        child=child,
        customer=customer,
        period_start=start,
        status="shipped",
        toys_wanted=3,
        tracking_number="TRK-0042-7781",
    )
    for name in (LONG, "Magnetic fishing game"):
        toy = ToyFactory(product__name=name)
        ToyboxItem.objects.create(toybox=box, variant=toy, product=toy.product, sku=toy.sku, name=name)
    return Toybox.objects.select_related("subscription__plan", "invoice__subscription").get(pk=box.pk)


def refund_half(order: Order) -> dict:
    """Refund 500.00 of the order's payment as payments does; payment.refunded's data."""
    payment, half = order.payment, Decimal("500.00")
    Payment.objects.filter(pk=payment.pk).update(status="partially_refunded", refunded_amount=half)
    allocation = payment.allocations.get()
    PaymentAllocation.objects.filter(pk=allocation.pk).update(refunded_amount=half)
    refund = Refund.objects.create(
        payment=payment,
        amount=half,
        currency=payment.currency,
        full=False,
        reason="out of stock",
        status="succeeded",
        idempotency_key=f"refund-{payment.pk}",
    )
    RefundShare.objects.create(refund=refund, allocation=allocation, amount=half)
    refunded = Payment.objects.get(pk=payment.pk)
    return payment_event(refunded, payment_amount=refunded.amount) | {
        "refund_id": refund.public_id,
        "amount": half,
        "reason": refund.reason,
        "full": False,
        "refund_allocations": [{"purpose": "order", "purpose_id": order.number, "amount": half}],
    }


def staff_events(customer) -> tuple[dict, dict]:
    """dead_letter.recorded's and notification.failed's data, with their rows."""
    now = timezone.now()
    dead = DeadLetter.objects.create(
        event_id=uuid.uuid4(),
        event_type="order.paid",
        subscriber="orders.order_paid_notify",
        envelope={},
        error="ConnectionError: <smtp> refused",
        attempts=5,
        first_failed_at=now,
        last_failed_at=now,
    )
    failed = NotificationFactory(
        user=customer,
        channel="sms",
        address="+15005550001",
        status="failed",
        attempts=5,
        last_error="21211: invalid 'To' phone number",
    )
    common = {"event_type": "order.paid", "attempts": 5, "event_id": str(dead.event_id)}
    dead_data = {"dead_letter_id": dead.pk, "subscriber": dead.subscriber, "error": dead.error, **common}
    failed_data = {"notification_id": failed.public_id, "rule": "order.paid", "channel": "sms", **common}
    failed_data |= {"audience": "customer", "user_id": customer.pk, "error": failed.last_error}
    return dead_data, failed_data | {"event_id": str(failed.event_id)}


@pytest.fixture
def events(customer, order, booking, toybox):
    """Rule key -> (the event's data as published, what its messages must say)."""
    refunded = refund_half(order)
    dead, failed = staff_events(customer)
    payment = Payment.objects.get(pk=order.payment_id)
    invoice, subscription = toybox.invoice, toybox.subscription
    admin = "https://shop.example.com/admin"
    table = {
        "order.paid": (order_event(order), [order.number, "1,250.00 NGN"]),
        "order.cancelled": (order_event(order, reason="cancelled"), [order.number]),
        "order.fulfilled": (order_event(order), [order.number]),
        "booking.confirmed": (booking_event(booking, by="payment"), ["13:00", "10.00 EUR"]),
        "booking.cancelled": (
            booking_event(booking, reason="flood", refund=True, by="staff"),
            ["13:00", "flood"],
        ),
        "booking.expired": (booking_event(booking, reason="hold expired"), ["13:00"]),
        "booking.reminder.24h": (booking_event(booking, hours_before=24), ["13:00"]),
        "booking.reminder.2h": (booking_event(booking, hours_before=2), ["13:00"]),
        "toybox.created": (toybox_data(toybox), ["Masha", "Magnetic fishing game"]),
        "toybox.shipped": (toybox_data(toybox, tracking_number=toybox.tracking_number), ["TRK-0042-7781"]),
        "invoice.payment_failed": (
            invoice_data(invoice, error="card declined", final=False),
            ["30.00 USD", PAY_URL],
        ),
        "subscription.paused": (subscription_data(subscription, reason="payment failed 4 times"), ["Masha"]),
        "payment.failed": (payment_event(payment, error="card declined"), ["1,250.00 NGN", order.number]),
        "payment.refunded": (refunded, ["500.00 NGN", order.number]),
        "staff.payment_flagged": (
            payment_event(payment, reason="gateway reports 1300.00 NGN paid"),
            [payment.public_id, "gateway reports", f"{admin}/payments/payment/{payment.pk}/change/"],
        ),
        "staff.dead_letter": (
            dead,
            [dead["subscriber"], f"{admin}/core/deadletter/{dead['dead_letter_id']}/change/"],
        ),
        "staff.toybox_short": (
            toybox_data(toybox, missing=1),
            [toybox.public_id, f"{admin}/subscriptions/toybox/{toybox.pk}/change/"],
        ),
        "staff.notification_failed": (
            failed,
            ["order.paid", "invalid 'To'", f"{admin}/notifications/notification/"],
        ),
    }
    return {key: (as_published(data), expected) for key, (data, expected) in table.items()}


def rendered(rule_key: str, data: dict, language: str) -> dict:
    rule = RULES[rule_key]
    context = context_for(rule.event_type, data)
    return {channel: render(rule.template, language, channel, context.values) for channel in CHANNEL_NAMES}


def localized(what: str, language: str) -> str:
    """An amount as the language writes it: "1,250.00 NGN" is "1 250,00 NGN" in Russian."""
    if language == "ru" and re.fullmatch(r"[\d,]+\.\d+ [A-Z]{3}", what):
        return what.replace(",", " ").replace(".", ",")
    return what


@pytest.mark.parametrize("language", ["en", "ru"])
@pytest.mark.parametrize("rule_key", list(RULES))
def test_every_rule_renders_on_every_channel(events, rule_key, language):
    data, expected = events[rule_key]
    messages = rendered(rule_key, data, language)

    email, sms, telegram, inapp = (messages[channel] for channel in ("email", "sms", "telegram", "inapp"))
    assert email.subject and "\n" not in email.subject
    assert email.body == email.body.strip() and "\n\n\n" not in email.body
    assert not re.search(r"</?(p|div|b|strong|a)\b", email.body)  # plain text
    assert "<h1" in email.html and escape(email.subject) in email.html and "Fulfil" in email.html
    assert sms.subject == "" and 0 < sms_segments(sms.body) <= 2, sms.body
    assert telegram.subject == "" and set(re.findall(r"</?([a-z0-9]+)", telegram.body)) <= TELEGRAM_TAGS
    assert inapp.subject == email.subject and inapp.body
    for text in (email.body, email.html, telegram.body):
        for what in expected:
            assert localized(what, language) in spaces(unescape(text)), (what, text)
    for message in (email.subject, email.body, sms.body, telegram.body, inapp.body):
        assert bool(CYRILLIC.search(message)) == (language == "ru"), message


def test_an_order_shows_its_items_and_total_in_the_language_format(customer):
    order = make_order(customer, currency="RUB", name="Деревянная пирамидка")
    data = as_published(order_event(order))

    english = rendered("order.paid", data, "en")["email"]
    russian = rendered("order.paid", data, "ru")["email"]

    assert order.number in english.body and order.number in russian.body
    assert "1,250.00 RUB" in english.body
    assert "2 x Деревянная пирамидка Ages 1-3: 1,000.00 RUB" in english.body
    assert "1 250,00 RUB" in spaces(russian.body) and "Итого оплачено" in russian.body
    assert "Спасибо за заказ" in russian.subject + russian.body


@pytest.mark.parametrize(("amount", "currency", "language", "shown"), [
    ("1250", "NGN", "en", "1,250.00 NGN"),
    ("1250.000", "RUB", "ru", "1 250,00 RUB"),
    ("1250000.5", "USD", "en", "1,250,000.50 USD"),
    ("1250", "JPY", "en", "1,250 JPY"),
    ("12.5", "BHD", "ru", "12,500 BHD"),
    (Decimal("0.1"), "EUR", "en", "0.10 EUR"),
])  # fmt: skip
def test_money_has_the_currency_digits_in_the_language_format(amount, currency, language, shown):
    with translation.override(language):
        text = Template("{% load notifications %}{{ amount|money:currency }}").render(
            Context({"amount": amount, "currency": currency})
        )
    assert spaces(text) == shown


def test_a_booking_shows_the_resource_timezone(events):
    data, _ = events["booking.confirmed"]
    for language in ("en", "ru"):
        messages = rendered("booking.confirmed", data, language)
        email, sms, telegram = messages["email"], messages["sms"], messages["telegram"]
        for text in (email.subject, email.body, sms.body, telegram.body):
            assert "13:00" in text and "10:00" not in text, text
        assert "13:00-14:00" in email.body and "Europe/Moscow" in email.body
    assert "Wednesday, March 5" in rendered("booking.confirmed", data, "en")["email"].body
    assert "среда, 5 марта" in rendered("booking.confirmed", data, "ru")["email"].body
    assert context_for("booking.confirmed", data).timezone == "Europe/Moscow"


def test_data_is_escaped_in_html_and_telegram_only(customer):
    order = make_order(customer, name="<b>Bold</b> & co")
    messages = rendered("order.paid", as_published(order_event(order)), "en")
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp; co" in messages["email"].html
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp; co" in messages["telegram"].body
    assert "<b>Bold</b> & co" in messages["email"].body


# --- SMS ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "segments"), [
    ("", 0),
    ("a" * 160, 1),
    ("a" * 161, 2),
    ("a" * 306, 2),
    ("a" * 307, 3),
    ("€" * 80, 1),  # an extension character takes two septets
    ("€" * 81, 2),
    ("ж" * 70, 1),
    ("ж" * 134, 2),
    ("ж" * 135, 3),
    ("a" * 69 + "…", 1),  # the ellipsis is not GSM-7: UCS-2
])  # fmt: skip
def test_sms_segments(text, segments):
    assert sms_segments(text) == segments


def test_a_long_sms_is_shortened_at_a_word_and_keeps_its_link():
    text = "Your payment failed for " + "subscription " * 40 + PAY_URL
    fitted = sms_fit(text)
    assert sms_segments(fitted) <= 2 and fitted.endswith("… " + PAY_URL)
    head = fitted[: fitted.index("…")]
    assert text.startswith(head) and head.endswith(" subscription")  # cut between words

    russian = "Не удалось списать 30,00 USD за подписку " + "очень " * 30 + PAY_URL
    fitted = sms_fit(russian)
    assert sms_segments(fitted) <= 2 and fitted.endswith("… " + PAY_URL)


def test_a_link_that_does_not_fit_whole_is_dropped():
    url = "https://example.com/" + "x" * 200
    fitted = sms_fit(f"See {url} and then " + "more words " * 30)
    assert sms_segments(fitted) <= 2 and "https://" not in fitted and fitted.endswith("…")
    assert sms_fit("Short and sweet") == "Short and sweet"


def test_a_shortened_gsm_text_accounts_for_the_ellipsis_switching_to_ucs2():
    fitted = sms_fit(" ".join(["word"] * 80))  # 399 GSM-7 characters
    assert fitted.endswith("…") and len(fitted) <= 134 and sms_segments(fitted) == 2


def test_sms_fit_two_segments_with_long_names_in_russian(events):
    for key in ("booking.confirmed", "booking.reminder.24h", "invoice.payment_failed", "order.paid"):
        sms = rendered(key, events[key][0], "ru")["sms"].body
        assert sms_segments(sms) <= 2, sms
    invoice_sms = rendered("invoice.payment_failed", events["invoice.payment_failed"][0], "ru")["sms"].body
    assert invoice_sms.endswith(PAY_URL)


# --- templates: overrides, errors, languages -------------------------------------------------
def test_a_message_template_row_overrides_the_file(events):
    data, _ = events["order.paid"]
    MessageTemplate.objects.create(
        name="order_paid",
        language="en",
        source="{% load notifications %}{% block subject %}Paid: {{ number }}{% endblock %}"
        "{% block inapp %}Thanks for {{ total|money:currency }}{% endblock %}",
    )
    message = rendered_channel("order.paid", data, "en", "inapp")
    assert message.subject.startswith("Paid: ") and message.body == "Thanks for 1,250.00 NGN"
    russian = rendered_channel("order.paid", data, "ru", "inapp")  # still the file
    assert russian.subject.startswith("Заказ")


def rendered_channel(rule_key: str, data: dict, language: str, channel: str):
    rule = RULES[rule_key]
    return render(rule.template, language, channel, context_for(rule.event_type, data).values)


def test_a_broken_template_raises_render_error_naming_it(events):
    data, _ = events["order.paid"]
    broken = "{% block subject %}{% if %}{% endblock %}"
    MessageTemplate.objects.create(name="order_paid", language="en", source=broken)
    with pytest.raises(RenderError, match=r"'order_paid' \(en\): syntax error"):
        rendered_channel("order.paid", data, "en", "email")

    MessageTemplate.objects.filter(name="order_paid").update(source="{% block subject %}Hi{% endblock %}")
    with pytest.raises(RenderError, match=r"'order_paid' \(en\): no block 'sms'"):
        rendered_channel("order.paid", data, "en", "sms")

    MessageTemplate.objects.filter(name="order_paid").update(
        source="{% block sms %}{{ total|floatformat:currency|money }}{% endblock %}"
    )
    with pytest.raises(RenderError, match="order_paid"):
        rendered_channel("order.paid", data, "en", "sms")

    with pytest.raises(RenderError, match="no_such_template"):
        render("no_such_template", "en", "email", {})
    with pytest.raises(RenderError, match="not a template name"):
        render("../secrets", "en", "email", {})


def test_a_missing_language_falls_back_to_english(events):
    data, _ = events["order.paid"]
    german = rendered_channel("order.paid", data, "de", "email")
    assert german == rendered_channel("order.paid", data, "en", "email")

    source = "{% block sms %}Hello{% endblock %}"
    MessageTemplate.objects.create(name="english_only", language="en", source=source)
    assert render("english_only", "ru", "sms", {}).body == "Hello"


def test_language_for_a_user():
    assert language_for(UserFactory(preferred_language="ru")) == "ru"
    assert language_for(UserFactory(preferred_language="de")) == "en"
    assert language_for(None) == "en"


def test_an_event_about_a_missing_object_is_a_context_error(events):
    data, _ = events["order.paid"]
    with pytest.raises(ContextError, match="NOPE-0000"):
        context_for("order.paid", {**data, "number": "NOPE-0000", "order_id": "NOPE-0000"})


def test_context_keeps_amounts_as_decimals_with_their_currency(events, customer):
    values = context_for("order.paid", events["order.paid"][0]).values
    assert values["total"] == Decimal("1250.00") and values["currency"] == "NGN"
    assert values["lines"][0]["total"] == Decimal("1000.00")
    assert values["customer"] == customer and values["site_url"] == "https://shop.example.com"
    assert values["event_type"] == "order.paid" and values["data"]["number"] == values["number"]
    staff = context_for("payment.flagged", events["staff.payment_flagged"][0])
    assert staff.values["audience"] == "staff" and staff.values["customer"] == customer


# --- preview --------------------------------------------------------------------------------
def test_preview_renders_the_latest_object_and_a_named_one(customer):
    first, latest = make_order(customer), make_order(customer)
    Order.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(days=1))

    shown = preview("order.paid", "en")
    assert set(shown) == set(CHANNEL_NAMES)
    assert latest.number in shown["email"].subject and latest.number in shown["sms"].body

    named = preview("order.paid", "ru", first.number)
    assert first.number in named["email"].subject and "оплачен" in named["email"].subject


def test_preview_uses_the_rule_row_template_and_reports_a_broken_channel(customer):
    order = make_order(customer)
    source = "{% block subject %}Receipt {{ number }}{% endblock %}{% block inapp %}Paid.{% endblock %}"
    MessageTemplate.objects.create(name="receipt", language="en", source=source)
    Rule.objects.update_or_create(key="order.paid", defaults={"template": "receipt", "channels": ["inapp"]})

    shown = preview("order.paid", "en", order.number)

    assert shown["inapp"].subject == f"Receipt {order.number}" and shown["inapp"].body == "Paid."
    assert shown["email"] == "template 'receipt' (en): no block 'text'"
    assert shown["sms"] == "template 'receipt' (en): no block 'sms'"


@pytest.mark.parametrize("rule_key", list(RULES))
def test_preview_every_rule(events, rule_key):
    shown = preview(rule_key, "ru")
    assert all(not isinstance(message, str) for message in shown.values()), shown
    assert all(CYRILLIC.search(message.body) for message in shown.values())


def test_preview_without_an_object_is_a_clear_error():
    with pytest.raises(PreviewError, match="no order to preview with"):
        preview("order.paid", "en")
    with pytest.raises(PreviewError, match="no dead letter 'abc'"):
        preview("staff.dead_letter", "en", "abc")
    with pytest.raises(PreviewError, match="no rule"):
        preview("order.nope", "en")
