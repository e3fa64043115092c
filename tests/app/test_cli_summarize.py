"""`locus summarize` as a user runs it: the real console script, the real bundled model, its own LOCUS_HOME."""

from __future__ import annotations

from tests.app.helpers import locus
from tests.engine.tasks.test_summarize import gazetteer

# A small window makes a few pages a long document; one thread stays fast on a busy machine.
CONFIG = "[model]\ncontext_size = 512\nthreads = 1\n\n[sampling]\ntemperature = 0.0\nseed = 1\n"


def home_with_config(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(CONFIG, encoding="utf-8")
    return home


def test_a_file_longer_than_the_window_is_summarized_with_progress_on_stderr(tmp_path):
    home = home_with_config(tmp_path)
    long = tmp_path / "towns.md"
    long.write_text(gazetteer(7), encoding="utf-8")
    result = locus(home, "summarize", str(long), "--length", "one_line")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    steps = [ln for ln in result.stderr.splitlines() if ln.startswith("Summarizing part ")]
    total = int(steps[-1].rsplit("/", 1)[1])
    assert total >= 2 and steps == [f"Summarizing part {i}/{total}" for i in range(1, total + 1)]


def test_stdin_and_mistakes(tmp_path):
    home = home_with_config(tmp_path)
    short = locus(
        home,
        "summarize",
        "-",
        "--length",
        "short",
        stdin="The island ferry leaves the pier at 08:15 on weekdays and at noon on Sundays.",
    )
    assert short.returncode == 0, short.stderr
    assert short.stdout.strip() and "Summarizing part" not in short.stderr

    missing = locus(home, "summarize", str(tmp_path / "nothing.txt"))
    assert missing.returncode == 1 and f"locus: There is no file '{tmp_path / 'nothing.txt'}'." in missing.stderr
    both = locus(home, "summarize", "-", "--collection", "notes", stdin="text")
    assert both.returncode == 1 and "locus: Give one thing to summarize" in both.stderr
    empty = locus(home, "summarize", "-", stdin="  \n")
    assert empty.returncode == 1 and "locus: There is no text to summarize." in empty.stderr
    length = locus(home, "summarize", "-", "--length", "huge", stdin="text")
    assert length.returncode == 2 and "one_line" in length.stderr and "bullets" in length.stderr


def test_an_indexed_document_and_a_collection(tmp_path):
    home = home_with_config(tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ferry.md").write_text(
        "# Ferry\n\nThe island ferry leaves the pier at 08:15 every weekday.\n", encoding="utf-8"
    )
    (docs / "bakery.txt").write_text(
        "Pellow's Bakery opens at six; its rye loaf uses a forty-year-old starter.\n", encoding="utf-8"
    )
    assert locus(home, "index", str(docs), "--collection", "island").returncode == 0

    doc = locus(home, "summarize", "--doc", str(docs / "ferry.md"), "--length", "one_line")
    assert doc.returncode == 0, doc.stderr
    assert doc.stdout.strip()
    collection = locus(home, "summarize", "--collection", "island", "--length", "one_line")
    assert collection.returncode == 0, collection.stderr
    assert collection.stdout.strip()
    unknown = locus(home, "summarize", "--collection", "nope")
    assert unknown.returncode == 1 and "locus: There is no document collection 'nope'." in unknown.stderr


def test_removing_a_summarized_document_deletes_the_summarys_trace(tmp_path):
    import json

    home = home_with_config(tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ferry.md").write_text(
        "# Ferry\n\nThe island ferry leaves the pier at 08:15 every weekday.\n", encoding="utf-8"
    )
    assert locus(home, "index", str(docs)).returncode == 0

    def summaries() -> list:
        listed = locus(home, "traces", "list", "--task", "summarize", "--json")
        assert listed.returncode == 0, listed.stderr
        return json.loads(listed.stdout)

    summary = locus(home, "summarize", "--doc", str(docs / "ferry.md"), "--length", "one_line")
    assert summary.returncode == 0, summary.stderr
    assert len(summaries()) == 1
    removed = locus(home, "docs", "remove", str(docs / "ferry.md"))
    assert removed.returncode == 0 and "Removed 1 document(s) and 1 trace" in removed.stderr
    assert summaries() == []
