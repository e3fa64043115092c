"""The one helper for background work: run a plain function off the GUI thread.

Like Anki's QueryOp: ``run_in_background(fn, on_success, on_failure)`` runs
``fn`` on Qt's thread pool and calls back on the GUI thread. Nothing that can
take more than a few milliseconds (disk, database, model) runs on the GUI thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)

_in_flight: set[_Relay] = set()


class _Relay(QObject):
    succeeded = Signal(object)
    failed = Signal(object)


class _Task(QRunnable):
    def __init__(self, fn: Callable[[], Any], relay: _Relay):
        super().__init__()
        self.fn = fn
        self.relay = relay

    def run(self) -> None:
        try:
            result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed to on_failure on the GUI thread
            outcome, value = self.relay.failed, exc
        else:
            outcome, value = self.relay.succeeded, result
        try:
            outcome.emit(value)
        except RuntimeError:  # the owner (and with it the relay) was deleted meanwhile: nobody to tell
            pass


def run_in_background(
    fn: Callable[[], Any],
    on_success: Callable[[Any], None] | None = None,
    on_failure: Callable[[BaseException], None] | None = None,
    owner: QObject | None = None,
) -> None:
    """Run ``fn()`` on the thread pool; call ``on_success(result)`` or ``on_failure(exc)`` on the GUI thread.

    With an ``owner`` (the widget the callbacks touch), the callbacks are dropped if the owner
    is deleted before the work finishes, instead of touching a dead widget.
    """
    relay = _Relay(owner)  # created on the GUI thread, so its slots run there; dies with its owner
    _in_flight.add(relay)
    relay.destroyed.connect(lambda: _in_flight.discard(relay))

    def finish() -> None:
        _in_flight.discard(relay)
        relay.deleteLater()

    def succeeded(result: Any) -> None:
        try:
            if on_success is not None:
                on_success(result)
        finally:
            finish()

    def failed(exc: BaseException) -> None:
        try:
            if on_failure is not None:
                on_failure(exc)
            else:
                log.error("background operation failed", exc_info=exc)
        finally:
            finish()

    relay.succeeded.connect(succeeded)
    relay.failed.connect(failed)
    QThreadPool.globalInstance().start(_Task(fn, relay))


def wait_for_background(timeout_ms: int = 10000) -> bool:
    """Block until the pool is idle (for shutdown and tests); True when it is."""
    return QThreadPool.globalInstance().waitForDone(timeout_ms)
