"""Filters for the notification templates: money, days and time ranges in the active
language and timezone (rendering.render sets both), and plurals.

    {% load notifications %}
    {{ total|money:currency }}                 1,250.00 NGN / 1 250,00 NGN
    {{ booking.starts_at|day }}                Wednesday, March 5 / среда, 5 марта
    {{ booking.starts_at|time_range:booking.ends_at }}    13:00-14:30
    {{ toys|length }} {{ toys|length|plural:"игрушка,игрушки,игрушек" }}    3 игрушки
"""

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django import template
from django.utils import formats, timezone, translation

from core.money import MoneyError, exponent

register = template.Library()

# A day in a sentence: "March 5" / "5 марта" ("E": the genitive month Russian needs after a day).
DAY_FORMATS = {"en": "F j", "ru": "j E"}
LOWERCASE_WEEKDAYS = {"ru"}  # "среда, 5 марта": Russian weekdays are not capitalised mid-sentence


@register.filter
def money(amount: Decimal | str | int | None, currency: str) -> str:
    """The amount with exactly its currency's minor digits, grouped in the active language's
    format, then the currency: "1,250.00 NGN" in English, "1 250,00 NGN" in Russian."""
    if amount is None or amount == "":
        return ""
    try:
        value = Decimal(str(amount))
        digits = exponent(currency)
    except (InvalidOperation, MoneyError):
        return f"{amount} {currency}".strip()
    value = value.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    number = formats.number_format(value, decimal_pos=digits, use_l10n=True, force_grouping=True)
    return f"{number} {currency}"


def _day(value: datetime) -> str:
    return formats.date_format(value, DAY_FORMATS.get(translation.get_language() or "", DAY_FORMATS["en"]))


@register.filter(expects_localtime=True)
def day(value: datetime | None, short: str = "") -> str:
    """The day of a date or time with its weekday ("Wednesday, March 5"); `day:"short"` without it."""
    if not value:
        return ""
    if short:
        return _day(value)
    weekday = formats.date_format(value, "l")
    if translation.get_language() in LOWERCASE_WEEKDAYS:
        weekday = weekday.lower()
    return f"{weekday}, {_day(value)}"


@register.filter(expects_localtime=True)
def time_range(start: datetime | None, end: datetime | None) -> str:
    """A range like "13:00-14:30" in the active timezone (a hyphen: an SMS stays GSM-7); the
    end's day is added when it ends on another day (an end at midnight ends the same day)."""
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        return ""
    if timezone.is_aware(end):
        end = timezone.localtime(end)
    if (end - timedelta(microseconds=1)).date() == start.date():
        return f"{start:%H:%M}-{end:%H:%M}"
    return f"{start:%H:%M} - {_day(end)} {end:%H:%M}"


@register.filter
def plural(count: int | str, forms: str) -> str:
    """The word for `count`: "toy,toys" by the English rule, "игрушка,игрушки,игрушек" by the
    Russian one (one, few, many: 1 игрушка, 3 игрушки, 5 и 11 игрушек)."""
    try:
        number = abs(int(count))
    except (TypeError, ValueError):
        number = 0
    words = forms.split(",")
    if len(words) < 3:
        return words[0] if number == 1 else words[-1]
    if number % 10 == 1 and number % 100 != 11:
        return words[0]
    if 2 <= number % 10 <= 4 and not 12 <= number % 100 <= 14:
        return words[1]
    return words[2]
