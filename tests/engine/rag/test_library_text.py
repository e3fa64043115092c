"""A document's text rebuilt from its stored chunks: real files, the real embedder and LanceDB in a temp dir."""

from __future__ import annotations

import shutil

import pytest

from engine.errors import NotFoundError
from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path
from engine.rag.library import DocumentLibrary
from engine.rag.loaders import load
from engine.rag.store import doc_id_for
from tests.conftest import PDF_ODDITIES


def essay(paragraphs: int) -> str:
    """Many distinct paragraphs: long enough for several overlapping chunks of one section."""
    return "\n\n".join(
        f"Paragraph {i}. The keeper of light number {i} climbs {40 + i} steps each evening, trims the wick, "
        f"and writes the weather in a log that has been kept since {1800 + i}. Ships pass at dusk on day {i}."
        for i in range(paragraphs)
    )


def words(text: str) -> list[str]:
    return text.split()


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("library-text")
    docs = root / "docs"
    docs.mkdir()
    (docs / "long.md").write_text("# Lights\n\n" + essay(30) + "\n\n## Later\n\n" + essay(3) + "\n", encoding="utf-8")
    (docs / "short.txt").write_text("The ferry leaves at nine.\n", encoding="utf-8")
    shutil.copy(PDF_ODDITIES / "Seige_of_Vicksburg_Sample_OCR.pdf", docs / "siege.pdf")
    (root / "other").mkdir()
    (root / "other" / "elsewhere.txt").write_text("Not in the collection.\n", encoding="utf-8")
    library = DocumentLibrary(root / "index", bundled_embedder_path(), BUNDLED_EMBEDDER_NAME, parse_timeout_s=60)
    assert library.index([docs], "notes").wait(300).indexed == 3
    assert library.index([root / "other"], "other").wait(300).indexed == 1
    yield library, docs
    library.close()


def test_document_text_is_the_file_text_without_repeated_overlap(indexed):
    library, docs = indexed
    record, text = library.document_text(str(docs / "long.md"))
    assert record.path == str(docs / "long.md") and record.n_chunks > 5  # several overlapping chunks
    assert words(text) == words((docs / "long.md").read_text(encoding="utf-8"))
    same, again = library.document_text(record.doc_id)  # by id too
    assert same == record and again == text


def test_pdf_pages_are_joined_whole_and_in_order(indexed):
    library, docs = indexed
    record, text = library.document_text(str(docs / "siege.pdf"))
    expected = [s.text for s in load(docs / "siege.pdf").sections]
    assert record.pages == len(expected) > 1
    assert words(text) == words("\n\n".join(expected))


def test_collection_text_is_each_document_in_path_order(indexed):
    library, docs = indexed
    pairs = library.collection_text("notes")
    assert [r.path for r, _ in pairs] == sorted(str(docs / n) for n in ("long.md", "short.txt", "siege.pdf"))
    assert dict((r.path, t) for r, t in pairs)[str(docs / "short.txt")] == "The ferry leaves at nine."


def test_unknown_document_or_collection_says_so(indexed):
    library, docs = indexed
    with pytest.raises(NotFoundError, match=r"No indexed document is '/no/such\.txt'"):
        library.document_text("/no/such.txt")
    with pytest.raises(NotFoundError, match="No indexed document"):
        library.document_text(doc_id_for(docs / "never-indexed.txt"))
    with pytest.raises(NotFoundError, match="no document collection 'nope'") as missing:
        library.collection_text("nope")
    assert "notes" in missing.value.hint and "other" in missing.value.hint
