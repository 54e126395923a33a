"""An answer computed at most once per few seconds per process, shared by concurrent callers.

Four visitors opening /stats at once must not start four computations: the first computes, the
others wait for its answer, and later callers take it while it is fresh. A failure is shared
with the callers that waited for it, and not kept: the next call tries again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Flight:
    """One computation in progress, and what it gave."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer = None
        self.error: BaseException | None = None

    def result(self):
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.answer


class SharedAnswer(Generic[T]):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._answers: dict[Hashable, tuple[float, T]] = {}
        self._flights: dict[Hashable, _Flight] = {}

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The fresh answer for `key`, computed once for every caller that asks meanwhile."""
        with self._lock:
            hit = self._answers.get(key)
            if hit and time.monotonic() - hit[0] < self.seconds:
                return hit[1]
            flight = self._flights.get(key)
            if flight is not None:
                mine = False
            else:
                flight, mine = _Flight(), True
                self._flights[key] = flight
        if not mine:
            return flight.result()
        try:
            flight.answer = compute()
        except BaseException as e:
            flight.error = e
            raise
        finally:
            with self._lock:
                del self._flights[key]
                if flight.error is None:
                    self._answers[key] = (time.monotonic(), flight.answer)
            flight.done.set()
        return flight.answer

    def clear(self) -> None:
        with self._lock:
            self._answers.clear()
