"""digits/cached.py: one computation for concurrent callers, failures shared and not kept."""

from __future__ import annotations

import threading
import time

import pytest

from digits.cached import SharedAnswer


def test_concurrent_callers_share_one_computation():
    shared, calls = SharedAnswer(5.0), []

    def compute():
        calls.append(1)
        time.sleep(0.2)
        return len(calls)

    answers = []
    threads = [
        threading.Thread(target=lambda: answers.append(shared.get("k", compute))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [1] * 8 and len(calls) == 1
    assert shared.get("k", compute) == 1  # fresh: not computed again
    assert shared.get("other", compute) == 2  # each key its own answer


def test_an_answer_is_computed_again_once_stale():
    shared, calls = SharedAnswer(0.05), []
    compute = lambda: calls.append(1) or len(calls)  # noqa: E731
    assert shared.get("k", compute) == 1
    time.sleep(0.1)
    assert shared.get("k", compute) == 2


def test_a_failure_reaches_the_waiting_callers_and_is_not_kept():
    shared, started = SharedAnswer(5.0), threading.Event()

    def fail():
        started.set()
        time.sleep(0.2)
        raise OSError("database down")

    errors = []

    def wait_for_it():
        started.wait()
        try:
            shared.get("k", lambda: pytest.fail("joins the running computation"))
        except OSError as e:
            errors.append(e)

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    with pytest.raises(OSError):
        shared.get("k", fail)
    waiter.join()
    assert [str(e) for e in errors] == ["database down"]
    assert shared.get("k", lambda: "back") == "back"
