"""One Locus per user and data folder: a second launch hands its request to the first and exits.

The first process holds a lock file in the data folder for its whole life (a
crashed one's lock is recognised as stale by its dead process id) and listens on
a local socket named from the user and the data folder, so two LOCUS_HOMEs
never meet. A later launch finds the lock taken, connects, sends one line
("show" or "quick-ask"), waits for "ok" and exits. Nothing here needs a
QApplication: the second process never opens a window.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import os
import time
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from engine.errors import EngineError

log = logging.getLogger(__name__)

COMMANDS = ("show", "quick-ask")
REPLY_TIMEOUT_S = 20.0  # the first process may still be starting (imports, opening its stores)
_LINE_LIMIT = 64


class InstanceUnreachable(EngineError):
    """Another Locus holds this data folder but does not answer."""

    code = "instance_unreachable"


def server_name(data_dir: Path) -> str:
    """The local socket's name: per user and per data folder, short enough for any platform."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    digest = hashlib.sha256(f"{user}\0{Path(data_dir).resolve()}".encode()).hexdigest()[:16]
    safe_user = "".join(c for c in user if c.isalnum())[:16] or "user"
    return f"locus-{safe_user}-{digest}"


class SingleInstance(QObject):
    """Claims the data folder for this process, or hands a request to the process that has it."""

    requested = Signal(str)  # a later launch asked for "show" or "quick-ask" (in the first process)

    def __init__(self, data_dir: Path, parent: QObject | None = None):
        super().__init__(parent)
        self.data_dir = Path(data_dir)
        self.name = server_name(self.data_dir)
        self.lock = QLockFile(str(self.data_dir / "locus.lock"))
        self.lock.setStaleLockTime(0)  # held for the process's life: stale only when its process is gone
        self.server: QLocalServer | None = None

    def claim(self) -> bool:
        """True: this process is the first (then ``listen`` once the QApplication exists).
        False: another process holds the folder; ``send`` it the request."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.lock.tryLock(0):
            if self.lock.error() != QLockFile.LockError.LockFailedError:
                raise EngineError(f"Locus could not create its lock file in {self.data_dir}.",
                                  hint="Check that the folder is writable.")
            return False
        return True

    def listen(self) -> None:
        """Take requests from later launches (needs the QApplication's event loop to deliver them)."""
        QLocalServer.removeServer(self.name)  # a socket file a crashed run left behind
        self.server = QLocalServer(self)
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self.server.newConnection.connect(self._accept)
        if not self.server.listen(self.name):
            # Another launch can still not reach us; this one works on regardless.
            log.warning("single instance: cannot listen as %s: %s", self.name, self.server.errorString())
        else:
            log.info("single instance: listening as %s", self.name)

    def send(self, command: str, timeout_s: float = REPLY_TIMEOUT_S) -> None:
        """Hand ``command`` to the first process; raises InstanceUnreachable when it does not answer."""
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}")
        deadline = time.monotonic() + timeout_s
        last_error = ""
        while time.monotonic() < deadline:
            socket = QLocalSocket()
            socket.connectToServer(self.name)
            if socket.waitForConnected(1000):
                socket.write(f"{command}\n".encode())
                socket.waitForBytesWritten(1000)
                reply = b""
                while b"\n" not in reply and time.monotonic() < deadline:
                    arrived = socket.waitForReadyRead(250)
                    reply += bytes(socket.readAll().data())
                    if not arrived and socket.state() != QLocalSocket.LocalSocketState.ConnectedState:
                        break
                socket.abort()
                if reply.strip() == b"ok":
                    return
                last_error = f"it answered {reply.strip()[:40]!r}" if reply else "it closed the connection"
            else:
                last_error = socket.errorString()
            time.sleep(0.2)  # it holds the lock but is not listening yet: still starting
        pid = self.lock.getLockInfo()
        who = f" (process {pid[0]})" if pid else ""
        raise InstanceUnreachable(f"Another Locus{who} is using {self.data_dir} but does not answer: {last_error}.",
                                  hint="Wait for it to finish starting, or end that process and start Locus again.")

    def close(self) -> None:
        """Stop listening and release the folder (at quit)."""
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.lock.isLocked():
            self.lock.unlock()

    # The first process -------------------------------------------------------------

    def _accept(self) -> None:
        while self.server is not None and self.server.hasPendingConnections():
            socket = self.server.nextPendingConnection()
            socket.setParent(self)
            buffer = bytearray()
            socket.readyRead.connect(lambda s=socket, b=buffer: self._read(s, b))
            socket.disconnected.connect(socket.deleteLater)

    def _read(self, socket: QLocalSocket, buffer: bytearray) -> None:
        buffer += bytes(socket.readAll().data())
        if b"\n" not in buffer:
            if len(buffer) > _LINE_LIMIT:
                socket.abort()
            return
        command = bytes(buffer).split(b"\n", 1)[0].decode("ascii", "replace").strip()
        if command not in COMMANDS:
            log.warning("single instance: ignored request %r", command[:_LINE_LIMIT])
            socket.write(b"unknown\n")
            socket.disconnectFromServer()
            return
        log.info("single instance: another launch asked to %s", command)
        socket.write(b"ok\n")
        socket.flush()
        socket.disconnectFromServer()
        self.requested.emit(command)
