"""The conversation store on a real SQLite file."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest

from engine.errors import HistoryError, NotFoundError
from engine.history.models import auto_title
from engine.history.store import SCHEMA_VERSION, HistoryStore


@pytest.fixture()
def store(tmp_path):
    s = HistoryStore(tmp_path / "locus.sqlite3")
    yield s
    s.close()


def rows_in(store, table: str) -> int:
    """Rows of a table, read on a connection of its own (as another process would)."""
    with contextlib.closing(sqlite3.connect(store.path)) as reader:
        return reader.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_uses_wal_and_foreign_keys(store):
    assert store.pragma("journal_mode") == "wal"
    assert store.pragma("foreign_keys") == 1


def test_create_list_rename_delete(store):
    a = store.create_conversation()
    b = store.create_conversation("Named")
    assert a.title == "New conversation" and a.title_is_auto
    assert b.title == "Named" and not b.title_is_auto
    store.add_message(a.id, "user", "hello")
    assert [c.id for c in store.conversations()] == [a.id, b.id]  # most recently active first
    renamed = store.rename_conversation(b.id, "  Better   name ")
    assert renamed.title == "Better name" and not renamed.title_is_auto
    store.delete_conversation(a.id)
    assert [c.id for c in store.conversations()] == [b.id]
    assert rows_in(store, "messages") == 0  # cascaded
    with pytest.raises(NotFoundError):
        store.conversation(a.id)
    with pytest.raises(HistoryError):
        store.rename_conversation(b.id, "   ")


def test_first_question_titles_the_conversation_once(store):
    c = store.create_conversation()
    store.add_message(
        c.id, "user", "How do I bake sourdough bread at home with a cast iron pot and no scale?\nMore detail"
    )
    store.add_message(c.id, "user", "A second question")
    title = store.conversation(c.id).title
    assert title == auto_title("How do I bake sourdough bread at home with a cast iron pot and no scale?")
    assert title.startswith("How do I bake sourdough") and len(title) <= 61 and title.endswith("…")


def test_auto_title_short_and_empty():
    assert auto_title("  What is 2+2?  ") == "What is 2+2?"
    assert auto_title("\n\n") == "New conversation"


def test_messages_keep_order_status_and_stats(store):
    c = store.create_conversation()
    u = store.add_message(c.id, "user", "q")
    a = store.add_message(c.id, "assistant", "", status="streaming")
    store.update_message(a.id, content="partial", status="cancelled", stats={"tokens": 3})
    messages = store.messages(c.id)
    assert [m.id for m in messages] == [u.id, a.id]
    assert messages[1].content == "partial" and messages[1].status == "cancelled"
    assert messages[1].stats == {"tokens": 3} and messages[1].is_partial


def test_delete_from_removes_the_message_and_everything_after(store):
    c = store.create_conversation()
    ids = [
        store.add_message(c.id, r, t).id
        for r, t in [("user", "1"), ("assistant", "2"), ("user", "3"), ("assistant", "4")]
    ]
    assert store.delete_messages_from(c.id, ids[2]) == 2
    assert [m.content for m in store.messages(c.id)] == ["1", "2"]


def test_full_text_search_over_titles_and_messages(store):
    garden = store.create_conversation("Garden plans")
    store.add_message(garden.id, "user", "Which roses survive frost?")
    cooking = store.create_conversation()
    store.add_message(cooking.id, "user", "Recipe for a quick tomato soup")
    store.add_message(cooking.id, "assistant", "Use ripe tomatoes and fresh basil.")
    assert [h.conversation.id for h in store.search("garden")] == [garden.id]
    hit = store.search("basil")[0]
    assert hit.conversation.id == cooking.id and "[basil]" in hit.snippet and hit.message_id
    assert [h.conversation.id for h in store.search("tomat")] == [cooking.id]  # word prefixes match
    assert store.search("roses frost")[0].conversation.id == garden.id
    assert store.search("roses soup") == []  # every word must match
    assert store.search('") OR *') == []  # FTS syntax typed by a person is not an error


def test_search_follows_edits_and_deletes(store):
    c = store.create_conversation()
    m = store.add_message(c.id, "assistant", "draft about zebras")
    store.update_message(m.id, content="final about giraffes")
    assert store.search("zebras") == []
    assert store.search("giraffes")
    store.delete_conversation(c.id)
    assert store.search("giraffes") == []


def test_interrupted_answers_are_marked_on_start(tmp_path):
    path = tmp_path / "h.sqlite3"
    first = HistoryStore(path)
    c = first.create_conversation()
    first.add_message(c.id, "assistant", "half an ans", status="streaming")
    first.close()
    second = HistoryStore(path)
    assert second.mark_interrupted() == 1
    assert second.messages(c.id)[0].status == "interrupted"
    second.close()


def test_a_damaged_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "locus.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(HistoryError) as info:
        HistoryStore(path)
    assert str(path) in str(info.value) and "move it aside" in info.value.user_text()


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "locus.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(HistoryError, match="newer Locus"):
        HistoryStore(path)


def test_a_version_2_database_gains_the_backend_column_and_keeps_its_conversations(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE conversations (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL,
            title_is_auto INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL, updated_at REAL NOT NULL,
            collections TEXT);
        INSERT INTO conversations (title, created_at, updated_at, collections) VALUES ('Old one', 1, 2, '[]');
        PRAGMA user_version=2;
    """)
    db.close()
    store = HistoryStore(path)
    old = store.conversations()[0]
    assert (old.title, old.collections, old.backend) == ("Old one", [], None)
    assert store.set_options(old.id, backend="remote").backend == "remote"
    assert store.set_options(old.id, backend=None).backend is None
    with pytest.raises(ValueError):
        store.set_options(old.id, backend="elsewhere")
    with pytest.raises(NotFoundError):
        store.set_options(999, backend="local")
    store.close()


