"""The KV cache type and flash attention settings: config.toml, the loaded engine and the model manager's plans."""

from __future__ import annotations

from app import settings as st
from app.paths import resolve_paths
from app.services import build_services


def test_a_quantized_cache_with_flash_attention_off_is_a_settings_problem(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[model]\nkv_cache_type = "q4_0"\nflash_attention = "off"\n', encoding="utf-8")
    settings, problems = st.load(path)
    assert (settings.model.kv_cache_type, settings.model.flash_attention) == ("q4_0", "auto")
    assert [p.key for p in problems] == ["model.flash_attention"]
    assert "q4_0 KV cache needs flash attention" in problems[0].message and "Using 'auto'" in problems[0].message
    path.write_text('[model]\nkv_cache_type = "q5_1"\n', encoding="utf-8")
    settings, problems = st.load(path)
    assert settings.model.kv_cache_type == "f16"
    assert "allowed: one of 'f16', 'q8_0', 'q4_0'" in problems[0].message


def test_the_cache_type_reaches_the_engine_and_the_model_managers_plans(locus_home, model_path):
    settings = st.Settings().with_value("model.path", model_path).with_value("model.kv_cache_type", "q8_0")
    st.save(settings, locus_home / "config.toml")
    services = build_services(resolve_paths())
    try:
        services.load_model().result(timeout=120)
        config = services.loaded_config
        assert (config.kv_cache_type, config.flash_attention) == ("q8_0", "auto")
        _, plans = services.describe_local_models()
        q8 = plans[model_path]
        assert "KV cache: " in q8.summary and "(q8_0, 4096 tokens)" in q8.summary
        services.apply_setting_values({"model.kv_cache_type": "f16"})
        f16 = services.describe_local_models()[1][model_path]
        # SmolLM2-135M: 30 layers, K and V rows of 3 heads x 64 values: 192 values in 6 blocks of 34 bytes for
        # q8_0 against 384 bytes for f16.
        assert f16.kv_bytes == 30 * 4096 * 2 * 384
        assert q8.kv_bytes == 30 * 4096 * 2 * 6 * 34
    finally:
        services.close()
