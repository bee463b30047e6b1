"""Where a training run's events go.

The trainer emits, from rank 0 only:

- ``"state"``      {state, message} — ``RUNNING`` once the first optimizer step is about to run
- ``"step"``       {step, epoch, loss, learning_rate, samples_per_second, eta_seconds, total_steps}
- ``"eval"``       {step, epoch, eval_loss, metrics{...}}
- ``"checkpoint"`` {step, epoch, uri, eval_loss}
- ``"log"``        {level, message}

The service's sink persists them; a sink is built *inside* the Ray worker by a picklable
zero-argument factory, so it never has to cross process boundaries itself.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

KINDS = ("state", "step", "eval", "checkpoint", "log")


class EventSink(Protocol):
    def emit(self, kind: str, payload: dict) -> None: ...


class MemorySink:
    """Keeps events in a list (thread-safe); for tests and in-process use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, kind: str, payload: dict) -> None:
        with self._lock:
            self.events.append((kind, dict(payload)))

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for k, p in self.events if k == kind]

    def __call__(self) -> MemorySink:  # lets an in-process sink double as its own factory
        return self


class NullSink:
    def emit(self, kind: str, payload: dict) -> None:
        pass


class EventCollector:
    """A Ray actor body that gathers events from workers: ``ray.remote(EventCollector)``.

    Tests (and a driver watching a run) read them back with ``events.remote()``.
    """

    def __init__(self) -> None:
        self._events: list[tuple[float, str, dict[str, Any]]] = []

    def emit(self, kind: str, payload: dict) -> None:
        import time

        self._events.append((time.time(), kind, payload))

    def events(self) -> list[tuple[float, str, dict[str, Any]]]:
        return list(self._events)


class ActorSink:
    """An EventSink that forwards to an EventCollector actor (fire and forget)."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    def emit(self, kind: str, payload: dict) -> None:
        self._actor.emit.remote(kind, payload)


class ActorSinkFactory:
    """Picklable factory: ``ActorSinkFactory(collector_handle)`` → ActorSink in the worker."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def __call__(self) -> ActorSink:
        return ActorSink(self.actor)