def test_a_database_of_schema_3_names_the_model_server_remote(tmp_path):
    """data/schema3.sqlite3 was written by the Locus of schema 3, which called the model server "server"."""
    import shutil
    from pathlib import Path

    path = tmp_path / "locus.sqlite3"
    shutil.copy(Path(__file__).parent / "data" / "schema3.sqlite3", path)
    store = HistoryStore(path)
    backends = {c.title: c.backend for c in store.conversations()}
    assert backends == {"On the model server": "remote", "On this computer": "local", "On the default": None}
    server = next(c for c in store.conversations() if c.backend == "remote")
    assert [m.content for m in store.messages(server.id)] == ["What is an otter?", "A river mammal."]
    assert [h.conversation.id for h in store.search("otter")] == [server.id]
    with pytest.raises(ValueError):
        store.set_options(server.id, backend="server")  # the old name is not written any more
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("SELECT COUNT(*) FROM conversations WHERE backend = 'server'").fetchone()[0] == 0
    db.close()


def test_a_deleted_conversation_leaves_no_text_in_the_files(store, tmp_path):
    """Its title, messages and search index entries are gone from the database, its free pages and its log."""
    keep = store.create_conversation()
    store.add_message(keep.id, "user", "Tell me about otters.")
    gone = store.create_conversation()
    store.add_message(gone.id, "user", "What did quagga9 say about the quarterly figures?")
    answer = store.add_message(gone.id, "assistant", "", status="streaming")
    for n in range(1, 40):  # an answer saved as it grows, as the assistant does
        store.update_message(answer.id, content="quagga9 " * n)

    def files() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.glob("locus.sqlite3*"))

    assert b"quagga9" in files()

    deleted = store.delete_conversation(gone.id)
    assert b"quagga9" not in files()
    assert deleted == 2
    assert store.search("quagga9") == [] and [h.conversation.id for h in store.search("otters")] == [keep.id]
    assert store.pragma("secure_delete") == 1


def test_options_are_saved_together_or_one_at_a_time(store):
    c = store.create_conversation()
    both = store.set_options(c.id, collections=["b", "a", "a"], backend="local")
    assert (both.collections, both.backend) == (["a", "b"], "local")
    only_documents = store.set_options(c.id, collections=None)
    assert (only_documents.collections, only_documents.backend) == (None, "local")  # the backend stays
    assert store.set_options(c.id, backend=None).collections is None
    assert store.set_options(c.id).id == c.id
    with pytest.raises(NotFoundError):
        store.set_options(999)


