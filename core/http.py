"""HTTP to outside services: bounded timeouts, retries of transient failures, one error type.

Payment gateways use it (payments.gateways.http binds it to GatewayError), and so can any
other integration (an SMS or e-mail provider's API).

A caller with a deadline of its own (a web request must answer before the server's timeout)
gives its calls a time budget: `deadline=` on one call, or `with time_budget(seconds):` around
code that makes several, however deep. Each try then waits at most for what is left, and no
retry starts that could not finish in time: the call fails as transient instead.
"""

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import requests

from core.errors import TransientError

logger = logging.getLogger(__name__)

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
DEFAULT_TIMEOUT = (3.05, 15.0)  # connect, read: seconds
MIN_TRY_SECONDS = 0.1  # less than this left of a budget: no new try is started

# time.monotonic() by which the calls made in this context must be done (None: no budget).
_deadline: ContextVar[float | None] = ContextVar("core_http_deadline", default=None)


@contextmanager
def time_budget(seconds: float) -> Iterator[float]:
    """Every HTTPClient call made inside shares one deadline, `seconds` from now (nested budgets:
    the earlier deadline wins). Yields the deadline, in time.monotonic() terms."""
    deadline = time.monotonic() + seconds
    outer = _deadline.get()
    if outer is not None:
        deadline = min(deadline, outer)
    token = _deadline.set(deadline)
    try:
        yield deadline
    finally:
        _deadline.reset(token)


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

    Within a deadline (`deadline=`, or the enclosing time_budget), each try's connect and
    read timeouts are cut to the time left, and a retry that would start too late is not
    made. The read timeout bounds each wait for the server's next bytes, as in requests.

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
        deadline: float | None = None,
    ) -> requests.Response:
        """One call; `deadline` (time.monotonic()) bounds it and its retries, as does time_budget."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        budget = _deadline.get()
        if deadline is None or (budget is not None and budget < deadline):
            deadline = budget
        attempts = 1 + (self.retries if retry_safe else 0)
        for attempt in range(1, attempts + 1):
            timeout = self._timeout_within(deadline, method, path, attempt)
            try:
                response = self.session.request(
                    method, url, json=json, data=data, params=params, headers=headers, timeout=timeout
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
                pause = self.backoff * 2 ** (attempt - 1)
                if deadline is not None and time.monotonic() + pause + MIN_TRY_SECONDS > deadline:
                    raise self.error(
                        f"{error}; no time left in the budget to try again",
                        transient=True,
                        status=getattr(error, "status", None),
                    )
                time.sleep(pause)
        raise error

    def _timeout_within(
        self, deadline: float | None, method: str, path: str, attempt: int
    ) -> tuple[float, float]:
        """The (connect, read) timeouts of a try: ours, cut to what is left before `deadline`."""
        if deadline is None:
            return self.timeout
        left = deadline - time.monotonic()
        if left < MIN_TRY_SECONDS:
            raise self.error(
                f"{self.name}: no time left in the budget for {method} {path} (try {attempt})", transient=True
            )
        return (min(self.timeout[0], left), min(self.timeout[1], left))

    def json(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise self.error(
                f"{self.name}: answer is not JSON (HTTP {response.status_code})",
                transient=response.status_code >= 500,
                status=response.status_code,
            ) from exc
