"""Settings › Model: speculative decoding and its draft model."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox

from app.paths import resolve_paths
from app.services import build_services, model_config
from ui.settings_dialog import SettingsDialog


def test_the_model_page_offers_speculative_decoding_and_a_draft_model(qtbot, locus_home, tmp_path, model_path):
    services = build_services(resolve_paths())
    try:
        dialog = SettingsDialog(services.setting_specs, services.setting_values())
        qtbot.addWidget(dialog)
        mode = dialog.editors["model.speculative"]
        assert isinstance(mode, QComboBox)
        assert [mode.itemText(i) for i in range(mode.count())] == ["prompt_lookup", "draft", "off"]
        assert mode.currentText() == "off"  # opt-in
        assert dialog.forms["model"].getWidgetPosition(mode)[0] >= 0  # on the Model page
        assert dialog.editors["model.draft_model"].edit.placeholderText() == "None"  # empty: no draft model
        dialog.resize(560, 1000)
        mode.parentWidget().grab().save(str(tmp_path / "model.png"))
        services.apply_setting_values({"model.speculative": "prompt_lookup"})
        assert services.settings.model.speculative == "prompt_lookup"
        assert model_config(services.settings).speculative == "prompt_lookup"
    finally:
        services.close()
