"""HTTP to outside services: bounded timeouts, retries of transient failures, one error type.

Payment gateways use it (payments.gateways.http binds it to GatewayError), and so can any
other integration (an SMS or e-mail provider's API).
"""

import logging
import time
from collections.abc import Mapping
from typing import Any

import requests

from core.errors import TransientError

logger = logging.getLogger(__name__)

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
DEFAULT_TIMEOUT = (3.05, 15.0)  # connect, read: seconds


class HTTPError(Exception):
    """A call that failed. `transient`: it may work if tried again (timeout, dropped connection, 5xx)."""

    def __init__(self, message: str, *, transient: bool, status: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.status = status


class TransientHTTPError(HTTPError, TransientError):
    """A transient failure: tasks and event subscribers retry it by default (core.errors.TransientError)."""


class HTTPClient:
    """One service's API: a requests session, its timeouts, and a retry policy.

    A call marked `retry_safe` (a GET, or a POST the service de-duplicates by an
    idempotency key) is tried up to 1 + `retries` times on a timeout, a dropped connection
    or a 408/425/429/5xx answer, waiting `backoff`, 2 x `backoff`, ... between tries. Any
    other call is tried once. Whatever still fails raises `error(..., transient=True)`;
    other 4xx answers are returned for the caller to interpret.

    A subclass overrides `error` to raise its own exception type, and `user_agent`.
    """

    user_agent = "fulfil/1.0"

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retries: int = 2,
        backoff: float = 0.5,
        auth: Any = None,
        headers: Mapping[str, str] | None = None,
    ):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.session = requests.Session()
        self.session.auth = auth
        self.session.headers.update({"User-Agent": self.user_agent, **(headers or {})})

    def error(self, message: str, *, transient: bool, status: int | None = None) -> Exception:
        """The exception a failed call raises."""
        error_class = TransientHTTPError if transient else HTTPError
        return error_class(message, transient=transient, status=status)

    def request(
        self,
        method: str,
        path: str,
        *,
        retry_safe: bool,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        url = f"{self.base_url}/{path.lstrip('/')}"
        attempts = 1 + (self.retries if retry_safe else 0)
        for attempt in range(1, attempts + 1):
            try:
                response = self.session.request(
                    method, url, json=json, data=data, params=params, headers=headers, timeout=self.timeout
                )
            except (requests.Timeout, requests.ConnectionError) as exc:
                error = self.error(f"{self.name}: {type(exc).__name__} on {method} {path}", transient=True)
            else:
                if response.status_code not in TRANSIENT_STATUSES:
                    return response
                error = self.error(
                    f"{self.name}: HTTP {response.status_code} on {method} {path}",
                    transient=True,
                    status=response.status_code,
                )
            logger.warning(
                "HTTP call failed",
                extra={"service": self.name, "path": path, "attempt": attempt, "error": str(error)},
            )
            if attempt < attempts:
                time.sleep(self.backoff * 2 ** (attempt - 1))
        raise error

    def json(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise self.error(
                f"{self.name}: answer is not JSON (HTTP {response.status_code})",
                transient=response.status_code >= 500,
                status=response.status_code,
            ) from exc
