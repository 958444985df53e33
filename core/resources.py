"""The columns every CSV export for the accountant shares (django-import-export, export only):
amounts as plain decimals with their currency's digits ("1250.00", "37"), and times in UTC as
ISO 8601 to the second ("2026-12-10T09:00:00+00:00")."""

from import_export import fields

from core.money import MoneyError, quantize


def plain_amount(amount, currency: str) -> str:
    """What a spreadsheet reads as a number: no separators, no currency code."""
    try:
        return str(quantize(amount, currency))
    except MoneyError:
        return str(amount)


class AmountField(fields.Field):
    """An amount (the attribute named) in the row's `currency`."""

    def export(self, instance, **kwargs) -> str:
        return plain_amount(self.get_value(instance), instance.currency)


class TimeField(fields.Field):
    """A moment in UTC as ISO 8601; empty when there is none (not paid yet, say)."""

    def export(self, instance, **kwargs) -> str:
        moment = self.get_value(instance)
        return moment.isoformat(timespec="seconds") if moment else ""
