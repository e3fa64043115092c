"""Chunking with the real MiniLM tokenizer: sizes, overlap, boundaries and provenance."""

from __future__ import annotations

import itertools

import pytest

from engine.models.bundled import bundled_embedder_path
from engine.rag.chunk import Chunker
from engine.rag.loaders import LoadedDocument, Section


@pytest.fixture(scope="module")
def chunker():
    return Chunker(bundled_embedder_path() / "tokenizer.json", max_tokens=64, overlap_tokens=12)


def doc(*sections, kind="text"):
    return LoadedDocument(path="/tmp/x", kind=kind, title="x", sections=tuple(sections))


def test_small_sections_become_one_chunk_each_with_their_provenance(chunker):
    chunks = chunker.chunk(
        doc(Section("First page text.", page=1, heading="Intro"), Section("Second page text.", page=2))
    )
    assert [(c.text, c.page, c.heading, c.index) for c in chunks] == [
        ("First page text.", 1, "Intro", 0),
        ("Second page text.", 2, None, 1),
    ]
    assert all(0 < c.n_tokens <= 64 for c in chunks)


def test_long_text_splits_at_paragraphs_with_overlap_and_exact_lines(chunker):
    paragraphs = [f"Paragraph {i} talks about topic number {i} in some detail, with several words." for i in range(12)]
    text = "\n\n".join(paragraphs)
    chunks = chunker.chunk(doc(Section(text, line_start=10, line_end=10 + text.count("\n"))))
    assert len(chunks) > 2
    lines = text.split("\n")
    for c in chunks:
        assert c.n_tokens <= 64
        assert chunker.count(c.text) == c.n_tokens
        # the chunk lies within the file's lines line_start..line_end, starting on the first one
        span = "\n".join(lines[c.line_start - 10 : c.line_end - 10 + 1])
        assert c.text in span
        assert c.text.split("\n")[0] in lines[c.line_start - 10]
        assert c.text.split("\n")[-1] in lines[c.line_end - 10]
    for before, after in itertools.pairwise(chunks):
        # consecutive chunks share text (the overlap) and never skip any
        assert after.text[:20] in before.text
    covered = " ".join(c.text for c in chunks)
    assert all(p in covered for p in paragraphs)


def test_a_giant_paragraph_is_cut_at_sentences_then_tokens(chunker):
    sentences = " ".join(f"Sentence {i} is here." for i in range(60))
    word_soup = "x" * 2000
    chunks = chunker.chunk(doc(Section(sentences + "\n\n" + word_soup, page=3)))
    assert all(c.n_tokens <= 64 and c.page == 3 for c in chunks)
    assert any(c.text.startswith("Sentence") and c.text.rstrip().endswith(".") for c in chunks)


def test_empty_and_whitespace_sections_give_nothing(chunker):
    assert chunker.chunk(doc(Section("   \n\n  ", page=1))) == []


def test_overlap_must_be_smaller_than_half_a_chunk():
    with pytest.raises(ValueError):
        Chunker(bundled_embedder_path() / "tokenizer.json", max_tokens=40, overlap_tokens=30)
