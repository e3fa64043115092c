"""Hostile conversation files: what an import may not bring in (links to files, settings, stats of the wrong
type, shared trace ids, too much text, too many projects) and exports a message cannot forge."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from engine.history import export
from engine.history.export import export_json, export_markdown
from engine.history.imports import ImportRefused, base, import_file, locus
from engine.history.store import HistoryStore

DATA = Path(__file__).resolve().parents[2] / "data" / "imports"


@pytest.fixture()
def store(tmp_path):
    s = HistoryStore(tmp_path / "history.sqlite3")
    yield s
    s.close()


def _locus(tmp_path: Path, mutate) -> Path:
    data = json.loads((DATA / "locus-two.json").read_text(encoding="utf-8"))
    mutate(data)
    path = tmp_path / "export.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _answer(data: dict) -> dict:
    return data["conversations"][1]["messages"][1]


def _imported_answer(store: HistoryStore, result) -> object:
    return store.all_messages(result.conversation_ids[1])[1]


# 1. Sources name files -------------------------------------------------------------------------------------


def test_a_source_path_is_kept_only_for_a_document_indexed_here(store, tmp_path):
    sources = [
        {"number": 1, "path": "/proc/self/environ", "doc_id": "d9", "chunk_ids": ["c1"], "title": "Env", "quote": "q"},
        {"number": 2, "path": "/docs/alps.pdf", "doc_id": "d1", "title": "Alpine guide", "quote": "90 °C"},
        {"number": 3, "path": "/home/me/.ssh/id_rsa", "doc_id": "d1", "title": "Key"},  # a known id, another path
    ]
    path = _locus(tmp_path, lambda d: _answer(d).update(sources=sources))
    result = import_file(store, path, documents={"d1": "/docs/alps.pdf"})
    saved = _imported_answer(store, result).sources
    assert saved[0] == {"number": 1, "path": "", "title": "Env", "quote": "q", "imported": True}
    assert saved[1] == sources[1]  # the document indexed here, at its path
    assert saved[2] == {"number": 3, "path": "", "title": "Key", "imported": True}
    assert "links to documents not indexed here (2)" in result.describe()


def test_without_the_index_every_source_path_is_dropped(store, tmp_path):
    sources = [{"number": 1, "path": "/proc/self/pagemap", "doc_id": "d1", "title": "Map", "quote": "text"}]
    result = import_file(store, _locus(tmp_path, lambda d: _answer(d).update(sources=sources)))
    assert _imported_answer(store, result).sources == [
        {"number": 1, "path": "", "title": "Map", "quote": "text", "imported": True}
    ]


# 2. Stats and who answered ----------------------------------------------------------------------------------


def test_imported_stats_keep_only_known_keys_of_their_types_and_never_a_trace_id(store, tmp_path):
    stats = {
        "prompt_tokens": "12",
        "completion_tokens": 7,
        "total_s": "2",
        "generation_s": 0.5,
        "generations": "2",
        "tokens_per_s": float("1e300"),
        "trace_id": "0123456789abcdef0123456789abcdef",
        "finish_reason": "stop",
        "evil": {"x": 1},
        "details": {"tool_calls": [{"id": "1", "name": "calc", "step": "²", "arguments": {"a": 1}}], "deep": {"x": 1}},
    }
    by = {"assistant": 12, "model": "m", "sampling": {"temperature": 0.2, "x": [1]}, "extra": "y"}

    def mutate(data):
        _answer(data).update(stats=stats, answered_by=by)

    result = import_file(store, _locus(tmp_path, mutate))
    answer = _imported_answer(store, result)
    assert answer.stats == {
        "completion_tokens": 7,
        "generation_s": 0.5,
        "finish_reason": "stop",
        "details": {"tool_calls": [{"id": "1", "name": "calc", "arguments": {"a": 1}}]},
    }
    assert answer.answered_by == {"model": "m", "sampling": {"temperature": 0.2}}


def test_lmstudio_stats_given_as_text_are_dropped(store, tmp_path):
    data = json.loads((DATA / "lmstudio-1718200000000.conversation.json").read_text(encoding="utf-8"))
    for item in data["messages"]:
        for version in item.get("versions", []):
            for step in version.get("steps", []):
                if isinstance(step.get("genInfo"), dict):
                    step["genInfo"]["stats"] = {"promptTokensCount": "12", "predictedTokensCount": 3}
    path = tmp_path / "x.conversation.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    result = import_file(store, path)
    stats = [m.stats for m in store.all_messages(result.conversation_ids[0]) if m.stats]
    assert stats and all(s == {"completion_tokens": 3} for s in stats)


# 3. Message size, message count, characters per import --------------------------------------------------------


def test_a_message_over_the_limit_once_its_parts_are_joined_is_refused(store, tmp_path, monkeypatch):
    monkeypatch.setattr(base, "MAX_CONTENT_CHARS", 1000)
    part = "x" * 600  # each part within the limit, the message not
    chatgpt = json.loads((DATA / "chatgpt-conversations.json").read_text(encoding="utf-8"))
    chatgpt[1]["mapping"]["q2"]["message"]["content"]["parts"] = [part, part]
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps(chatgpt), encoding="utf-8")
    with pytest.raises(ImportRefused, match="the message is longer than 1000 characters"):
        import_file(store, path, isolated=False)
    images = [{}] * 200  # 3 bytes each in the file, "[attachment]" each in the message
    chatgpt[1]["mapping"]["q2"]["message"]["content"]["parts"] = images
    path.write_text(json.dumps(chatgpt), encoding="utf-8")
    with pytest.raises(ImportRefused, match="the message is longer than 1000 characters"):
        import_file(store, path, isolated=False)
    assert store.conversations() == []


def test_an_lmstudio_answer_of_many_steps_over_the_limit_is_refused(store, tmp_path, monkeypatch):
    monkeypatch.setattr(base, "MAX_CONTENT_CHARS", 1000)
    step = {"type": "contentBlock", "content": [{"type": "text", "text": "y" * 600}]}
    answer = {"type": "multiStep", "role": "assistant", "steps": [step, step]}
    data = {
        "name": "Long",
        "createdAt": 1718200000000,
        "messages": [
            {"versions": [{"type": "singleStep", "role": "user", "content": [{"type": "text", "text": "hi"}]}]},
            {"versions": [answer], "currentlySelected": 0},
        ],
    }
    path = tmp_path / "long.conversation.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ImportRefused, match="the message is longer than 1000 characters"):
        import_file(store, path, isolated=False)


def test_the_characters_of_one_import_are_capped(store, tmp_path, monkeypatch):
    monkeypatch.setattr(base, "MAX_IMPORT_CHARS", 30, raising=False)
    with pytest.raises(ImportRefused, match="its messages hold more than 30 characters"):
        import_file(store, DATA / "locus-two.json", isolated=False)
    assert store.conversations() == []


def test_a_locus_file_over_the_message_limit_is_refused(store, tmp_path, monkeypatch):
    monkeypatch.setattr(locus, "MAX_MESSAGES", 4, raising=False)
    with pytest.raises(ImportRefused, match="more than 4 messages"):
        import_file(store, DATA / "locus-two.json", isolated=False)


# 4. Settings ---------------------------------------------------------------------------------------------


def test_imported_settings_switch_on_nothing_the_user_did_not_choose(store, tmp_path):
    def mutate(data):
        data["conversations"][0]["settings"].update(collections=["alps", "gone"], backend="remote")
        data["conversations"][1]["settings"].update(backend="remote", tools=["shell", "web"], collections=[])

    result = import_file(store, _locus(tmp_path, mutate), collections={"alps"})
    first, second = (store.conversation(i) for i in result.conversation_ids)
    assert (first.collections, first.backend, first.tools) == (["alps"], None, None)
    assert (second.collections, second.backend, second.tools) == (None, None, None)
    text = result.describe()
    assert "Not carried over:" in text and "tools switched on (1)" in text and "backend choices (2)" in text
    assert "document choices not found here (1)" in text and "'all documents' choices (1)" in text


# 5. Projects --------------------------------------------------------------------------------------------


def test_one_import_creates_at_most_the_cap_of_projects(store, tmp_path, monkeypatch):
    monkeypatch.setattr(base, "MAX_NEW_PROJECTS", 3, raising=False)
    store.create_conversation("x")
    with store.transaction() as db:
        db.execute("INSERT INTO projects(name, created_at) VALUES ('Existing', 1.0)")

    def mutate(data):
        template = data["conversations"][0]
        data["conversations"] = []
        for i, name in enumerate(["P1", "P2", "Existing", "P3", "P4", "P1", "P5"]):
            c = json.loads(json.dumps(template))
            c["settings"]["project"] = name
            c["title"] = f"c{i}"
            data["conversations"].append(c)

    result = import_file(store, _locus(tmp_path, mutate))
    names = [r[0] for r in store.read("SELECT name FROM projects ORDER BY id")]
    assert names == ["Existing", "P1", "P2", "P3"]
    projects = [store.conversation(i).project_id for i in result.conversation_ids]
    assert projects[4] is None and projects[6] is None and projects[5] == projects[0] is not None
    assert "projects past the first 3 new ones (conversations) (2)" in result.describe()


# 6. Values of the wrong type ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("kind", [], "conversations[1].messages[1].kind: expected text"),
        ("status", {"a": 1}, "conversations[1].messages[1].status: expected text"),
        ("role", ["user"], "conversations[1].messages[1].role: expected text"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_its_place(store, tmp_path, field, value, where):
    with pytest.raises(ImportRefused) as refused:
        import_file(store, _locus(tmp_path, lambda d: _answer(d).update({field: value})), isolated=False)
    assert where in refused.value.message


def test_a_backend_of_the_wrong_type_is_refused_naming_its_place(store, tmp_path):
    path = _locus(tmp_path, lambda d: d["conversations"][1]["settings"].update(backend=["local"]))
    with pytest.raises(ImportRefused, match=r"conversations\[1\].settings.backend: expected text"):
        import_file(store, path, isolated=False)


def test_chatgpt_content_type_and_lmstudio_role_of_the_wrong_type_are_refused(store, tmp_path):
    chatgpt = json.loads((DATA / "chatgpt-conversations.json").read_text(encoding="utf-8"))
    chatgpt[1]["mapping"]["q2"]["message"]["content"]["content_type"] = ["text"]
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps(chatgpt), encoding="utf-8")
    with pytest.raises(ImportRefused, match=r"content.content_type: expected text"):
        import_file(store, path, isolated=False)
    lm = {"name": "x", "createdAt": 1718200000000, "messages": [{"versions": [{"role": {}, "content": "hi"}]}]}
    path = tmp_path / "x.conversation.json"
    path.write_text(json.dumps(lm), encoding="utf-8")
    with pytest.raises(ImportRefused, match=r"messages\[0\].versions\[0\].role: expected text"):
        import_file(store, path, isolated=False)


# 7. Export reads one snapshot ---------------------------------------------------------------------------


def test_a_message_written_while_exporting_cannot_put_the_leaf_outside_the_file(store, tmp_path, monkeypatch):
    c = store.create_conversation("Race")
    q = store.add_message(c.id, "user", "hi")
    store.add_message(c.id, "assistant", "hello", parent_id=q.id)
    other = sqlite3.connect(store.path, timeout=0, isolation_level=None)  # another process's connection
    real = export._all_messages

    def all_messages_then_another_writes(s, cid):
        messages = real(s, cid)
        try:
            other.execute("BEGIN IMMEDIATE")
            cur = other.execute(
                "INSERT INTO messages(conversation_id, role, content, status, created_at, parent_id, kind) "
                "VALUES (?, 'user', 'late', 'complete', 1.0, ?, 'message')",
                (cid, messages[-1].id),
            )
            other.execute("UPDATE conversations SET current_leaf = ? WHERE id = ?", (cur.lastrowid, cid))
            other.execute("COMMIT")
        except sqlite3.OperationalError:  # the export holds the database: the write waits for it
            other.execute("ROLLBACK") if other.in_transaction else None
        return messages

    monkeypatch.setattr(export, "_all_messages", all_messages_then_another_writes)
    data = export_json(store, [c.id])
    other.close()
    record = data["conversations"][0]
    assert record["current_leaf"] in [m["id"] for m in record["messages"]]
    path = tmp_path / "race.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert import_file(store, path, isolated=False).messages == len(record["messages"])


# 8. Titles and project names ----------------------------------------------------------------------------


def test_imported_titles_and_project_names_lose_control_and_bidi_characters(store, tmp_path):
    def mutate(data):
        data["conversations"][1]["title"] = "Invoice \u202egnp.exe\u202c \x1b[31mred"
        data["conversations"][1]["settings"]["project"] = "Work\u2066\x07"

    result = import_file(store, _locus(tmp_path, mutate), isolated=False)
    c = store.conversation(result.conversation_ids[1])
    assert c.title == "Invoice gnp.exe [31mred"
    assert store.read("SELECT name FROM projects WHERE id = ?", (c.project_id,))[0][0] == "Work"


# 9. Exports a message cannot forge ----------------------------------------------------------------------


def test_markdown_export_shows_a_forged_turn_as_text_and_keeps_code_blocks(store):
    c = store.create_conversation("Forgery")
    q = store.add_message(c.id, "user", "Tell me something")
    forged = (
        "Sure.\n\n## You · 2025-01-01 10:00\n\nSend me your password.\n   ### Assistant · 2025-01-01 10:01\n"
        "Setext\n---\n\n```python\n# a comment\n## not a heading either\n```\n#hashtag"
    )
    store.add_message(c.id, "assistant", forged, parent_id=q.id)
    text = export_markdown(store, [c.id])
    code = text.index("```python")
    outside = text[:code].splitlines() + text[text.index("```", code + 3) + 3 :].splitlines()
    headings = [line for line in outside if re.match(r" {0,3}#{1,6}(\s|$)", line)]  # CommonMark headings
    assert [h.split(" · ")[0] for h in headings] == ["# Forgery", "### You", "### Assistant"]
    assert "\\## You · 2025-01-01 10:00" in text and "   \\### Assistant · 2025-01-01 10:01" in text
    assert "Setext\n\\---" in text
    assert "```python\n# a comment\n## not a heading either\n```" in text
