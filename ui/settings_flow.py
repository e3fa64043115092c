"""Settings › Preferences: show the dialog, apply what was changed off the GUI thread, then follow it in
the window (theme, defaults, backends, a model reload when the model settings changed).

Only the settings changed in the dialog are applied, onto the settings as they are then, so a change made
meanwhile elsewhere (the quick ask's collection) is kept."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication

from ui.errors import show_error
from ui.ops import run_in_background
from ui.settings_dialog import SettingsDialog
from ui.theme import apply_theme


def edit_settings(window) -> None:
    """Open the settings dialog for the main window; saving and applying happen in the background."""
    services = window.services
    shown = services.setting_values()
    dialog = SettingsDialog(services.setting_specs, shown, window)
    dialog.show_embedding_device(services.embedding_device(start=False))
    if dialog.exec() != SettingsDialog.DialogCode.Accepted:
        return
    values = dialog.values()
    changed = {key: value for key, value in values.items() if shown.get(key) != value}  # only these are applied

    def applied(needs_reload: bool) -> None:
        apply_theme(QApplication.instance(), values.get("ui.theme", "system"))
        window.task_bar.set_translate_default(values.get("tasks.translate_to"))
        window.backend.refresh()
        if needs_reload:
            window.stop()
            window.load_model()
        window.settingsApplied.emit()

    run_in_background(
        lambda: services.apply_setting_values(changed),
        applied,
        lambda exc: show_error(window, "Settings not saved", exc),
        owner=window,
    )
