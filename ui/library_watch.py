"""Notices changes other Locus processes make to the document index: `locus index` or `locus docs remove`
run while the window is open, on the same data folder.

Every process that changes the documents rewrites a small stamp file in the index folder
(engine/rag/store.py, CHANGES_FILE). A QFileSystemWatcher on that folder wakes this watch (where the
folder cannot be watched, a slow poll does); the stamp is read off the GUI thread, and only when it
differs from the one the window last listed under does ``changed`` ask for a new listing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer, Signal

from ui.ops import run_in_background

log = logging.getLogger(__name__)

SETTLE_MS = 500  # a burst of changes (a folder being indexed) is read at most this often
POLL_MS = 5000  # only where the folder cannot be watched (no inotify watches left, say)


class IndexWatch(QObject):
    """Emits ``changed`` when the index's change stamp is not the one last seen (``seen``)."""

    changed = Signal()

    def __init__(self, folder: str, read_stamp: Callable[[], str], parent: QObject | None = None):
        super().__init__(parent)
        self.folder = folder
        self.read_stamp = read_stamp
        self.seen: str | None = None  # the stamp the shown listing was read under
        self._reading = False
        self._again = False
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(SETTLE_MS)
        self._settle.timeout.connect(self.check)
        self.watcher = QFileSystemWatcher(self)
        self.watcher.directoryChanged.connect(self._poked)
        self.poll = QTimer(self)
        self.poll.setInterval(POLL_MS)
        self.poll.timeout.connect(self.check)
        if not self.watcher.addPath(folder):
            log.info("the index folder %s cannot be watched; looking for changes every %d s", folder, POLL_MS // 1000)
            self.poll.start()

    def _poked(self, _path: str) -> None:
        if not self._settle.isActive():  # not restarted: steady changes must not put the check off forever
            self._settle.start()

    def check(self) -> None:
        """Read the stamp off the GUI thread; announce a change when it differs from ``seen``."""
        if self._reading:
            self._again = True
            return
        self._reading = True
        run_in_background(self.read_stamp, self._read, self._failed, owner=self)

    def _read(self, stamp: str) -> None:
        self._reading = False
        if stamp != self.seen:
            self.changed.emit()
        if self._again:
            self._again = False
            self.check()

    def _failed(self, exc: BaseException) -> None:
        self._reading = False
        log.warning("could not read the document index's change stamp: %s", exc)

    def stop(self) -> None:
        self.poll.stop()
        self._settle.stop()
        self.watcher.removePaths(self.watcher.directories())