def test_the_search_index_follows_an_answer_once_it_has_ended(store):
    """Saving a growing answer does not index it again each time: the index takes its final text."""
    c = store.create_conversation()
    answer = store.add_message(c.id, "assistant", "", status="streaming")
    store.update_message(answer.id, content="herons wade")
    assert store.search("herons") == []  # still streaming: not indexed
    store.update_message(answer.id, content="herons wade at dawn")
    store.update_message(answer.id, content="herons wade at dawn by the sluice", status="complete")
    assert [h.message_id for h in store.search("sluice")] == [answer.id]
    assert [h.message_id for h in store.search("herons")] == [answer.id]
    stopped = store.add_message(c.id, "assistant", "", status="streaming")
    store.update_message(stopped.id, content="otters play")
    assert store.mark_interrupted() == 1  # a process that died mid-answer: what was saved becomes searchable
    assert [h.message_id for h in store.search("otters")] == [stopped.id]
    store.delete_messages_from(c.id, answer.id)
    assert store.search("herons") == [] and store.search("otters") == []
    dropped = store.add_message(c.id, "assistant", "", status="streaming")
    store.update_message(dropped.id, content="stoats")
    store.delete_message(dropped.id)  # deleting an unindexed row leaves the index whole
    assert store.search("stoats") == []
    with contextlib.closing(sqlite3.connect(store.path)) as reader:  # a second connection, as any other process
        reader.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")


def test_a_schema_4_database_takes_streaming_answers_out_of_the_index(tmp_path):
    """Under schema 4 every partial save was indexed; the upgrade leaves only finished text in the index."""
    path = tmp_path / "locus.sqlite3"
    store = HistoryStore(path)
    c = store.create_conversation()
    store.add_message(c.id, "user", "Tell me about newts")
    store.close()
    db = sqlite3.connect(path)  # what schema 4's triggers left: a streaming answer in the index
    db.executescript("""
        DROP TRIGGER messages_ai; DROP TRIGGER messages_ad; DROP TRIGGER messages_au;
        CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END;
        CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
        END;
        CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END;
        PRAGMA user_version=4;
    """)
    db.execute(
        "INSERT INTO messages(conversation_id, role, content, status, created_at) "
        "VALUES (?, 'assistant', 'newts swim', 'streaming', 0)",
        (c.id,),
    )
    db.commit()
    db.close()
    store = HistoryStore(path)
    try:
        assert store.search("swim") == []
        assert store.mark_interrupted() == 1
        assert len(store.search("swim")) == 1 and len(store.search("newts")) == 1
        store.delete_conversation(c.id)
        assert store.search("newts") == []
    finally:
        store.close()


def test_a_conversations_tools_and_approvals_are_saved_with_its_options(store):
    c = store.create_conversation()
    assert (c.tools, c.approved_tools) == (None, ())
    chosen = store.set_options(c.id, tools=["calculator", "notes/search", "calculator"])
    assert chosen.tools == ["calculator", "notes/search"]  # in the order given, once each
    assert store.set_options(c.id, backend="local").tools == ["calculator", "notes/search"]  # the tools stay
    assert store.set_options(c.id, tools=()).tools is None  # no tools
    store.set_options(c.id, tools=["calculator"])
    assert store.approve_tool(c.id, "calculator").approved_tools == ("calculator",)
    assert store.approve_tool(c.id, "calculator").approved_tools == ("calculator",)
    assert store.approve_tool(c.id, "notes/search").approved_tools == ("calculator", "notes/search")
    assert store.conversations()[0].approved_tools == ("calculator", "notes/search")
    assert store.forget_tool_approvals(c.id).approved_tools == ()
    with pytest.raises(ValueError):
        store.set_options(c.id, tools=["", "x"])
    with pytest.raises(NotFoundError):
        store.approve_tool(999, "calculator")
    with pytest.raises(NotFoundError):
        store.forget_tool_approvals(999)


def test_a_database_of_schema_5_gains_tools_and_approvals(tmp_path):
    """data/schema5.sqlite3 was written by the Locus of schema 5 (before tools): its conversations keep what
    they had and choose no tools; choosing some and remembering approvals works on it."""
    import shutil
    from pathlib import Path

    path = tmp_path / "locus.sqlite3"
    shutil.copy(Path(__file__).parent / "data" / "schema5.sqlite3", path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 5
    db.close()
    store = HistoryStore(path)
    moon = next(c for c in store.conversations() if c.title == "How far is the moon?")
    assert (moon.collections, moon.backend, moon.tools, moon.approved_tools) == (["notes"], "local", None, ())
    assert [m.content for m in store.messages(moon.id)] == ["How far is the moon?", "About 384,400 km."]
    assert store.set_options(moon.id, tools=["calculator"]).tools == ["calculator"]
    assert store.approve_tool(moon.id, "calculator").approved_tools == ("calculator",)
    assert [h.conversation.tools for h in store.search("moon")] == [["calculator"]]
    store.close()
    store = HistoryStore(path)  # opened again: nothing to migrate, everything kept
    assert store.conversation(moon.id).approved_tools == ("calculator",)
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
    db.close()
