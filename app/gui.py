"""Start the window: Qt application, theme, engine services, main window."""

from __future__ import annotations

import logging
import sys

from app.cli import locus_version
from app.services import build_services
from engine.errors import EngineError

log = logging.getLogger(__name__)


def run_gui(argv: list[str] | None = None) -> int:
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication, QMessageBox

    from resources import resource_path
    from ui.main_window import MainWindow
    from ui.theme import apply_theme

    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv)
    app.setApplicationName("Locus")
    app.setOrganizationName("Locus")
    app.setDesktopFileName("locus")
    app.setWindowIcon(QIcon(str(resource_path("icons", "locus.svg"))))
    try:
        services = build_services()
    except EngineError as exc:
        QMessageBox.critical(None, "Locus cannot start", exc.user_text())
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        QMessageBox.critical(None, "Locus cannot start", f"Locus could not set up its files: {exc.strerror}{where}.")
        return 1
    _log_to_file(services.paths.log_file)
    services.start_telemetry()
    apply_theme(app, services.settings.ui.theme)
    window = MainWindow(services, locus_version())
    window.show()
    window.start()
    try:
        return app.exec()
    finally:
        services.close()


def _log_to_file(path) -> None:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
