"""One DRF exception handler for the whole API: every error is {"code", "message", "extra"}."""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status, throttling
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import ApplicationError, Unavailable

logger = logging.getLogger(__name__)


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            text = _first_message(value)
            return text if key == "non_field_errors" else f"{key}: {text}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(exc.body, status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django answers 500 and the log has the traceback
    if isinstance(exc, exceptions.ValidationError):
        body = {"code": "invalid", "message": _first_message(exc.detail), "extra": {"fields": exc.detail}}
        response.status_code = status.HTTP_400_BAD_REQUEST
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        extra = {"wait": exc.wait} if isinstance(exc, exceptions.Throttled) else {}
        body = {
            "code": code if isinstance(code, str) else "error",
            "message": _first_message(detail),
            "extra": extra,
        }
    response.data = body
    return response


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
