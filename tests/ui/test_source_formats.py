"""The source viewer opens a PowerPoint, Excel, Word or e-mail source as the text the index holds for it, at the
cited slide, rows or attachment, highlighted, without parsing the file (or touching the index) on the GUI thread."""

from __future__ import annotations

import zipfile
from pathlib import Path

from engine.rag.cite import Citation
from tests.engine.rag import formats
from tests.ui.test_documents import drop

PPTX_MIME = "application/vnd.openxmlformats-officedocument.presentationml.presentation"


def docx(path: Path, paragraphs: list[str]) -> Path:
    body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "word/document.xml",
            '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
            f"<w:body>{body}</w:body></w:document>",
        )
    return path


def citation(library, question: str, name: str) -> dict:
    retrieval = library.retrieve(question, None, lambda t: len(t.split()), 4000, max_passages=8)
    passage = next(p for p in retrieval.passages if Path(p.path).name == name)
    return Citation(1, passage, passage.text.split("\n")[-1], explicit=True).to_dict()


def highlighted(viewer) -> list[str]:
    return [s.cursor.block().text() for s in viewer.text_view.extraSelections()]


def test_pptx_xlsx_docx_and_email_sources_open_at_their_place(qtbot, window, tmp_path, gui_guard):
    window.start()
    qtbot.waitUntil(lambda: window.documents.library is not None, timeout=60_000)
    library, panel = window.documents.library, window.documents.panel
    folder = tmp_path / "docs"
    folder.mkdir()
    deck = formats.pptx(
        folder / "review.pptx",
        [
            ("Welcome", ["Agenda for the review"]),
            ("Harbour revenue", ["Revenue from the harbour cranes grew by eleven percent"]),
            ("Next steps", ["Hire two welders before the winter"]),
        ],
    )
    rows = {1: ["Item", "Supplier", "Cost"], **{n: [f"Widget {n}", "Acme", n] for n in range(2, 80)}}
    rows[80] = ["Saffron crates", "Moreau Spices", 990]
    formats.xlsx(folder / "budget.xlsx", {"Notes": {1: ["Read me"]}, "Purchases": rows})
    docx(folder / "memo.docx", ["The printer on the third floor needs blue toner."])
    formats.eml(
        folder / "board.eml",
        formats.message("Board meeting", "Deck attached.", [("deck.pptx", deck.read_bytes(), PPTX_MIME)]),
    )
    drop(window, [folder])
    names = {"review.pptx", "budget.xlsx", "memo.docx", "board.eml"}
    qtbot.waitUntil(lambda: {(n, "default", "done") for n in names} <= set(panel.rows()), timeout=180_000)

    slide = citation(library, "How much did harbour crane revenue grow?", "review.pptx")
    assert slide["location"] == 'slide 2 "Harbour revenue"'
    sheet = citation(library, "Saffron crates from Moreau Spices", "budget.xlsx")
    assert sheet["location"].startswith('sheet "Purchases", rows ') and sheet["line_end"] == 80
    memo = citation(library, "printer toner", "memo.docx")
    attached = citation(library, "Hire two welders before the winter", "board.eml")

    with gui_guard:
        viewer = window.documents.open_source(slide)
        with qtbot.waitSignal(viewer.textShown, timeout=30_000):
            pass
    assert gui_guard.entered == [], "blocking work on the GUI thread:\n" + "\n".join(gui_guard.entered)
    text = viewer.text_view.toPlainText()
    assert '── slide 1 "Welcome" ──' in text and '── slide 3 "Next steps" ──' in text
    assert "Revenue from the harbour cranes grew by eleven percent" in highlighted(viewer)
    # Scrolled to the quoted sentence of the slide (the cursor sits on it, the view centred there).
    assert viewer.text_view.textCursor().block().text() == "Revenue from the harbour cranes grew by eleven percent"
    assert viewer.header.text() == 'review.pptx · slide 2 "Harbour revenue"'
    viewer.grab().save(str(tmp_path / "pptx.png"))
    viewer.close()

    viewer = window.documents.open_source(sheet)
    qtbot.waitSignal(viewer.textShown, timeout=30_000).wait()
    lines = viewer.text_view.toPlainText().split("\n")
    assert lines[lines.index('── sheet "Purchases" ──') + 1] == "Item | Supplier | Cost"  # the header, once
    assert lines.count("Item | Supplier | Cost") == 1
    marked = highlighted(viewer)
    assert marked[-1] == "Saffron crates | Moreau Spices | 990" and "Item | Supplier | Cost" not in marked
    assert len(marked) == sheet["line_end"] - sheet["line_start"] + 1  # exactly the cited rows
    assert viewer.current_line == lines.index("Saffron crates | Moreau Spices | 990") + 1  # the quoted row
    viewer.grab().save(str(tmp_path / "xlsx.png"))
    viewer.close()

    viewer = window.documents.open_source(memo)
    qtbot.waitSignal(viewer.textShown, timeout=30_000).wait()
    assert viewer.text_view.toPlainText() == "The printer on the third floor needs blue toner."  # not the zip's bytes
    viewer.close()

    viewer = window.documents.open_source(attached)
    qtbot.waitSignal(viewer.textShown, timeout=30_000).wait()
    text = viewer.text_view.toPlainText()
    assert '── message "Board meeting", attachment "deck.pptx", slide 3 "Next steps" ──' in text
    assert "Hire two welders before the winter" in highlighted(viewer)
    viewer.close()

    # Opened from the documents list (no citation): the text from the top; a removed document says so.
    viewer = window.documents.open_source({"path": str(folder / "budget.xlsx"), "kind": "xlsx", "location": ""})
    qtbot.waitSignal(viewer.textShown, timeout=30_000).wait()
    assert viewer.current_line == 1 and viewer.text_view.toPlainText().startswith('── sheet "Notes" ──')
    viewer.close()
    gone = dict(slide, doc_id="0" * 20, chunk_ids=[])
    viewer = window.documents.open_source(gone)
    qtbot.waitSignal(viewer.textShown, timeout=30_000).wait()
    assert "has no text in the index" in viewer.error


def test_the_add_documents_dialog_offers_every_readable_kind_then_all_files():
    from ui.documents_panel import document_filter

    documents, everything = document_filter().split(";;")
    assert everything == "All files (*)"
    for pattern in ("*.pdf", "*.docx", "*.odt", "*.epub", "*.pptx", "*.xlsx", "*.csv", "*.eml", "*.mbox", "*.md"):
        assert f" {pattern}" in documents or f"({pattern}" in documents
