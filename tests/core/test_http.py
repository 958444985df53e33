"""core.http.HTTPClient against a real HTTP server on 127.0.0.1: retries, timeouts, its errors."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.errors import TransientError
from core.http import HTTPClient, HTTPError, TransientHTTPError

UNREACHABLE = "http://127.0.0.1:1"  # nothing listens there: connections are refused at once


class ScriptedServer:
    """Answers each request with the next (status, content type, body) of its script; the last repeats."""

    def __init__(self, *answers: tuple[int, str, bytes]):
        self.answers = list(answers)
        self.requests: list[tuple[str, str, str]] = []  # method, path, User-Agent
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._answer()

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer()

            def _answer(self):
                server.requests.append((self.command, self.path, self.headers.get("User-Agent", "")))
                status, content_type, body = (
                    server.answers.pop(0) if len(server.answers) > 1 else server.answers[0]
                )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


JSON_OK = (200, "application/json", b'{"ok": true}')
UNAVAILABLE = (503, "text/html", b"<h1>down</h1>")


@pytest.fixture
def serve() -> Iterator:
    servers: list[ScriptedServer] = []

    def start(*answers: tuple[int, str, bytes]) -> ScriptedServer:
        servers.append(ScriptedServer(*answers))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_a_retry_safe_call_is_retried_through_transient_answers(serve):
    server = serve(UNAVAILABLE, (429, "text/plain", b"slow down"), JSON_OK)
    client = HTTPClient("sms", server.base_url + "/v1/", retries=2, backoff=0)

    response = client.request("GET", "/messages/7", retry_safe=True)

    assert client.json(response) == {"ok": True}
    assert server.requests == [("GET", "/v1/messages/7", "fulfil/1.0")] * 3


def test_what_still_fails_is_a_transient_error_tasks_retry(serve):
    server = serve(UNAVAILABLE)
    client = HTTPClient("sms", server.base_url, retries=2, backoff=0)

    with pytest.raises(TransientHTTPError) as raised:
        client.request("POST", "messages", retry_safe=True, json={"to": "+15550100001"})

    assert (raised.value.transient, raised.value.status) == (True, 503)
    assert isinstance(raised.value, TransientError)  # retried by subscribers' default retry_for
    assert str(raised.value) == "sms: HTTP 503 on POST messages"
    assert len(server.requests) == 3


def test_a_call_that_is_not_retry_safe_is_tried_once(serve):
    server = serve(UNAVAILABLE, JSON_OK)
    client = HTTPClient("sms", server.base_url, retries=2, backoff=0)

    with pytest.raises(TransientHTTPError):
        client.request("POST", "messages", retry_safe=False)

    assert len(server.requests) == 1


def test_other_client_errors_are_returned_and_a_non_json_answer_is_not_transient(serve):
    server = serve((400, "text/html", b"<h1>bad request</h1>"))
    client = HTTPClient("sms", server.base_url, backoff=0)

    response = client.request("POST", "messages", retry_safe=True)
    assert response.status_code == 400
    assert len(server.requests) == 1
    with pytest.raises(HTTPError) as raised:
        client.json(response)
    assert (raised.value.transient, raised.value.status) == (False, 400)
    assert not isinstance(raised.value, TransientError)


def test_an_unreachable_service_is_transient():
    client = HTTPClient("sms", UNREACHABLE, retries=1, backoff=0)

    with pytest.raises(TransientHTTPError) as raised:
        client.request("GET", "status", retry_safe=True)

    assert raised.value.status is None
    assert str(raised.value) == "sms: ConnectionError on GET status"


def test_a_subclass_raises_its_own_error_and_names_itself(serve):
    class ProviderError(Exception):
        def __init__(self, message: str, *, transient: bool, status: int | None = None):
            super().__init__(message)
            self.transient = transient

    class ProviderHTTP(HTTPClient):
        user_agent = "fulfil-sms/1.0"

        def error(self, message: str, *, transient: bool, status: int | None = None) -> ProviderError:
            return ProviderError(message, transient=transient, status=status)

    server = serve(UNAVAILABLE)
    client = ProviderHTTP("sms", server.base_url, retries=0)

    with pytest.raises(ProviderError) as raised:
        client.request("GET", "status", retry_safe=True)

    assert raised.value.transient is True
    assert server.requests == [("GET", "/status", "fulfil-sms/1.0")]
