"""What the dashboard is made of: figures (a number and the admin list it counts), tables and
panels of them, and the site's days. No queries here."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.conf import settings
from django.urls import reverse

from console.charts import BarChart
from core.admin import money_display
from core.money import MoneyError, exponent


@dataclass(frozen=True)
class Figure:
    """A number on the dashboard, and the admin list of exactly the `count` rows behind it."""

    key: str  # stable, for tests and the page's data-figure attribute
    label: str  # what it counts, in words
    count: int
    url: str
    text: str = ""  # shown instead of the count (an age, a lag)
    amounts: tuple[str, ...] = ()  # the sums of what it counts, one per currency
    alert: bool = False

    @property
    def shown(self) -> str:
        return self.text or str(self.count)


@dataclass
class Row:
    label: str
    cells: list[Figure]
    note: str = ""
    extra_link: tuple[str, str] | None = None  # (text, url)


@dataclass
class Table:
    key: str
    caption: str
    columns: list[str]
    rows: list[Row]
    row_header: str = ""


@dataclass
class Panel:
    key: str
    title: str
    note: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    charts: list[BarChart] = field(default_factory=list)

    def all_figures(self) -> Iterator[Figure]:
        yield from self.figures
        for table in self.tables:
            for row in table.rows:
                yield from row.cells
        for chart in self.charts:
            for bar in chart.bars:
                yield bar.point.figure


def admin_list(model, **lookups) -> str:
    """The admin changelist of `model` filtered by `lookups` (datetimes as ISO 8601)."""
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    params = {
        name: ",".join(value) if isinstance(value, list | tuple) else _param(value)
        for name, value in lookups.items()
    }
    return f"{url}?{urlencode(params)}" if params else url


def _param(value) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def money_sums(amounts: dict[str, Decimal]) -> tuple[str, ...]:
    """One "1,250.00 NGN" per currency, by currency code: amounts in different ones never add up."""
    return tuple(money_display(amount, currency) for currency, amount in sorted(amounts.items()))


def minor_digits(currency: str) -> int:
    """The currency's minor digits, for an axis's labels (2 for one money does not know)."""
    try:
        return exponent(currency)
    except MoneyError:
        return 2


def duration(seconds: float) -> str:
    """A rough age for people: "45 s", "12 min", "5 h", "3 days"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


@dataclass(frozen=True)
class SiteDays:
    """Today and this week (Monday to Sunday) in the site's timezone, as [start, end) instants."""

    now: datetime
    tz: ZoneInfo

    @property
    def today(self) -> date:
        return self.now.astimezone(self.tz).date()

    def start(self, day: date) -> datetime:
        return datetime.combine(day, time.min, tzinfo=self.tz)

    @property
    def periods(self) -> dict[str, tuple[str, datetime, datetime]]:
        monday = self.today - timedelta(days=self.today.weekday())
        return {
            "today": (
                f"today ({self.today:%a %d %b})",
                self.start(self.today),
                self.start(self.today + timedelta(days=1)),
            ),
            "week": (
                f"this week ({monday:%a %d %b} to {monday + timedelta(days=6):%a %d %b})",
                self.start(monday),
                self.start(monday + timedelta(days=7)),
            ),
        }


def site_days(now: datetime) -> SiteDays:
    return SiteDays(now=now, tz=ZoneInfo(settings.TIME_ZONE))
