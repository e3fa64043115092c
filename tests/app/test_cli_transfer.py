"""`locus export` and `locus import` as a user runs them: the installed console script, its own LOCUS_HOME."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pypdf

from engine.history.store import HistoryStore
from tests.app.helpers import locus

DATA = Path(__file__).resolve().parents[1] / "data" / "imports"


def _pdf_text(path: Path) -> str:
    """The text of a PDF as pypdf reads it, its spacing and ligatures made plain for comparison."""
    reader = pypdf.PdfReader(str(path))
    text = "\n".join(page.extract_text() for page in reader.pages)
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text))


def _trees(home: Path) -> list[tuple]:
    store = HistoryStore(home / "locus.sqlite3")
    try:
        out = []
        for c in sorted(store.conversations(), key=lambda c: c.created_at):
            messages = store.all_messages(c.id)
            pos = {m.id: i for i, m in enumerate(messages)}
            shown = [pos[m.id] for m in store.messages(c.id)]
            rows = [(pos.get(m.parent_id), m.role, m.content, m.created_at, m.answered_by) for m in messages]
            out.append((c.title, c.created_at, c.pinned, shown, rows))
        return out
    finally:
        store.close()


def test_import_then_export_json_and_back(tmp_path):
    home, other = tmp_path / "home", tmp_path / "other"
    home.mkdir(), other.mkdir()
    done = locus(home, "import", str(DATA / "chatgpt-conversations.json"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Imported 2 conversations (8 messages) from ChatGPT.")
    done = locus(home, "import", str(DATA / "lmstudio-1718200000000.conversation.json"))
    assert done.stdout.startswith("Imported 1 conversation (6 messages) from LM Studio."), done.stderr
    done = locus(home, "import", str(DATA / "jan-thread" / "messages.jsonl"))
    assert done.stdout.startswith("Imported 1 conversation (4 messages) from Jan."), done.stderr

    exported = tmp_path / "all.json"
    done = locus(home, "export", "--all", "--format", "json", "--output", str(exported))
    assert done.returncode == 0, done.stderr
    assert "Exported 4 conversations as json" in done.stderr
    assert json.loads(exported.read_text(encoding="utf-8"))["format"] == "locus-conversations"
    done = locus(other, "import", str(exported))
    assert done.stdout.startswith("Imported 4 conversations (18 messages) from Locus."), done.stderr
    assert _trees(other) == _trees(home)


def test_export_markdown_and_pdf_files_and_a_folder(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    assert locus(home, "import", str(DATA / "chatgpt-conversations.json")).returncode == 0
    md = locus(home, "export", "1", "--format", "markdown")
    assert md.returncode == 0, md.stderr
    assert md.stdout.startswith("# Boiling point at altitude\n")
    assert "### Assistant · " in md.stdout and "```python\nimport math" in md.stdout

    pdf = tmp_path / "boiling.pdf"
    done = locus(home, "export", "1", "2", "--output", str(pdf))  # the format from the file's name
    assert done.returncode == 0, done.stderr
    text = _pdf_text(pdf)
    assert "Boiling point at altitude" in text and "Haiku about rain" in text
    assert "Clausius–Clapeyron" in text and "import math" in text and "puddles hold the sky" in text

    folder = tmp_path / "out"
    folder.mkdir()
    done = locus(home, "export", "--all", "--format", "pdf", "--output", str(folder))
    assert done.returncode == 0, done.stderr
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["1-Boiling-point-at-altitude.pdf", "2-Haiku-about-rain.pdf"]
    assert "Write a haiku about rain." in _pdf_text(folder / files[1])


def test_a_refused_import_says_why_and_saves_nothing(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    bad = tmp_path / "conversations.json"
    good = json.loads((DATA / "chatgpt-conversations.json").read_text(encoding="utf-8"))
    good[1]["mapping"]["h2"]["parent"] = "nowhere"  # the second conversation is damaged
    bad.write_text(json.dumps(good), encoding="utf-8")
    done = locus(home, "import", str(bad))
    assert done.returncode == 1
    assert "'conversations.json' was not imported" in done.stderr and "Nothing was saved." in done.stderr
    assert "'nowhere' is not a node of the conversation" in done.stderr
    assert _trees(home) == []  # not even the first, valid conversation


def test_export_usage_errors(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    done = locus(home, "export", "--format", "json")
    assert done.returncode == 2 and "name the conversations" in done.stderr
    done = locus(home, "export", "--all")
    assert done.returncode == 2 and "--format" in done.stderr
    done = locus(home, "export", "5", "--format", "json")
    assert done.returncode == 1 and "Conversation 5 does not exist" in done.stderr


def test_export_a_project(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    done = locus(home, "import", str(DATA / "locus-two.json"))  # its second conversation is in project "Work"
    assert done.stdout.startswith("Imported 2 conversations (5 messages) from Locus."), done.stderr
    done = locus(home, "export", "--project", "Work", "--format", "markdown")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# Work\n\n*1 conversation*") and "## Second" in done.stdout
    assert "What is 2+2?" in done.stdout and "A first, valid conversation" not in done.stdout
    done = locus(home, "export", "--project", "Play", "--format", "json")
    assert done.returncode == 1 and "There is no project 'Play'." in done.stderr
