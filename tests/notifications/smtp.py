"""A real SMTP server on 127.0.0.1 (aiosmtpd) for tests: it keeps what it accepts, and can
refuse, stall, or hold a conversation until the test lets it go on.

    with SmtpServer() as smtp:
        settings.EMAIL_PORT = smtp.port
        len(set(smtp.peers))                      # the connections the messages came by
        smtp.refuse_next("451 4.3.0 try later")   # the next message gets this answer
        smtp.hold()                              # the next conversation waits at RCPT TO
        smtp.holding.wait(10); ...; smtp.release()
"""

import asyncio
import email
import email.policy
import logging
import socket
import threading
from email.message import EmailMessage

from aiosmtpd.controller import Controller

logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every connection at INFO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpServer:
    def __init__(self, idle_timeout: float = 300):
        """`idle_timeout`: a connection idle this long is closed by the server (aiosmtpd's default: 300 s)."""
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.peers: list[tuple[str, int]] = []  # the client's address and port per message: its connection
        self.holding = threading.Event()  # set while a conversation is held
        self._release = threading.Event()
        self._hold = False
        self._answers: list[str] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, timeout=idle_timeout)

    def __enter__(self) -> "SmtpServer":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self.controller.stop()

    def refuse_next(self, *answers: str) -> None:
        """The next messages get these answers to their DATA (e.g. "550 5.1.1 no such user")."""
        with self._lock:
            self._answers.extend(answers)

    def hold(self) -> None:
        """The next conversation stops at RCPT TO until release(): nothing is accepted meanwhile."""
        self._release.clear()
        self.holding.clear()
        self._hold = True

    def release(self) -> None:
        self._hold = False
        self._release.set()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m, (_, rcpt) in zip(self.messages, self.envelopes, strict=True) if address in rcpt]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self._hold:
            self.holding.set()
            await asyncio.get_running_loop().run_in_executor(None, self._release.wait, 60)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            answer = self._answers.pop(0) if self._answers else ""
        if answer:
            return answer
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.peers.append(session.peer)
        return "250 OK"
