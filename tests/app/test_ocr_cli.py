"""OCR from the terminal: `locus index` and `locus docs list` say which documents OCR read and how many
pages, and with OCR turned off in config.toml scans are skipped with the reason."""

from __future__ import annotations

from tests.app.helpers import locus
from tests.engine.rag.scans import page, scanned_pdf


def test_index_says_what_ocr_read_and_skips_scans_when_it_is_off(tmp_path):
    home, docs = tmp_path / "home", tmp_path / "docs"
    docs.mkdir()
    page("A photo of the notice board.", "Choir practice is on Wednesday.").save(docs / "notice.png")
    (docs / "plain.txt").write_text("The ferry leaves at nine.\n", encoding="utf-8")
    indexed = locus(home, "index", str(docs))
    assert indexed.returncode == 0, indexed.stderr
    assert "Indexed 2 file(s)" in indexed.stderr
    assert f"indexed · OCR 1 page: {docs / 'notice.png'}" in indexed.stderr
    listed = locus(home, "docs", "list").stdout.splitlines()
    assert any("notice.png" in ln and "done" in ln and ln.endswith("chunks, OCR 1 page)") for ln in listed), listed
    assert any("plain.txt" in ln and ln.endswith("1 chunks)") for ln in listed), listed

    (home / "config.toml").write_text("[documents]\nocr = false\n", encoding="utf-8")
    scanned_pdf(docs / "scan.pdf", ["marmalade"])
    again = locus(home, "index", str(docs))
    assert again.returncode == 0, again.stderr
    assert "2 unchanged" in again.stderr  # the image OCR read before stays indexed
    assert (
        f"skipped: {docs / 'scan.pdf'}: OCR is off: 'scan.pdf' was skipped: scanned pages without a text "
        "layer; OCR is off." in again.stderr
    )
    listed = locus(home, "docs", "list").stdout.splitlines()
    assert any("scan.pdf" in ln and "skipped" in ln and "OCR is off" in ln for ln in listed), listed
