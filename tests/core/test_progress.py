"""core.progress: plain lines in logs and tests, a bar on a terminal; and the commands that use it."""

import io
import itertools

import pytest
from django.core.management import call_command

from core.progress import Progress, progress


class Clock:
    """A monotonic clock that moves `step` seconds each time it is read."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_plain_lines_say_each_tenth_done_then_sum_up():
    out = io.StringIO()
    seen = list(Progress(range(20), total=None, label="letters", stream=out, clock=Clock(1.0)))

    assert seen == list(range(20))  # every item, in order
    assert lines(out) == [
        *(f"letters: {n}/20 ({5 * n}%), {n}s" for n in range(2, 21, 2)),
        "letters: 20 done in 21.0s",
    ]


def test_plain_lines_without_a_total_come_every_ten_seconds():
    out = io.StringIO()
    items = itertools.islice(itertools.count(), 7)  # a generator: no length

    for _ in Progress(items, total=None, label="invoices", stream=out, clock=Clock(4.0)):
        pass

    assert lines(out) == ["invoices: 3 done, 12s", "invoices: 6 done, 24s", "invoices: 7 done in 32.0s"]


def test_a_quick_run_prints_only_its_summary():
    out = io.StringIO()
    bar = progress(["a", "b", "c"], label="demo data", stream=out)

    for item in bar:
        bar.write(f"loaded {item}")

    assert lines(out)[:3] == ["loaded a", "loaded b", "loaded c"]
    assert len(lines(out)) == 4 and lines(out)[3].startswith("demo data: 3 done in ")


def test_on_a_terminal_it_is_a_bar_and_the_commands_lines_stay_whole():
    out = Terminal()
    bar = progress(range(3), label="dead letters", stream=out)

    for item in bar:
        bar.write(f"#{item} queued")

    text = out.getvalue()
    assert "\r" in text and "dead letters: 100%" in text and "3/3" in text
    assert "#0 queued\n" in text and "#2 queued\n" in text
    assert "done in" not in text  # the finished bar is the summary


@pytest.mark.django_db
def test_load_demo_still_loads_and_reports_its_progress(monkeypatch):
    monkeypatch.setenv("DEMO_STAFF_PASSWORD", "demo-password-1")
    out = io.StringIO()

    call_command("load_demo", "--force", stdout=out)

    text = out.getvalue()
    assert "demo catalogue:" in text and "demo bookings:" in text and "demo subscriptions:" in text
    assert lines(out)[-1].startswith("demo data: 3 done in ")
