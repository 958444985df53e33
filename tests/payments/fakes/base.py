"""A fake payment provider's HTTP API, served on 127.0.0.1 in a thread.

Subclasses register routes with @route(METHOD, r"^/path/(?P<id>[^/]+)$") on methods that
take a FakeRequest (and the regex's groups) and return (status, body) where body is a dict
(sent as JSON), bytes or str, or (status, body, headers). Each fake checks what the real
provider checks (credentials, signature or token, idempotency key, minor units) and keeps
its own state, so tests assert outcomes, not calls.

    with FakePaystack() as fake:
        gateway = PaystackGateway({"secret_key": fake.secret, "base_url": fake.base_url})
        fake.fail_next(503, 503)  # the next two requests get a 503
        fake.stall_next(1)        # the next request hangs past the client's read timeout
"""

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class FakeRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class _Route:
    method: str
    pattern: re.Pattern
    handler: Callable


def route(method: str, pattern: str) -> Callable:
    def mark(func: Callable) -> Callable:
        func._route = (method, re.compile(pattern))
        return func

    return mark


@dataclass
class FakeProvider:
    stall_seconds: float = 3.0
    requests: list[FakeRequest] = field(default_factory=list)

    def __post_init__(self):
        self._routes = []
        for name in dir(type(self)):
            marked = getattr(getattr(type(self), name), "_route", None)
            if marked:
                self._routes.append(_Route(marked[0], marked[1], getattr(self, name)))
        self._failures: list[int | str] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                url = urlsplit(self.path)
                request = FakeRequest(
                    method=self.command,
                    path=url.path,
                    query=parse_qs(url.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                status, body, headers = fake._dispatch(request)
                payload = (
                    body
                    if isinstance(body, bytes)
                    else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
                )
                self.send_response(status)
                content_type = "application/json" if isinstance(body, dict | list) else "text/plain"
                for name, value in {"Content-Type": content_type, **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, *statuses: int) -> None:
        """The next requests get these HTTP statuses instead of being handled."""
        with self._lock:
            self._failures.extend(statuses)

    def stall_next(self, count: int = 1) -> None:
        """The next `count` requests hang for `stall_seconds` (past the client's read timeout)."""
        with self._lock:
            self._failures.extend(["stall"] * count)

    def _dispatch(self, request: FakeRequest) -> tuple[int, Any, dict[str, str]]:
        self.requests.append(request)
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure == "stall":
            time.sleep(self.stall_seconds)
            return 504, {"message": "stalled"}, {}
        if failure is not None:
            return int(failure), {"message": "injected failure"}, {}
        for candidate in self._routes:
            if candidate.method == request.method and (match := candidate.pattern.match(request.path)):
                result = candidate.handler(request, **match.groupdict())
                status, body, *rest = result
                return status, body, (rest[0] if rest else {})
        return 404, {"message": f"no route {request.method} {request.path}"}, {}
