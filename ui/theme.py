"""Light, dark or the system's colours, plus Locus's style sheet."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

from resources import resource_path

_DARK = {
    QPalette.ColorRole.Window: "#1f2125",
    QPalette.ColorRole.WindowText: "#e6e6e6",
    QPalette.ColorRole.Base: "#17181b",
    QPalette.ColorRole.AlternateBase: "#2a2d33",
    QPalette.ColorRole.Text: "#e6e6e6",
    QPalette.ColorRole.Button: "#2c2f35",
    QPalette.ColorRole.ButtonText: "#e6e6e6",
    QPalette.ColorRole.Highlight: "#3d6fe0",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.ToolTipBase: "#2a2d33",
    QPalette.ColorRole.ToolTipText: "#e6e6e6",
    QPalette.ColorRole.PlaceholderText: "#8a8f98",
    QPalette.ColorRole.Link: "#7aa2ff",
    QPalette.ColorRole.Mid: "#5a5f68",
    QPalette.ColorRole.Midlight: "#3a3d44",
}
_LIGHT_TWEAKS = {
    QPalette.ColorRole.AlternateBase: "#eef2fb",
    QPalette.ColorRole.Highlight: "#2f5bd3",
}


def apply_theme(app: QApplication, theme: str) -> None:
    """Apply 'system', 'light' or 'dark' to the whole application."""
    app.setStyle(QStyleFactory.create("Fusion"))
    palette = app.style().standardPalette()
    if theme == "system":
        theme = "dark" if app.styleHints().colorScheme() == Qt.ColorScheme.Dark else "light"
    if theme == "dark":
        for role, colour in _DARK.items():
            palette.setColor(role, QColor(colour))
    elif theme == "light":
        for role, colour in _LIGHT_TWEAKS.items():
            palette.setColor(role, QColor(colour))
    app.setPalette(palette)
    app.setStyleSheet(resource_path("styles", "locus.qss").read_text(encoding="utf-8"))
