"""`locus index`, `locus docs` and `locus ask --docs` as a user runs them."""

from __future__ import annotations

import shutil

from tests.app.helpers import locus
from tests.conftest import PDF_ODDITIES

CORPUS = PDF_ODDITIES


def test_index_list_ask_with_sources_and_remove(tmp_path):
    home = tmp_path / "home"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ferry.md").write_text(
        "# Ferry\n\nThe island ferry leaves the pier at 08:15 every weekday.\n", encoding="utf-8"
    )
    shutil.copy(CORPUS / "r4-user-password.pdf", docs)
    indexed = locus(home, "index", str(docs), "--collection", "travel")
    assert indexed.returncode == 0, indexed.stderr
    assert "Indexed 1 file(s)" in indexed.stderr and "1 failed" in indexed.stderr
    assert "r4-user-password.pdf: password protected" in indexed.stderr

    listed = locus(home, "docs", "list")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert any(
        "[travel]" in ln and "done" in ln and ln.rstrip().endswith("chunks)") and "ferry.md" in ln for ln in lines
    )
    assert any("failed" in ln and "r4-user-password.pdf" in ln and "password protected" in ln for ln in lines)

    answer = locus(
        home,
        "ask",
        "--docs",
        "--collection",
        "travel",
        "--max-tokens",
        "60",
        "--temperature",
        "0",
        "When does the island ferry leave the pier?",
    )
    assert answer.returncode == 0, answer.stderr
    body, _, sources = answer.stdout.partition("\nSources:\n")
    assert body.strip() and sources, answer.stdout
    assert f"[1] {docs / 'ferry.md'}, line" in sources
    # Every passage the answer was given is listed: marked when the answer rests on it, else said so.
    assert "(the answer rests on it)" in sources or "may not rest on these passages" in sources

    # --passages: the ranked passages, no answer and no model.
    # (a model that does not exist is never loaded)
    question = "When does the island ferry leave the pier?"
    found = locus(home, "ask", "--docs", "--passages", "--model", str(tmp_path / "none.gguf"), question)
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith(f"[1] {docs / 'ferry.md'}, line"), found.stdout
    assert "The island ferry leaves the pier at 08:15 every weekday." in found.stdout
    alone = locus(home, "ask", "--passages", "When does the ferry leave?")
    assert alone.returncode != 0 and "add --docs or --collection" in alone.stderr

    removed = locus(home, "docs", "remove", str(docs / "ferry.md"))
    assert removed.returncode == 0 and "Removed 1 document(s) and " in removed.stderr
    assert "ferry.md" not in locus(home, "docs", "list").stdout
    missing = locus(home, "docs", "remove", "/no/such/file.txt")
    assert missing.returncode == 1 and "no indexed document is '/no/such/file.txt'" in missing.stderr


def test_an_empty_path_is_refused_instead_of_indexing_the_current_folder(tmp_path):
    done = locus(tmp_path / "home", "index", "", timeout=60)
    assert done.returncode == 2
    assert "empty path" in done.stderr
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").rglob("*.lance"))


def test_locus_index_dot_in_a_folder_of_planted_modules_runs_none_of_them(tmp_path):
    from tests.engine.rag.test_isolation import hostile_folder

    marker = tmp_path / "pwned.txt"
    folder = hostile_folder(tmp_path / "downloaded", marker)
    (folder / "ferry.md").write_text("# Ferry\n\nThe island ferry leaves the pier at 08:15.\n", encoding="utf-8")
    indexed = locus(tmp_path / "home", "index", ".", cwd=folder)
    assert not marker.exists(), marker.read_text()
    assert indexed.returncode == 0, indexed.stderr
    assert "0 failed" in indexed.stderr, indexed.stderr
    listed = locus(tmp_path / "home", "docs", "list").stdout
    assert any("ferry.md" in line and " done " in line for line in listed.splitlines()), listed


def test_locus_index_names_the_links_it_did_not_follow(tmp_path):
    from tests.engine.rag.test_loaders import link_tree

    root = link_tree(tmp_path / "tree")
    indexed = locus(tmp_path / "home", "index", str(root))
    assert indexed.returncode == 0, indexed.stderr
    assert "Indexed 1 file(s)" in indexed.stderr and "8 link(s) not followed" in indexed.stderr, indexed.stderr
    lines = indexed.stderr.splitlines()
    assert (
        f"  skipped: {root / 'cfg'}: link leaves the folder: '{root / 'cfg'}' was not followed: it leads to "
        f"'{(tmp_path / 'tree' / '.docker').resolve()}', outside '{root.resolve()}'." in " ".join(lines)
    )
    assert any(line.startswith(f"  skipped: {root / 'private'}: link into a hidden folder:") for line in lines)
    listed = locus(tmp_path / "home", "docs", "list").stdout
    assert "real.md" in listed and "config.json" not in listed and "keys.md" not in listed


def test_sources_list_every_passage_given_and_say_when_the_answer_rests_on_none(capsys):
    from app.cli.common import print_sources
    from engine.rag.cite import Citation
    from engine.rag.retrieve import Passage, Retrieval

    def passage(n: int, text: str) -> Passage:
        where = dict(page=None, line_start=1, line_end=3, heading=None)
        return Passage(
            f"d{n}",
            f"/docs/{n}.md",
            f"{n}",
            "markdown",
            "default",
            **where,
            text=text,
            score=0.1,
            chunk_ids=(f"c{n}",),
            similarity=0.5,
        )

    given = (passage(1, "Ferries leave at 08:15. More text."), passage(2, "Buses run hourly.\x1b[31m red"))
    retrieval = Retrieval("when?", given, 2, 2)
    print_sources([], retrieval)
    out = capsys.readouterr().out
    assert out.index("[1] /docs/1.md, lines 1–3") < out.index("[2] /docs/2.md")
    assert "“Ferries leave at 08:15.”" in out and "\x1b" not in out  # document text is shown inert
    assert "The answer may not rest on these passages" in out and "rests on it)" not in out

    print_sources([Citation(2, given[1], "Buses run hourly.", explicit=True)], retrieval)
    out = capsys.readouterr().out
    assert out.index("[2] /docs/2.md, lines 1–3  (the answer rests on it)") < out.index("[1] /docs/1.md")
    assert "may not rest" not in out

    print_sources([], Retrieval("when?", (), 0, 0))
    assert "No passage in the documents matched this question." in capsys.readouterr().out
