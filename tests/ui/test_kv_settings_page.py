"""Settings › Model: the KV cache type and flash attention, and the reason a combination is refused."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QComboBox

from app.paths import resolve_paths
from app.services import SettingsError, build_services
from ui.settings_dialog import SettingsDialog


def test_the_model_page_offers_the_cache_types_and_refuses_a_quantized_cache_without_flash_attention(
    qtbot, locus_home, tmp_path
):
    services = build_services(resolve_paths())
    try:
        dialog = SettingsDialog(services.setting_specs, services.setting_values())
        qtbot.addWidget(dialog)
        kv, fa = dialog.editors["model.kv_cache_type"], dialog.editors["model.flash_attention"]
        assert isinstance(kv, QComboBox) and isinstance(fa, QComboBox)
        assert [kv.itemText(i) for i in range(kv.count())] == ["f16", "q8_0", "q4_0"]
        assert [fa.itemText(i) for i in range(fa.count())] == ["auto", "on", "off"]
        assert (kv.currentText(), fa.currentText()) == ("f16", "auto")
        assert dialog.forms["model"].getWidgetPosition(kv)[0] >= 0  # on the Model page
        kv.setCurrentText("q8_0")
        dialog.resize(560, 900)
        kv.parentWidget().grab().save(str(tmp_path / "model.png"))
        services.apply_setting_values({"model.kv_cache_type": dialog.values()["model.kv_cache_type"]})
        assert services.settings.model.kv_cache_type == "q8_0"
        # Flash attention off on its own (the cache type unchanged, already q8_0): refused with the reason.
        fa.setCurrentText("off")
        with pytest.raises(SettingsError, match="q8_0 KV cache needs flash attention"):
            services.apply_setting_values({"model.flash_attention": dialog.values()["model.flash_attention"]})
        assert services.settings.model.flash_attention == "auto"
    finally:
        services.close()
