"""config.toml: the typed schema, bad files and values, and LOCUS_HOME."""

from __future__ import annotations

import pytest

from app import settings as st
from app.paths import resolve_paths


def write(tmp_path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_file_gives_defaults(tmp_path):
    settings, problems = st.load(tmp_path / "none.toml")
    assert settings == st.Settings() and problems == []


def test_every_setting_has_a_description_and_a_valid_default():
    keys = {s.key for s in st.SPECS}
    assert {
        "model.path",
        "model.context_size",
        "model.threads",
        "model.gpu_layers",
        "sampling.temperature",
        "sampling.top_p",
        "sampling.top_k",
        "sampling.min_p",
        "sampling.repeat_penalty",
        "sampling.seed",
        "sampling.max_tokens",
        "sampling.stop",
        "chat.system_prompt",
        "ui.theme",
    } <= keys
    for spec in st.SPECS:
        assert spec.description and st.validate(spec, spec.default) == (spec.default, None)


def test_round_trip(tmp_path):
    path = tmp_path / "config.toml"
    changed = (
        st.Settings()
        .with_value("model.context_size", 8192)
        .with_value("sampling.stop", ["###"])
        .with_value("ui.theme", "dark")
        .with_value("chat.system_prompt", 'Say "hi"\nthen go.')
    )
    st.save(changed, path)
    assert st.load(path) == (changed, [])


def test_invalid_toml_names_the_file_and_uses_defaults(tmp_path):
    path = write(tmp_path, "[model\ncontext_size = 4096\n")
    settings, problems = st.load(path)
    assert settings == st.Settings()
    assert len(problems) == 1 and problems[0].key is None
    assert str(path) in problems[0].message and "not valid TOML" in problems[0].message


@pytest.mark.parametrize(
    "toml, key, allowed",
    [
        ("[model]\ncontext_size = 10", "model.context_size", "a whole number from 256 to 262144"),
        ("[model]\ncontext_size = 'big'", "model.context_size", "a whole number from 256 to 262144"),
        ("[sampling]\ntemperature = 9.5", "sampling.temperature", "a number from 0 to 5"),
        ("[sampling]\ntop_p = true", "sampling.top_p", "a number from 0 to 1"),
        ("[ui]\ntheme = 'purple'", "ui.theme", "one of 'system', 'light', 'dark'"),
        ("[sampling]\nstop = 'END'", "sampling.stop", "a list of text"),
    ],
)
def test_invalid_value_names_key_and_allowed_values_and_falls_back(tmp_path, toml, key, allowed):
    settings, problems = st.load(write(tmp_path, toml))
    assert [p.key for p in problems] == [key]
    assert f"'{key}'" in problems[0].message and allowed in problems[0].message
    assert settings.get(key) == st.SPEC_BY_KEY[key].default


def test_good_values_survive_beside_bad_ones(tmp_path):
    settings, problems = st.load(write(tmp_path, "[model]\ncontext_size = 2048\nthreads = -4\n"))
    assert settings.model.context_size == 2048 and settings.model.threads == 0
    assert [p.key for p in problems] == ["model.threads"]


def test_unknown_keys_get_a_did_you_mean(tmp_path):
    _, problems = st.load(write(tmp_path, "[model]\ncontext_sise = 2048\n[sampler]\ntop_k = 1\n"))
    messages = [p.message for p in problems]
    assert any("Did you mean 'model.context_size'" in m for m in messages)
    assert any("Unknown setting 'sampler.top_k'" in m and "Did you mean 'sampling.top_k'" in m for m in messages)


def test_integers_are_accepted_for_float_settings(tmp_path):
    settings, problems = st.load(write(tmp_path, "[sampling]\ntemperature = 1\n"))
    assert problems == [] and settings.sampling.temperature == 1.0


def test_locus_home_holds_data_and_config(tmp_path):
    paths = resolve_paths({"LOCUS_HOME": str(tmp_path)})
    assert paths.history_db == tmp_path / "locus.sqlite3"
    assert paths.config_file == tmp_path / "config.toml"
    assert paths.models_dir == tmp_path / "models" and paths.index_dir == tmp_path / "index"


def test_platform_folders_without_locus_home():
    paths = resolve_paths({})
    assert paths.data_dir.name == "locus" and paths.config_dir.name == "locus"


def test_switches_take_only_true_or_false(tmp_path):
    settings, problems = st.load(write(tmp_path, "[tasks]\ntoken_healing = false\n"))
    assert settings.tasks.token_healing is False and problems == []
    settings, problems = st.load(write(tmp_path, '[tasks]\ntoken_healing = "no"\n'))
    assert settings.tasks.token_healing is True
    assert len(problems) == 1 and "'tasks.token_healing'" in problems[0].message
    assert "true or false" in problems[0].message
    settings, problems = st.load(write(tmp_path, "[tasks]\ntoken_healing = 0\n"))
    assert settings.tasks.token_healing is True and problems[0].key == "tasks.token_healing"


def test_token_healing_setting_reaches_the_engine(tmp_path):
    from app.services import chat_settings

    off = st.Settings().with_value("tasks.token_healing", False)
    assert chat_settings(off).token_healing is False
    assert chat_settings(st.Settings()).token_healing is True


def test_the_local_api_section_is_api_and_a_server_section_of_an_older_config_still_counts(tmp_path):
    """Locus's own API is [api]; a config.toml written before the rename (with [server]) keeps its values."""
    older = write(
        tmp_path, '[server]\nenabled = true\nport = 9100\nmax_tokens = 64\n[remote]\nurl = "http://gpu:8000/v1"\n'
    )
    settings, problems = st.load(older)
    assert problems == []
    assert (settings.api.enabled, settings.api.port, settings.api.max_tokens) == (True, 9100, 64)
    assert settings.remote.url == "http://gpu:8000/v1"  # the model server's section is another one
    assert "api.port" in {s.key for s in st.SPECS} and not any(s.section == "server" for s in st.SPECS)

    st.save(settings, older)
    text = older.read_text(encoding="utf-8")
    assert "[api]" in text and "[server]" not in text
    assert st.load(older) == (settings, [])


def test_an_api_section_wins_over_a_leftover_server_section(tmp_path):
    settings, problems = st.load(write(tmp_path, '[server]\nport = 9100\nhost = "::1"\n[api]\nport = 9200\n'))
    assert (settings.api.port, settings.api.host, problems) == (9200, "::1", [])
    _, problems = st.load(write(tmp_path, "[server]\nprot = 9100\n"))
    assert [p.key for p in problems] == ["server.prot"] and "Did you mean 'api.port'" in problems[0].message


def test_the_default_system_prompt_is_one_text():
    """The settings file's default and what the engine uses when no settings are given are the same words."""
    from engine.assistant import ChatSettings
    from engine.chat_settings import DEFAULT_SYSTEM_PROMPT

    assert st.Settings().chat.system_prompt == ChatSettings().system_prompt == DEFAULT_SYSTEM_PROMPT
