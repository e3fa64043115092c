"""Start the window: one instance, Qt application, theme, engine services, main window, tray.

A second `locus` (or `locus --quick-ask`) hands its request to the running one
and exits; the first shows its window or the quick-ask popup.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

from app.cli import locus_version
from app.paths import resolve_paths
from app.services import build_services
from engine.errors import EngineError

log = logging.getLogger(__name__)


@dataclass
class Desktop:
    """What a running window session is made of (the engine services live beside it)."""

    window: Any  # ui.main_window.MainWindow
    tray: Any  # ui.tray.Tray
    api: Any = None  # app.api_service.ApiServer while the local API runs
    api_settings: Any = None  # the [api] settings the running API (or its absence) follows

    def close(self) -> None:
        """Stop what the session started besides the engine (after the event loop ends)."""
        if self.api is not None:
            self.api.stop()
            self.api = None


def run_gui(argv: list[str] | None = None, *, quick_ask: bool = False) -> int:
    """The window (or, when Locus already runs here, ask that one to show itself); the exit status."""
    from app.single_instance import InstanceUnreachable, SingleInstance

    paths = resolve_paths()
    instance = SingleInstance(paths.data_dir)
    try:
        first = instance.claim()
    except (EngineError, OSError) as exc:  # no lock possible: run anyway, without the single-instance guard
        log.warning("single instance unavailable: %s", exc)
        first, instance = True, None
    if not first:
        command = "quick-ask" if quick_ask else "show"
        try:
            instance.send(command)
        except InstanceUnreachable as exc:
            print(f"locus: {exc.user_text()}", file=sys.stderr)
            return 1
        print("Locus is already running; " + ("its quick ask is open." if quick_ask else "its window is shown."))
        return 0

    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication, QMessageBox

    from resources import resource_path
    from ui.plain import literal
    from ui.theme import apply_theme

    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv)
    app.setApplicationName("Locus")
    app.setOrganizationName("Locus")
    app.setDesktopFileName("locus")
    app.setWindowIcon(QIcon(str(resource_path("icons", "locus.svg"))))
    if instance is not None:
        instance.listen()
    try:
        services = build_services(paths)
    except EngineError as exc:
        QMessageBox.critical(None, "Locus cannot start", literal(exc.user_text()))  # it may quote a path
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        QMessageBox.critical(
            None, "Locus cannot start", literal(f"Locus could not set up its files: {exc.strerror}{where}.")
        )
        return 1
    _log_to_file(services.paths.log_file)
    services.start_telemetry()
    apply_theme(app, services.settings.ui.theme)
    desktop = launch(services, locus_version(), quick_ask=quick_ask, instance=instance)
    _quit_on_signals(desktop)
    try:
        return app.exec()
    finally:
        from ui.ops import wait_for_background

        wait_for_background(10_000)
        app.processEvents()  # hands over a local API that finished starting meanwhile, so it is stopped too
        desktop.close()
        services.close()
        if instance is not None:
            instance.close()


def launch(services, version: str, *, quick_ask: bool = False, instance=None) -> Desktop:
    """Build and show the window and the tray, start the model loading, and serve the local API if set."""
    from ui.main_window import MainWindow
    from ui.tray import Tray

    window = MainWindow(services, version)
    tray = Tray(window, services)
    desktop = Desktop(window, tray)
    if instance is not None:
        instance.requested.connect(lambda command: _handle_request(desktop, command))
        instance.ask_handler = lambda connection, received: _answer_terminal(services, connection, received)
    if not (quick_ask and tray.available):  # a quick ask from the tray needs no window
        window.show()
    window.start()
    from ui.welcome import show_at_first_start

    show_at_first_start(window)  # never shown yet and the bundled model in use: what fits here, to download
    tray.announce()
    _start_api(services, desktop)
    window.settingsApplied.connect(lambda: _restart_api(services, desktop))
    if quick_ask:
        tray.open_quick_ask()
        log.info("started with the quick ask open")
    log.info("Locus %s started (tray %s)", version, "shown" if tray.available else "unavailable")
    return desktop


def _handle_request(desktop: Desktop, command: str) -> None:
    """A later launch's request, in the first process."""
    if command == "quick-ask":
        desktop.tray.open_quick_ask()
    else:
        desktop.tray.show_window()
    log.info(
        "handled '%s': window visible=%s, quick ask visible=%s",
        command,
        desktop.window.isVisible(),
        desktop.tray.quick_ask.isVisible(),
    )


def _answer_terminal(services, connection, received: bytes) -> None:
    """A terminal's `locus ask`, handed over: answered on a thread of its own (app/ask_handoff.py)."""
    import threading

    from app.ask_handoff import serve_ask

    threading.Thread(target=serve_ask, args=(services, connection, received), name="handoff", daemon=True).start()


def _restart_api(services, desktop: Desktop) -> None:
    """Settings › Local API changed: stop the running API (off the GUI thread) and start it as they now say."""
    if services.settings.api == desktop.api_settings:
        return
    from ui.ops import run_in_background

    old, desktop.api = desktop.api, None
    if old is None:
        _start_api(services, desktop)
        return

    def stopped(_none) -> None:
        if not services.settings.api.enabled:
            desktop.window.statusBar().showMessage("The local API is off.", 5000)
        _start_api(services, desktop)

    run_in_background(old.stop, stopped, lambda exc: log.warning("local API did not stop: %s", exc))


def _start_api(services, desktop: Desktop) -> None:
    """Serve the OpenAI-compatible local API when the settings ask for it, started off the GUI thread
    (it reads its key from the keyring); a failure is said in the status bar."""
    desktop.api_settings = services.settings.api
    if not services.settings.api.enabled:
        return
    from app.api_service import start_api
    from ui.errors import describe
    from ui.ops import run_in_background

    status = desktop.window.statusBar()

    def started(server) -> None:
        if server is None:
            return
        desktop.api = server
        log.info("local API at %s", server.url)
        status.showMessage(f"Local API at {server.url}", 10000)

    def failed(exc: BaseException) -> None:
        log.warning("local API not started: %s", exc)
        status.showMessage(f"The local API did not start: {describe(exc)}", 30000)

    run_in_background(lambda: start_api(services), started, failed)


def _quit_on_signals(desktop: Desktop) -> None:
    """SIGTERM and Ctrl+C end Locus as the tray's Quit does: answers stopped and saved, the folder released."""
    import signal

    from PySide6.QtCore import QTimer

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_args: desktop.tray.quit())
    # Python runs signal handlers only between its own bytecodes; a tick lets it while Qt's loop waits.
    tick = QTimer(desktop.window)
    tick.timeout.connect(lambda: None)
    tick.start(250)


def _log_to_file(path) -> None:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
