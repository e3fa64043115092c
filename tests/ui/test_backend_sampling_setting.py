"""Settings › Model: sampling on the device (llama.cpp's backend sampling) reaches the loaded model."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox

from app import settings as st
from app.paths import resolve_paths
from app.services import build_services
from engine.runtime.types import ChatMessage, Done, GenerationRequest, SamplingParams
from ui.settings_dialog import SettingsDialog


def sampled_on(services) -> str:
    backend = services.backends.resolve(None)[1]
    request = GenerationRequest((ChatMessage("user", "Say hi."),), SamplingParams(max_tokens=4))
    done = backend.submit(request).wait(120)
    assert isinstance(done, Done)
    return done.stats.sampled_on


def test_the_model_page_offers_sampling_on_the_device_and_the_engine_follows_it(qtbot, locus_home, model_path):
    st.save(st.Settings().with_value("model.path", model_path), locus_home / "config.toml")
    services = build_services(resolve_paths())
    try:
        dialog = SettingsDialog(services.setting_specs, services.setting_values())
        qtbot.addWidget(dialog)
        mode = dialog.editors["model.backend_sampling"]
        assert isinstance(mode, QComboBox)
        assert [mode.itemText(i) for i in range(mode.count())] == ["auto", "on", "off"]
        assert mode.currentText() == "auto"
        assert dialog.forms["model"].getWidgetPosition(mode)[0] >= 0  # on the Model page
        services.load_model().result(timeout=120)
        assert services.loaded_config.backend_sampling == "auto"
        assert sampled_on(services) == "cpu"  # auto on a CPU: from the logits row, on the CPU
        assert services.apply_setting_values({"model.backend_sampling": "on"})  # the model reloads for it
        services.load_model().result(timeout=120)
        assert services.loaded_config.backend_sampling == "on"
        assert sampled_on(services) == "device"
    finally:
        services.close()
