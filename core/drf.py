"""The DRF classes REST_FRAMEWORK names: parsers, filters, ordering, pagination, rate limits.

DRF reads these settings while it defines its views, so this module must not import
rest_framework.views or generics (nor core.api, which does).

- parsers refuse a body larger than DATA_UPLOAD_MAX_MEMORY_SIZE (413);
- query parameters are strict: filters (FilterSet, FilterBackend), `ordering`
  (OrderingFilter), `limit`/`offset` (LimitOffsetPagination) and `cursor` (CursorPagination)
  answer 400 naming the parameter, instead of ignoring it or failing in the database;
- the rate limits fail open, except `auth` (logins), which fails closed.
"""

import logging
import re
from datetime import UTC, datetime, timedelta

import django_filters
from django import forms
from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django_filters.rest_framework import DjangoFilterBackend
from django_filters.rest_framework.filterset import FILTER_FOR_DBFIELD_DEFAULTS
from rest_framework import exceptions, filters, pagination, parsers, status, throttling

from core.errors import Unavailable
from core.money import CURRENCY_EXPONENTS

logger = logging.getLogger(__name__)

MAX_BIGINT = 2**63 - 1  # the largest offset or id the database takes
# The UTC offsets in use anywhere (Baker Island, UTC-12, to Kiribati, UTC+14).
MIN_UTC_OFFSET, MAX_UTC_OFFSET = timedelta(hours=-12), timedelta(hours=14)


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"
    default_detail = _("The request body is too large.")


def too_large_message() -> str:
    return f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."


# --- Parsers: no body larger than DATA_UPLOAD_MAX_MEMORY_SIZE -------------------------------
class _SizeLimited:
    """DRF reads the body as a stream, past Django's DATA_UPLOAD_MAX_MEMORY_SIZE check: check here."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        meta = parser_context["request"].META if parser_context else {}
        try:
            length = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            raise RequestTooLarge(too_large_message())
        return super().parse(stream, media_type, parser_context)


class JSONParser(_SizeLimited, parsers.JSONParser):
    pass


class FormParser(_SizeLimited, parsers.FormParser):
    pass


class MultiPartParser(_SizeLimited, parsers.MultiPartParser):
    pass


# --- Filters: a value that cannot be understood is a 400 naming its parameter -----------------
class StrictBooleanField(forms.Field):
    """true/false (also 1/0, yes/no, on/off, any case); anything else is invalid, not ignored."""

    widget = forms.TextInput
    values = {
        **dict.fromkeys(("true", "1", "yes", "on"), True),
        **dict.fromkeys(("false", "0", "no", "off"), False),
    }

    def to_python(self, value):
        if value is None or isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if not text:
            return None
        if text not in self.values:
            raise forms.ValidationError("Must be true or false.", code="invalid")
        return self.values[text]


def utc_offset_problem(moment: datetime) -> str | None:
    """Why an aware datetime's UTC offset cannot be real (None when it can)."""
    offset = moment.utcoffset()
    if offset is None or MIN_UTC_OFFSET <= offset <= MAX_UTC_OFFSET:
        return None
    sign, minutes = ("-" if offset < timedelta(0) else "+"), abs(offset) // timedelta(minutes=1)
    return f"The UTC offset {sign}{minutes // 60:02d}:{minutes % 60:02d} is not in use (-12:00 to +14:00)."


class StrictIsoDateTimeField(django_filters.fields.IsoDateTimeField):
    """ISO 8601 with a real UTC offset (or none: UTC), as an instant in UTC."""

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        problem = utc_offset_problem(moment)
        if problem:
            raise forms.ValidationError(problem, code="invalid")
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError("The date and time is out of range.", code="invalid") from None


class CurrencyField(django_filters.fields.ChoiceField):
    """An ISO 4217 code in any case (usd, USD)."""

    def to_python(self, value):
        return super().to_python(value).strip().upper()


class BooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = StrictIsoDateTimeField


class CurrencyFilter(django_filters.ChoiceFilter):
    """A currency code the payments take, in any case; any other is a 400."""

    field_class = CurrencyField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("choices", [(code, code) for code in sorted(CURRENCY_EXPONENTS)])
        kwargs.setdefault("help_text", "ISO 4217 code, in any case (USD or usd)")
        super().__init__(*args, **kwargs)


