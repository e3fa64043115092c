"""Settings › Preferences: show the dialog, apply what was changed off the GUI thread, then follow it in
the window (theme, defaults, backends, a model reload when the model settings changed)."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication

from ui.errors import show_error
from ui.ops import run_in_background
from ui.settings_dialog import SettingsDialog
from ui.theme import apply_theme


def edit_settings(window) -> None:
    """Open the settings dialog for the main window; saving and applying happen in the background."""
    services = window.services
    dialog = SettingsDialog(services.setting_specs, services.setting_values(), window)
    dialog.show_embedding_device(services.embedding_device(start=False))
    if dialog.exec() != SettingsDialog.DialogCode.Accepted:
        return
    values = dialog.values()

    def applied(needs_reload: bool) -> None:
        apply_theme(QApplication.instance(), values.get("ui.theme", "system"))
        window.task_bar.set_translate_default(values.get("tasks.translate_to"))
        window.backend.refresh()
        if needs_reload:
            window.stop()
            window.load_model()
        window.settingsApplied.emit()

    run_in_background(lambda: services.apply_setting_values(values), applied,
                      lambda exc: show_error(window, "Settings not saved", exc), owner=window)
