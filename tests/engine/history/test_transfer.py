"""Export and import of conversations: Locus JSON round trips, Markdown, and the imports of ChatGPT, LM Studio
and Jan files (tests/data/imports/, written from their published formats); hostile files are refused whole."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from engine.errors import HistoryError
from engine.history.export import FORMAT, export_json, export_markdown
from engine.history.imports import ImportRefused, import_file, read_file
from engine.history.store import HistoryStore

DATA = Path(__file__).resolve().parents[2] / "data" / "imports"

SOURCES = [
    {
        "number": 1,
        "path": "/docs/alps.pdf",
        "title": "Alpine guide",
        "kind": "pdf",
        "page": 4,
        "location": "page 4",
        "quote": "water boils near 90 °C",
        "supported": True,
        "doc_id": "d1",
        "chunk_ids": ["c1"],
    }
]


@pytest.fixture()
def store(tmp_path):
    s = HistoryStore(tmp_path / "history.sqlite3")
    yield s
    s.close()


def _table_counts(store: HistoryStore) -> tuple[int, int, int]:
    return tuple(  # type: ignore[return-value]
        store.read(f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("conversations", "messages", "projects")
    )


def _branched(store: HistoryStore) -> int:
    """A conversation with two versions of its first question, a summary, an answer from documents with stats,
    a failed answer, its settings all set and the first branch shown."""
    c = store.create_conversation("Boiling & *altitude*")
    q1 = store.add_message(c.id, "user", "At what temperature does water boil at 3000 m?")
    answer = "About 90 °C [1].\n\n```python\nprint(90)\n```"
    a1 = store.add_message(c.id, "assistant", answer, answered_by={"model": "m"})
    store.update_message(a1.id, stats={"completion_tokens": 12, "total_s": 0.5}, sources=SOURCES)
    s1 = store.add_message(c.id, "system", "Summary: water boils sooner up high.", kind="summary")
    q2 = store.add_message(c.id, "user", "And on Everest?")
    store.add_message(c.id, "assistant", "", status="failed")
    store.update_message(store.all_messages(c.id)[-1].id, error="The model stopped.")
    q1b = store.add_message(c.id, "user", "At what temperature does water boil in Denver?", parent_id=None)
    store.add_message(c.id, "assistant", "About 95 °C.", parent_id=q1b.id)
    store.set_options(c.id, collections=["alps", "cooking"], backend="local", tools=["calculator"])
    with store.transaction() as db:
        cur = db.execute("INSERT INTO projects(name, created_at) VALUES ('Mountains', 1.0)")
        db.execute(
            "UPDATE conversations SET project_id = ?, assistant_id = 'writing-editor', pinned = 1 WHERE id = ?",
            (cur.lastrowid, c.id),
        )
    store.switch_to(q2.id)
    assert [m.id for m in store.messages(c.id)][:4] == [q1.id, a1.id, s1.id, q2.id]
    return c.id


def _tree(store: HistoryStore, conversation_id: int) -> dict:
    """A conversation as comparable data: ids replaced by positions in the tree."""
    c = store.conversation(conversation_id)
    messages = store.all_messages(conversation_id)
    pos = {m.id: i for i, m in enumerate(messages)}
    project = store.read("SELECT name FROM projects WHERE id = ?", (c.project_id,)) if c.project_id else []
    return {
        "title": c.title,
        "title_is_auto": c.title_is_auto,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "settings": (c.collections, c.backend, c.tools, c.assistant_id, c.pinned, project),
        "shown": [pos[m.id] for m in store.messages(conversation_id)],
        "messages": [
            (
                None if m.parent_id is None else pos[m.parent_id],
                m.role,
                m.kind,
                m.content,
                m.status,
                m.created_at,
                m.stats,
                m.error,
                m.sources,
                m.answered_by,
            )
            for m in messages
        ],
    }


def test_locus_json_round_trip_gives_the_same_tree(store, tmp_path):
    cid = _branched(store)
    before = _tree(store, cid)
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export_json(store, [cid]), ensure_ascii=False), encoding="utf-8")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == FORMAT and data["version"] == 1
    assert len(data["conversations"][0]["messages"]) == 7  # every branch, not only the one shown

    # The tools and the backend are never carried over; the documents and sources are, where indexed here.
    settings = before["settings"]
    before["settings"] = (settings[0], None, None, *settings[3:])
    here = {"documents": {"d1": "/docs/alps.pdf"}, "collections": {"alps", "cooking", "other"}}
    other = HistoryStore(tmp_path / "other.sqlite3")
    try:
        result = import_file(other, path, **here)
        assert result.source == "Locus" and result.messages == 7 and len(result.conversation_ids) == 1
        assert _tree(other, result.conversation_ids[0]) == before
        assert result.describe() == (
            "Imported 1 conversation (7 messages) from Locus. "
            "Not carried over: tools switched on (1); backend choices (1)."
        )
    finally:
        other.close()
    # Into the same history: a second copy, with new ids, the same tree, the project not made twice.
    again = import_file(store, path, **here).conversation_ids[0]
    assert again != cid
    assert _tree(store, again) == before
    assert store.read("SELECT COUNT(*) FROM projects")[0][0] == 1


def test_markdown_shows_the_branch_with_roles_times_sources_and_code(store):
    cid = _branched(store)
    text = export_markdown(store, [cid])
    assert text.startswith("# Boiling & \\*altitude\\*\n")
    assert "### You · " in text and "### Assistant · " in text and "### Summary of earlier messages · " in text
    assert "```python\nprint(90)\n```" in text
    assert "**Sources**" in text and "- [1] Alpine guide — page 4" in text
    assert "version 1 of 2" in text and "the JSON export holds them all" in text
    assert "And on Everest?" in text and "Denver" not in text  # the branch shown only
    assert "this answer failed: The model stopped." in text


def test_markdown_closes_a_code_block_an_answer_left_open(store):
    c = store.create_conversation("Open fence")
    store.add_message(c.id, "user", "code?")
    store.add_message(c.id, "assistant", "```js\nlet a = 1;")
    store.add_message(c.id, "user", "next question")
    text = export_markdown(store, [c.id])
    assert "let a = 1;\n```\n" in text
    assert text.index("let a = 1;") < text.rindex("```") < text.index("next question")


def test_chatgpt_export_with_a_branch(store):
    result = import_file(store, DATA / "chatgpt-conversations.json")
    assert result.source == "ChatGPT"
    assert len(result.conversation_ids) == 2 and result.messages == 8
    assert result.skipped  # the tool message, the call to the browser, the image: said, not silent
    first = store.conversation(result.conversation_ids[0])
    assert first.title == "Boiling point at altitude" and first.created_at == 1718000000.123
    messages = store.all_messages(first.id)
    q1 = next(m for m in messages if "3000 m" in m.content)
    q1b = next(m for m in messages if "Everest" in m.content and m.role == "user")
    # The two versions of the first question are siblings (the hidden system message left out).
    assert q1.parent_id is None and q1b.parent_id is None
    assert [m.id for m in store.siblings(q1b.id)] == [q1.id, q1b.id]
    shown = store.messages(first.id)  # current_node: the branch of the second version
    assert [m.role for m in shown] == ["user", "assistant", "user", "assistant"]
    assert shown[0].id == q1b.id and shown[2].content == "[image]\n\nAnd in this photo's kitchen?"
    assert shown[1].content.endswith("```") and "math.log" in shown[1].content
    assert shown[3].answered_by == {"model": "gpt-4o-mini", "source": "ChatGPT"}
    assert [m.created_at for m in shown] == [1718000300.0, 1718000305.0, 1718000500.0, 1718000510.0]
    second = store.conversation(result.conversation_ids[1])
    assert second.title == "Haiku about rain"
    assert [m.role for m in store.messages(second.id)] == ["user", "assistant"]


def test_lm_studio_conversation_keeps_versions_and_stats(store):
    result = import_file(store, DATA / "lmstudio-1718200000000.conversation.json")
    assert result.source == "LM Studio" and result.messages == 6
    c = store.conversation(result.conversation_ids[0])
    assert c.title == "Sourdough starter" and c.pinned and c.created_at == 1718200000.0
    shown = store.messages(c.id)
    assert [m.role for m in shown] == ["system", "user", "assistant", "user", "assistant"]
    assert shown[0].content == "You are a patient baking teacher."
    assert shown[2].content.startswith("Feed it every 12 hours")  # the version selected
    assert store.siblings(shown[2].id)[0].content == "Once a day at room temperature."
    assert shown[2].stats == {
        "prompt_tokens": 41,
        "completion_tokens": 22,
        "time_to_first_token_s": 0.28,
        "tokens_per_s": 20.9,
        "finish_reason": "eosFound",
    }
    assert shown[4].answered_by["source"] == "LM Studio"


@pytest.mark.parametrize("which", ["jan-thread", "jan-thread/messages.jsonl", "jan-thread/thread.json"])
def test_jan_thread(store, which):
    result = import_file(store, DATA / which)
    assert result.source == "Jan" and result.messages == 4
    c = store.conversation(result.conversation_ids[0])
    assert c.title == "Packing list for a hike" and c.created_at == 1718300000.0
    shown = store.messages(c.id)
    assert [(m.role, m.content) for m in shown] == [
        ("user", "What should I pack for a day hike?"),
        ("assistant", "Water, a map, a rain jacket."),
        ("user", "And food?"),
        ("assistant", "Nuts, fruit and a sandwich."),
    ]
    assert shown[0].created_at == 1718300010.0 and shown[3].status == "cancelled"
    assert shown[1].answered_by == {"model": "llama3.2-3b-instruct", "source": "Jan"}


def _locus_file(tmp_path: Path, mutate) -> Path:
    good = json.loads((DATA / "locus-two.json").read_text(encoding="utf-8"))
    mutate(good)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(good), encoding="utf-8")
    return path


def _set(path: list, value):
    def mutate(data):
        target = data
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return mutate


BAD_LOCUS = {
    "unknown role": (_set(["conversations", 1, "messages", 1, "role"], "wizard"), "'wizard' is not system, user"),
    "missing parent": (_set(["conversations", 1, "messages", 1, "parent"], 999), "'999', which is not in the file"),
    "parent loop": (_set(["conversations", 1, "messages", 0, "parent"], 5), "loop"),
    "content not text": (_set(["conversations", 1, "messages", 0, "content"], {"x": 1}), "expected text"),
    "bad time": (_set(["conversations", 1, "messages", 0, "created_at"], "yesterday"), "expected a number"),
    "newer version": (_set(["version"], 2), "newer Locus"),
    "unknown backend": (_set(["conversations", 1, "settings", "backend"], "cloud"), "not local or remote"),
    "user summary": (_set(["conversations", 1, "messages", 0, "kind"], "summary"), "summary of earlier messages is"),
    "source without a path": (_set(["conversations", 1, "messages", 1, "sources"], [{"number": 1}]), "sources[0].path"),
    "source number text": (
        _set(["conversations", 1, "messages", 1, "sources"], [{"number": "1", "path": "/a"}]),
        "expected a source number",
    ),
    "source page text": (
        _set(["conversations", 1, "messages", 1, "sources"], [{"number": 1, "path": "/a", "page": "4"}]),
        "sources[0].page: expected a whole number",
    ),
}


@pytest.mark.parametrize("case", list(BAD_LOCUS))
def test_a_malformed_locus_file_is_refused_and_nothing_is_saved(store, tmp_path, case):
    mutate, reason = BAD_LOCUS[case]
    existing = store.create_conversation("Already here")
    store.add_message(existing.id, "user", "hello")
    before = _table_counts(store)
    with pytest.raises(ImportRefused) as refused:
        import_file(store, _locus_file(tmp_path, mutate))
    assert reason in refused.value.message and "Nothing was saved" in refused.value.user_text()
    assert _table_counts(store) == before  # the first, valid conversation of the file was not saved either


def test_the_fixture_itself_imports(store):
    assert import_file(store, DATA / "locus-two.json").messages == 5


FOREIGN = {
    "not json": (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8"),
    "broken json": (b'{"format": "locus-conversations", "version": 1, "conversations": [', "not valid JSON"),
    "some other json": (b'{"name": "package", "dependencies": {}}', "not a conversation export"),
    "too deep": (b"[" * 5000 + b"]" * 5000, "nests deeper"),
    "deep but parseable": (b'{"mapping": {}, "x": ' + b"[" * 100 + b"]" * 100 + b"}", "nests deeper than 64"),
    "empty chatgpt": (b"[]", "not a conversation export"),
    "chatgpt loop": (
        json.dumps(
            [{"mapping": {"a": {"parent": "b", "children": ["b"]}, "b": {"parent": "a", "children": ["a"]}}}]
        ).encode(),
        "loops",
    ),
    "lm studio bad selection": (
        json.dumps(
            {"name": "x", "createdAt": 1718200000000, "messages": [{"versions": [], "currentlySelected": 0}]}
        ).encode(),
        "is not one of its versions",
    ),
    "NaN": (b'{"format": "locus-conversations", "version": NaN, "conversations": []}', "not valid JSON"),
}


@pytest.mark.parametrize("case", list(FOREIGN))
def test_foreign_and_broken_files_are_refused_with_a_reason(store, tmp_path, case):
    data, reason = FOREIGN[case]
    path = tmp_path / "file.json"
    path.write_bytes(data)
    before = _table_counts(store)
    with pytest.raises(ImportRefused) as refused:
        import_file(store, path)
    assert reason in refused.value.message
    assert _table_counts(store) == before


def test_a_file_over_the_size_cap_is_refused_before_it_is_read(store, tmp_path, monkeypatch):
    import engine.history.imports.base as base

    path = tmp_path / "big.json"
    path.write_bytes(b" " * 2048 + b"[]")
    monkeypatch.setattr(base, "MAX_FILE_BYTES", 1024)
    monkeypatch.setattr(base.read_bytes, "__defaults__", (1024,))
    with pytest.raises(ImportRefused, match="more than the 0 MB"):
        read_file(path)


def test_a_jan_messages_file_with_a_broken_line_is_refused(store, tmp_path):
    folder = tmp_path / "jan"
    folder.mkdir()
    lines = (DATA / "jan-thread" / "messages.jsonl").read_text(encoding="utf-8").splitlines()
    (folder / "messages.jsonl").write_text("\n".join([lines[0], "{not json", lines[1]]), encoding="utf-8")
    with pytest.raises(ImportRefused, match="line 2"):
        import_file(store, folder)
    assert _table_counts(store) == (0, 0, 0)


def test_a_write_failing_midway_saves_nothing(store):
    """The file is valid but the database refuses its last message: the conversations before it go too."""
    with store.transaction() as db:
        db.execute(
            "CREATE TEMP TRIGGER refuse_thanks BEFORE INSERT ON messages WHEN new.content = 'Thanks' "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    with pytest.raises(HistoryError, match="disk full"):
        import_file(store, DATA / "locus-two.json")
    assert _table_counts(store) == (0, 0, 0)


def test_a_file_that_fills_the_reader_memory_is_refused_in_its_worker(store, tmp_path, monkeypatch):
    """The file is read in a parse worker with a memory ceiling: 24 MB of empty objects outgrow 512 MB."""
    import engine.history.imports as imports

    path = tmp_path / "many.json"
    path.write_text("[" + ",".join(["{}"] * 8_000_000) + "]", encoding="ascii")
    monkeypatch.setattr(imports, "PARSE_MEMORY_MB", 512)
    with pytest.raises(ImportRefused, match="needed more than 512 MB of memory"):
        import_file(store, path)
    assert _table_counts(store) == (0, 0, 0)


def test_chatgpt_zip_as_downloaded(store, tmp_path):
    """ChatGPT's data export comes as a zip holding conversations.json beside chat.html and the images."""
    path = tmp_path / "chatgpt-export.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("chat.html", "<html></html>")
        z.write(DATA / "chatgpt-conversations.json", "conversations.json")
    result = import_file(store, path)
    assert result.source == "ChatGPT" and result.messages == 8


def test_a_zip_bomb_is_refused_before_it_is_unpacked(store, tmp_path, monkeypatch):
    import engine.history.imports.base as base

    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("conversations.json", b"[" + b" " * 5_000_000 + b"]")
    assert path.stat().st_size < 50_000
    monkeypatch.setattr(base.read_zip_member, "__defaults__", (1_000_000,))
    with pytest.raises(ImportRefused, match=r"conversations\.json is more than"):
        read_file(path)
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("notes.txt", "hi")
    with pytest.raises(ImportRefused, match=r"holds no conversations\.json"):
        read_file(tmp_path / "other.zip")
