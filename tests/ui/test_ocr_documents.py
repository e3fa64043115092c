"""OCR in the window: a scanned image dropped on it is read and its row says "OCR"; with OCR turned off in
the settings, a scanned PDF is skipped and its row says why."""

from __future__ import annotations

from tests.engine.rag.scans import page, scanned_pdf
from tests.ui.test_documents import drop
from ui.ops import wait_for_background


def test_the_documents_panel_says_what_ocr_read_and_what_it_skipped(qtbot, window, services, tmp_path):
    window.start()
    qtbot.waitUntil(lambda: window.documents.library is not None, timeout=60_000)
    panel = window.documents.panel
    window.documents.dock.show()
    notice = tmp_path / "notice.png"
    page("A photo of the notice board.", "Choir practice is on Wednesday.").save(notice)
    drop(window, [notice])
    qtbot.waitUntil(lambda: ("notice.png", "default", "done · OCR 1 page") in panel.rows(), timeout=300_000)
    row = panel.item_for(window.documents.library.find(str(notice)).doc_id)
    assert "The image's text was read by OCR." in row.toolTip(2)

    services.apply_setting_values({"documents.ocr": False})  # as Settings › Documents saves it
    wait_for_background()
    scan = scanned_pdf(tmp_path / "scan.pdf", ["marmalade"])
    drop(window, [scan])
    qtbot.waitUntil(lambda: ("scan.pdf", "default", "skipped: OCR is off") in panel.rows(), timeout=300_000)
    row = panel.item_for(window.documents.library.find(str(scan)).doc_id)
    assert "scanned pages without a text layer; OCR is off" in row.toolTip(2)
    window.documents.dock.grab().save(str(tmp_path / "ocr-panel.png"))
