"""A server the benchmarks start (a Celery worker, gunicorn): its own process group and log file.

Whatever happens, `stop()` ends it: SIGTERM (a graceful shutdown), then SIGKILL for whatever
is left of its process group (pool children included).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 15.0


class BenchError(RuntimeError):
    """The benchmark could not produce a figure."""


class BackgroundProcess:
    name = "process"

    def __init__(self, command: list[str], env: dict[str, str]):
        self.command = command
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            **env,
        }
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def start(self) -> None:
        fd, path = tempfile.mkstemp(prefix=f"bench-{self.name}-", suffix=".log")
        self.log_path = Path(path)
        with os.fdopen(fd, "wb") as log_file:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
                self.command,
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: Ctrl-C does not reach it, we stop it
            )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"the {self.name} exited with status {self.proc.returncode}\n{self.log_tail()}")

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                print(f"[bench] {self.name} {proc.pid} still running: SIGKILL", file=sys.stderr, flush=True)
        # The group id is the process's pid (start_new_session): its children are in it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"{self.name} log {self.log_path} (last {len(tail)} lines):\n" + "\n".join(tail)

    def remove_log(self) -> None:
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
