"""One Locus per user and data folder: a second launch hands its request to the first and exits.

The first process holds a lock file in the data folder for its whole life (a
crashed one's lock is recognised as stale by its dead process id) and listens on
a local socket named from the data folder, so two LOCUS_HOMEs never meet. A
later launch finds the lock taken, connects, sends one line ("show" or
"quick-ask"), waits for "ok" and exits. Nothing here needs a QApplication: the
second process never opens a window.

Another user must not be able to answer in Locus's place. The socket lives in a
folder only this user can enter: $XDG_RUNTIME_DIR/locus, else the data folder,
else a per-user folder in the temp folder, each used only when it is a real
folder owned by this user, closed to everyone else, inside a parent no one else
can rename it out of. On Linux a later launch also asks the kernel who is at the
other end (SO_PEERCRED) and hands its request only to the process that holds
the lock. A terminal's `locus ask` comes the same way ("ask" and a token this
process wrote to the data folder) and is answered by app/ask_handoff.py, from
this user only. (Windows: the name is a named pipe, which Qt restricts to this user
with UserAccessOption; pipe names are machine-wide, so the peer check is the
part still missing there.)
"""

from __future__ import annotations

import logging
import os
import socket as pysocket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from app.instance_paths import server_name, socket_folders, socket_paths, untrusted_because
from app.paths import make_private_dir
from engine.errors import EngineError

__all__ = [
    "InstanceUnreachable",
    "SingleInstance",
    "server_name",
    "socket_folders",
    "socket_paths",
    "untrusted_because",
]

log = logging.getLogger(__name__)

COMMANDS = ("show", "quick-ask")
REPLY_TIMEOUT_S = 20.0  # the first process may still be starting (imports, opening its stores)
_LINE_LIMIT = 64


class InstanceUnreachable(EngineError):
    """Another Locus holds this data folder but does not answer."""

    code = "instance_unreachable"


