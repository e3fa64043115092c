"""PDF export: Qt lays the Markdown out, pypdf reads the text back, and nothing the text points at is loaded."""

from __future__ import annotations

import re
import unicodedata

import pypdf

from engine.history.export import export_markdown
from engine.history.store import HistoryStore
from ui.export_pdf import write_pdf


def test_a_conversation_as_pdf_opens_and_loads_nothing_it_names(qapp, tmp_path):
    picture = tmp_path / "secret.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n")
    store = HistoryStore(tmp_path / "h.sqlite3")
    c = store.create_conversation("Hostile text")
    store.add_message(c.id, "user", "Show me <b>bold</b> and an image")
    store.add_message(
        c.id,
        "assistant",
        f"Here: ![a](http://127.0.0.1:9/track.png) ![b]({picture.as_uri()}) <img src='{picture.as_uri()}'>\n\n"
        "```python\nprint('kept')\n```\n\nÜnïcödé ✓",
    )
    markdown = export_markdown(store, [c.id])
    store.close()
    out = tmp_path / "c.pdf"
    doc = write_pdf(markdown, out, title="Hostile text")
    assert {"http://127.0.0.1:9/track.png", picture.as_uri()} <= doc.refused
    reader = pypdf.PdfReader(str(out))
    assert reader.metadata.title == "Hostile text"
    text = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", " ".join(p.extract_text() for p in reader.pages)))
    assert "Hostile text" in text and "print('kept')" in text and "Ünïcödé" in text
    assert "<b>bold</b>" in text  # HTML in a message is shown as text, not obeyed
    assert not list(tmp_path.glob(".*.part"))