class FilterSet(django_filters.rest_framework.FilterSet):
    """The base of every FilterSet of the API: booleans and datetimes are checked, not guessed."""

    FILTER_DEFAULTS = {
        **FILTER_FOR_DBFIELD_DEFAULTS,
        models.BooleanField: {"filter_class": BooleanFilter},
        models.DateTimeField: {"filter_class": IsoDateTimeFilter},
    }


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend (an invalid filter raises ValidationError: a 400 naming it),
    with FilterSet as the base of the sets it builds from `filterset_fields`."""

    filterset_base = FilterSet


class OrderingFilter(filters.OrderingFilter):
    """`?ordering=name,-created_at` over the view's `ordering_fields` only; any other is a 400.

    `ordering_fields` lists the names clients use, or maps them to the queryset's fields
    (`{"start": "starts_at"}`). A list without `ordering_fields` has no `ordering` parameter
    (like any parameter a list does not have, it is ignored).
    """

    @staticmethod
    def fields_of(view) -> dict[str, str]:
        fields = getattr(view, "ordering_fields", None) or {}
        return dict(fields) if isinstance(fields, dict) else {name: name for name in fields}

    def get_ordering(self, request, queryset, view):
        raw = request.query_params.get(self.ordering_param, "")
        fields = self.fields_of(view)
        if not raw.strip() or not fields:
            return self.get_default_ordering(view)
        terms = [term.strip() for term in raw.split(",")]
        unknown = [term for term in terms if term.removeprefix("-") not in fields]
        if unknown:
            message = (
                f"Cannot order by {', '.join(repr(t) for t in unknown)}: "
                f"order by {', '.join(fields)}, with '-' for descending."
            )
            raise exceptions.ValidationError({self.ordering_param: [message]})
        ordering = [("-" if t.startswith("-") else "") + fields[t.removeprefix("-")] for t in terms]
        return [*ordering, "pk"]  # ties in a stable order, so that pages neither repeat nor skip

    def get_schema_operation_parameters(self, view):
        fields = self.fields_of(view)
        if not fields:
            return []
        default = ",".join(self.get_default_ordering(view) or ())
        return [
            {
                "name": self.ordering_param,
                "required": False,
                "in": "query",
                "description": "Comma-separated fields, '-' for descending"
                + (f" (default {default})." if default else "."),
                "schema": {"type": "array", "items": {"type": "string", "enum": _signed(fields)}},
                "style": "form",
                "explode": False,
            }
        ]


def _signed(names) -> list[str]:
    return [term for name in names for term in (name, f"-{name}")]


# --- Pagination: a malformed or out-of-range limit, offset or cursor is a 400 ----------------
_DIGITS = re.compile(r"^[0-9]{1,19}$")


def query_int(request, name: str, *, default: int | None, minimum: int, maximum: int) -> int | None:
    """The query parameter `name` as a whole number within [minimum, maximum]; absent or empty: default."""
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return default
    value = int(raw) if _DIGITS.match(raw) else None
    if value is None or not minimum <= value <= maximum:
        raise exceptions.ValidationError({name: [f"Must be a whole number from {minimum} to {maximum}."]})
    return value


def _bounded(parameter: dict, minimum: int, maximum: int, default: int | None) -> dict:
    parameter["schema"] = {"type": "integer", "minimum": minimum, "maximum": maximum}
    if default is not None:
        parameter["schema"]["default"] = default
    return parameter


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """`limit` from 1 to 500 (50 by default) and `offset` from 0; anything else is a 400."""

    max_limit = 500

    def get_limit(self, request):
        return query_int(
            request, self.limit_query_param, default=self.default_limit, minimum=1, maximum=self.max_limit
        )

    def get_offset(self, request):
        return query_int(request, self.offset_query_param, default=0, minimum=0, maximum=MAX_BIGINT)

    def get_schema_operation_parameters(self, view):
        limit, offset = super().get_schema_operation_parameters(view)
        return [_bounded(limit, 1, self.max_limit, self.default_limit), _bounded(offset, 0, MAX_BIGINT, 0)]


class CursorPagination(pagination.CursorPagination):
    """Pages by an opaque `cursor` over an integer key (`ordering`), `limit` from 1 to 500.

    A cursor this API did not give (or a malformed `limit`) is a 400 naming the parameter.
    """

    page_size_query_param = "limit"
    max_page_size = 500

    def get_page_size(self, request):
        return query_int(
            request,
            self.page_size_query_param,
            default=self.page_size,
            minimum=1,
            maximum=self.max_page_size,
        )

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            cursor = None
        else:
            position = None if cursor is None else cursor.position
            if position is None or (_DIGITS.match(position) and int(position) <= MAX_BIGINT):
                return cursor
        raise exceptions.ValidationError(
            {self.cursor_query_param: ["Not a cursor of this list: follow `next` or `previous`."]}
        )

    def get_schema_operation_parameters(self, view):
        cursor, limit = super().get_schema_operation_parameters(view)
        return [cursor, _bounded(limit, 1, self.max_page_size, self.page_size)]


# --- Rate limits ------------------------------------------------------------------------------
class _FailOpen:
    """A rate limit that lets requests through while its cache (Redis) cannot be reached.

    The API's default: Redis is an optimisation, and reads and orders keep working without
    it. The `auth` scope (logins) fails closed instead (FailClosedScopedRateThrottle).
    """

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:
            logger.warning("rate-limit cache unavailable; request not throttled", exc_info=True)
            return True


class FailOpenAnonRateThrottle(_FailOpen, throttling.AnonRateThrottle):
    pass


class FailOpenUserRateThrottle(_FailOpen, throttling.UserRateThrottle):
    """Signed-in callers only: the anonymous rate already limits the others, by address."""

    def get_cache_key(self, request, view) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None
        return super().get_cache_key(request, view)


class FailClosedScopedRateThrottle(throttling.ScopedRateThrottle):
    """Scoped limits (e.g. `auth` on logins): with their cache down, 503 rather than no limit."""

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception as exc:
            logger.warning("rate-limit cache unavailable; refusing a rate-limited request", exc_info=True)
            raise Unavailable(
                "Rate limiting is unavailable; try again shortly.", code="rate_limit_unavailable"
            ) from exc
