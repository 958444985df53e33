"""The in-process bus: what was sent, in order, per sink name, read and cleared by take()."""

import threading

from core.events.buses import memory
from core.events.buses.memory import MemorySink
from tests.buses.conftest import make_batch


def test_batches_are_kept_in_order_per_name_and_take_clears():
    first, second = make_batch(3), make_batch(2)
    sink, other = MemorySink("mem-a", {}), MemorySink("mem-b", {})
    sink.send(first, timeout=1)
    other.send(second, timeout=1)
    sink.send(second, timeout=1)
    assert memory.take("mem-a") == first + second
    assert memory.take("mem-a") == []
    assert memory.take("mem-b") == second


def test_what_was_sent_does_not_change_with_the_callers_dict():
    batch = make_batch(1)
    MemorySink("mem-c", {}).send(batch, timeout=1)
    batch[0][0]["data"]["n"] = 99
    assert memory.take("mem-c")[0][0]["data"] == {"n": 0}


def test_concurrent_senders_lose_nothing_and_batches_stay_whole():
    sink = MemorySink("mem-d", {})
    batches = [make_batch(5) for _ in range(40)]
    threads = [threading.Thread(target=sink.send, args=(batch,), kwargs={"timeout": 1}) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    got = memory.take("mem-d")
    assert len(got) == 200
    starts = {batch[0][0]["id"]: batch for batch in batches}
    position = 0
    while position < len(got):  # each batch appears as one contiguous run
        batch = starts[got[position][0]["id"]]
        assert got[position : position + 5] == batch
        position += 5