def peer_credentials(socket: QLocalSocket) -> tuple[int, int] | None:
    """(process id, user id) of the process at the other end of a connected socket, from the kernel
    (Linux); None where the system cannot say."""
    if not sys.platform.startswith("linux"):
        return None
    descriptor = int(socket.socketDescriptor())
    if descriptor < 0:
        return None
    with pysocket.socket(fileno=os.dup(descriptor)) as other:
        size = struct.calcsize("3i")
        pid, uid, _gid = struct.unpack("3i", other.getsockopt(pysocket.SOL_SOCKET, pysocket.SO_PEERCRED, size))
    return pid, uid


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
        # A terminal's `locus ask` handed over (app/ask_handoff.py): called with the connection and what
        # arrived after its first line, on the GUI thread; None: such requests are refused.
        self.ask_handler: Callable[[pysocket.socket, bytes], None] | None = None
        self._token: str | None = None

    def claim(self) -> bool:
        """True: this process is the first (then ``listen`` once the QApplication exists).
        False: another process holds the folder; ``send`` it the request."""
        make_private_dir(self.data_dir)
        if not self.lock.tryLock(0):
            if self.lock.error() != QLockFile.LockError.LockFailedError:
                raise EngineError(
                    f"Locus could not create its lock file in {self.data_dir}.",
                    hint="Check that the folder is writable.",
                )
            return False
        return True

    def listen(self) -> None:
        """Take requests from later launches (needs the QApplication's event loop to deliver them)."""
        self.server = QLocalServer(self)
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self.server.newConnection.connect(self._accept)
        problems = []
        for path in socket_paths(self.data_dir, create=True):
            QLocalServer.removeServer(path)  # a socket file a crashed run left behind (in a folder of ours)
            if self.server.listen(path):
                log.info("single instance: listening at %s", path)
                from app.ask_handoff import write_token

                try:
                    self._token = write_token(self.data_dir)
                except OSError as exc:
                    log.warning("single instance: terminal questions stay in the terminal (%s)", exc)
                return
            problems.append(f"{path}: {self.server.errorString()}")
        # Another launch can still not reach us; this one works on regardless.
        log.warning("single instance: cannot listen (%s)", "; ".join(problems) or "no private folder for a socket")

    def send(self, command: str, timeout_s: float = REPLY_TIMEOUT_S) -> None:
        """Hand ``command`` to the first process; raises InstanceUnreachable when it does not answer
        (or when what answers is not the process that holds the folder)."""
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}")
        deadline = time.monotonic() + timeout_s
        last_error = "it is not listening"
        while time.monotonic() < deadline:
            for path in socket_paths(self.data_dir):
                problem, posing = self._try(path, command, deadline)
                if problem is None:
                    return
                if posing:  # someone is answering in Locus's place: waiting longer would not help
                    holder = self._holder()
                    raise InstanceUnreachable(
                        f"Another Locus{f' (process {holder})' if holder else ''} is using {self.data_dir}, "
                        f"but {problem}; Locus did not hand it the request.",
                        hint="Another program may be posing as Locus: end it, then end Locus and start it again.",
                    )
                last_error = problem
            time.sleep(0.2)  # it holds the lock but is not listening yet: still starting
        holder = self._holder()
        who = f" (process {holder})" if holder else ""
        raise InstanceUnreachable(
            f"Another Locus{who} is using {self.data_dir} but does not answer: {last_error}.",
            hint="Wait for it to finish starting, or end that process and start Locus again.",
        )

    def _try(self, path: str, command: str, deadline: float) -> tuple[str | None, bool]:
        """Hand ``command`` over at ``path``: (None, False) when the holder said ok, else (what went
        wrong, whether a process other than the holder answered)."""
        socket = QLocalSocket()
        socket.connectToServer(path)
        if not socket.waitForConnected(1000):
            return socket.errorString(), False
        try:
            refused = self._not_the_holder(socket)
            if refused:
                log.warning("single instance: %s at %s", refused, path)
                return refused, True
            socket.write(f"{command}\n".encode())
            socket.waitForBytesWritten(1000)
            reply = b""
            while b"\n" not in reply and time.monotonic() < deadline:
                arrived = socket.waitForReadyRead(250)
                reply += bytes(socket.readAll().data())
                if not arrived and socket.state() != QLocalSocket.LocalSocketState.ConnectedState:
                    break
        finally:
            socket.abort()
        if reply.strip() == b"ok":
            return None, False
        return (f"it answered {reply.strip()[:40]!r}" if reply else "it closed the connection"), False

    def _not_the_holder(self, socket: QLocalSocket) -> str | None:
        """Why the process at the other end is not the Locus that holds the lock; None when it is (or when
        the system cannot say: then the private folder is the only guard)."""
        peer = peer_credentials(socket)
        if peer is None:
            return None
        pid, uid = peer
        if uid != os.getuid():
            return f"process {pid} of user {uid} answered in its place"
        holder = self._holder()
        if holder and pid != holder:
            return f"process {pid} answered in its place"
        return None

    def _holder(self) -> int:
        """The process id in the lock file (0 when it cannot be read)."""
        info = self.lock.getLockInfo()
        return int(info[0]) if info and info[0] else 0

    def close(self) -> None:
        """Stop listening and release the folder (at quit)."""
        if self.server is not None:
            self.server.close()
            self.server = None
        if self._token is not None:
            from app.ask_handoff import remove_token

            remove_token(self.data_dir, self._token)
            self._token = None
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
        first, rest = bytes(buffer).split(b"\n", 1)
        command = first.decode("ascii", "replace").strip()
        if command.startswith("ask ") or command == "ask":
            self._hand_over_ask(socket, command[4:].strip(), rest)
            return
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

    def _hand_over_ask(self, socket: QLocalSocket, token: str, rest: bytes) -> None:
        """A terminal's question: only from this user (the kernel says who connected) with the token this
        process wrote; the connection then leaves Qt for ``ask_handler``'s thread."""
        from app.ask_handoff import token_matches

        who = peer_credentials(socket)
        refused = None
        if self.ask_handler is None or os.name == "nt":  # (a named pipe: the terminal answers itself there)
            refused = "this Locus does not take questions"
        elif who is not None and who[1] != os.getuid():
            refused = f"process {who[0]} of user {who[1]} is not this user"
        elif not token_matches(self._token, token):
            refused = "a wrong token"
        if refused is not None:
            log.warning("single instance: refused a terminal's question: %s", refused)
            socket.write(b'{"t": "refused", "why": "not allowed"}\n')
            socket.flush()
            socket.disconnectFromServer()
            return
        descriptor = int(socket.socketDescriptor())
        connection = pysocket.socket(fileno=os.dup(descriptor))
        socket.abort()  # Qt lets go of its descriptor; the duplicate keeps the connection
        assert self.ask_handler is not None
        self.ask_handler(connection, rest)
