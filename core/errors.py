"""Application errors: services raise these; the API renders {"code", "message", "extra"}."""

from typing import Any


class ApplicationError(Exception):
    """A business error with a stable machine-readable code."""

    status_code = 422
    default_code = "application_error"
    default_message = "The request could not be completed."

    def __init__(
        self, message: str | None = None, *, code: str | None = None, extra: dict[str, Any] | None = None
    ):
        self.message = message or self.default_message
        self.code = code or self.default_code
        self.extra = extra or {}
        super().__init__(self.message)

    @property
    def body(self) -> dict[str, Any]:
        """What the API answers: {"code", "message", "extra"}."""
        return {"code": self.code, "message": self.message, "extra": self.extra}


class InvalidInput(ApplicationError):
    status_code = 400
    default_code = "invalid"
    default_message = "The input is not valid."


class NotFound(ApplicationError):
    status_code = 404
    default_code = "not_found"
    default_message = "Not found."


class TransitionNotAllowed(ApplicationError):
    status_code = 409
    default_code = "transition_not_allowed"
    default_message = "This change is not allowed in the current state."


class BusinessRuleViolation(ApplicationError):
    status_code = 422
    default_code = "business_rule"


class TransientError(Exception):
    """A failure that may pass if tried again (a timeout, a 5xx, a dropped connection).

    Tasks and event subscribers retry it with backoff; anything else fails at once.
    """


class Unavailable(ApplicationError):
    """A dependency (a payment gateway, say) cannot serve the request now; try again later."""

    status_code = 503
    default_code = "unavailable"
    default_message = "A service this request needs is unavailable; try again later."
