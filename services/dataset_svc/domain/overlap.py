"""Background threads that let the streamed pass use a second core.

Arrow (CSV parsing, compute kernels, Parquet encoding and zstd) and numpy release the
GIL, so parsing the next block and compressing the previous row group can run while
the profiler works on the current batch. Each helper keeps at most one item in
flight, so memory stays bounded by a couple of batches.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


class Prefetcher(Iterator[T]):
    """Iterates `source` in a thread, one item ahead of the consumer.

    Errors raised by `source` are re-raised in the consumer at the point they occurred.
    `close()` stops the thread (it may be blocked in `source`; it exits at its next item).
    """

    def __init__(self, source: Iterator[T], name: str = "prefetch") -> None:
        self._source = source
        self._items: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._put((item, None)):
                    return
            self._put((_DONE, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put((_DONE, exc))

    def _put(self, entry: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._items.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item, error = self._items.get()
        if item is _DONE:
            self._finished = True
            if error is not None:
                raise error
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
        self._finished = True

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BackgroundCalls:
    """Runs calls one at a time in a thread: `submit` waits for the previous call, so
    one call runs while the caller prepares the next. A call's error is raised by the
    next `submit` or by `wait`."""

    def __init__(self, name: str = "background") -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._last: Future | None = None

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        if self._last is not None:
            self._last.result()
        self._last = self._executor.submit(fn, *args)

    def wait(self) -> None:
        """Waits for the last call; raises its error."""
        if self._last is not None:
            last, self._last = self._last, None
            last.result()

    def close(self) -> None:
        """Waits for the running call (without raising) and stops the thread."""
        self._executor.shutdown(wait=True, cancel_futures=True)
