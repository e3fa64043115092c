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

EMBEDDING_KEY = "embedding_api_key"  # the keyring entry of the embedding server's key (app.embeddings.KEY_NAME)


def edit_settings(window) -> None:
    """Open the settings dialog for the main window; saving and applying happen in the background."""
    services = window.services
    shown = services.setting_values()
    dialog = SettingsDialog(services.setting_specs, shown, window)
    dialog.show_embedding_device(
        services.embedding_device(start=False), server=services.settings.documents.embedding_server
    )
    add_embedding_key(dialog)
    if dialog.exec() != SettingsDialog.DialogCode.Accepted:
        return
    values, tokens = dialog.values(), dialog.token_values()
    changed = {key: value for key, value in values.items() if shown.get(key) != value}  # only these are applied

    def applied(needs_reload: bool) -> None:
        apply_theme(QApplication.instance(), values.get("ui.theme", "system"))
        window.task_bar.set_translate_default(values.get("tasks.translate_to"))
        window.backend.refresh()
        if needs_reload:
            window.stop()
            window.load_model()
        window.settingsApplied.emit()

    def apply() -> bool:
        needs_reload = services.apply_setting_values(changed)
        save_tokens(services.secrets, tokens)  # after the settings: a keyring error leaves them saved
        return needs_reload

    run_in_background(
        apply,
        applied,
        lambda exc: show_error(window, "Settings not saved", exc),
        owner=window,
    )


def add_embedding_key(dialog: SettingsDialog) -> None:
    """The embedding server's API key, in Settings › Documents below the server's model."""
    dialog.add_token(
        "documents",
        EMBEDDING_KEY,
        "Server API key",
        "The embedding server's API key, kept in the system keyring (never in the settings file).",
        after="documents.embedding_server_model",
    )


def save_tokens(secrets, tokens: dict[str, str]) -> None:
    """Keep the tokens typed in the dialog in the system keyring (off the GUI thread: it talks to D-Bus)."""
    for name, value in tokens.items():
        secrets.set(name, value)
