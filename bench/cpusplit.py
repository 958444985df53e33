"""Give the web and the background work a CPU each, as separate hosts would (benches' --isolate).

On a machine that serves the API and runs the workers, a flow of background work takes CPU
from the API's requests whatever the design. What a bench can show apart from that is whether
the work reaches the API any other way (a shared lock, a row, a queue, a connection): with
the web side on one CPU and everything else on the other, the API's latency during the flow
is compared with its latency idle under the same split.

The web side: gunicorn's process group, the processes given with `web_pids` (the latency
client), Redis (the API's throttle round trip), and the PostgreSQL backends whose
application_name is WEB_APPLICATION_NAME (gunicorn's connections, given PGAPPNAME). Every
other process of the worker's process group, RabbitMQ, the other PostgreSQL processes and this
process (the SMTP server) go to the other CPU. Every thread is moved (RabbitMQ's Erlang
schedulers are threads), and the split is applied again every half second from a thread of
its own, since backends and pool processes come and go. Other processes on the machine are
left where they are.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

WEB_APPLICATION_NAME = "bench-web"
WORK_COMMANDS = {"beam.smp", "postgres", "epmd", "erl_child_setup"}


def _processes() -> list[tuple[int, str, int]]:
    """(pid, command, process group) of every process."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            found.append((int(pid), comm, int(stat[stat.rindex(")") + 2 :].split()[2])))
    return found


def _pin(pid: int, cpus: set[int]) -> None:
    for tid in filter(str.isdigit, os.listdir(f"/proc/{pid}/task")):
        with contextlib.suppress(OSError):  # a thread or process that has just exited
            os.sched_setaffinity(int(tid), cpus)


class CpuSplit:
    def __init__(self, *, web_pgid: int, work_pgid: int, web_cpu: int = 0, work_cpu: int = 1):
        available = os.sched_getaffinity(0)
        if not {web_cpu, work_cpu} <= available or web_cpu == work_cpu:
            raise ValueError(
                f"--isolate needs CPUs {web_cpu} and {work_cpu}; this process may use {available}"
            )
        self.web_pgid, self.work_pgid = web_pgid, work_pgid
        self.web, self.work = {web_cpu}, {work_cpu}
        self.web_pids: set[int] = set()
        self.everything = available
        self.moved: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-split", daemon=True)

    def _web_backends(self) -> set[int]:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [WEB_APPLICATION_NAME]
            )
            return {row[0] for row in cursor.fetchall()}

    def apply(self) -> None:
        backends = self._web_backends()
        me = os.getpid()
        for pid, comm, pgid in _processes():
            web = pgid == self.web_pgid or pid in self.web_pids or comm == "redis-server" or pid in backends
            work = pgid == self.work_pgid or pid == me or comm in WORK_COMMANDS
            if web or work:
                with contextlib.suppress(OSError):
                    _pin(pid, self.web if web else self.work)
                    self.moved.add(pid)

    def _loop(self) -> None:
        from django.db import connection

        try:
            while not self._stop.wait(0.5):
                self.apply()
        finally:
            connection.close()

    def start(self) -> None:
        self.apply()
        self._thread.start()

    def stop(self) -> None:
        """Stop moving processes and give those it moved every CPU again."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for pid in self.moved:
            with contextlib.suppress(OSError):
                _pin(pid, self.everything)
