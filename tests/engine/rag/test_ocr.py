"""OCR: scanned PDF pages and images become searchable text, made here from rendered text, read in the
real parse workers by RapidOCR's bundled models, indexed into a real LanceDB with the real embedder."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter

from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path
from engine.rag.isolation import ParsePool
from engine.rag.library import DocumentLibrary
from engine.rag.loaders import DocumentError, kind_for, load
from tests.conftest import PDF_ODDITIES
from tests.engine.rag.scans import page, scanned_pdf

TEXT_PDF = PDF_ODDITIES / "crazyones.pdf"  # a text layer: "misfits", "rebels", "troublemakers" on page 1
SLOW = "tests.engine.rag.ocr_progress_loader:slow_pages"


def mixed_pdf(path: Path, word: str) -> Path:
    """crazyones.pdf's text-layer page, then one scanned page."""
    scan = io.BytesIO()
    page("An appendix that was scanned.", f"Its codeword is {word}.").save(scan, "PDF", resolution=150)
    writer = PdfWriter()
    writer.append(PdfReader(TEXT_PDF))
    writer.append(PdfReader(scan))
    with open(path, "wb") as fh:
        writer.write(fh)
    return path


def open_library(tmp_path: Path, ocr: bool) -> DocumentLibrary:
    return DocumentLibrary(
        tmp_path / "index", bundled_embedder_path(), BUNDLED_EMBEDDER_NAME, parse_timeout_s=120, ocr=ocr
    )


def records(lib) -> dict:
    return {Path(r.path).name: r for r in lib.documents()}


def top_hit(lib, query: str):
    hits = lib.store.text_search(query, 5)
    assert hits, f"nothing found for {query!r}"
    return hits[0]


def test_scans_and_images_are_read_by_ocr_with_their_page_numbers(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    scanned_pdf(docs / "scan.pdf", ["marmalade", "telescope", "pineapple"])
    mixed_pdf(docs / "mixed.pdf", "lighthouse")
    shutil.copy(TEXT_PDF, docs / "crazyones.pdf")
    page("A photo of a notice board.", "Choir practice is on Wednesday.").save(docs / "notice.png")
    page("A receipt from the bakery.", "Two loaves of sourdough bread.").convert("RGB").save(docs / "receipt.jpg")
    frames = [page("First sheet of the fax.", "It mentions a giraffe."), page("Second sheet.", "It mentions a walrus.")]
    frames[0].save(docs / "fax.tiff", save_all=True, append_images=frames[1:])
    assert {kind_for(p) for p in docs.iterdir()} == {"pdf", "image"}

    lib = open_library(tmp_path, ocr=True)
    try:
        result = lib.index([docs]).wait(1200)
        assert result.indexed == 6 and result.failed == 0, records(lib)
        status = {name: (r.status, r.reason) for name, r in records(lib).items()}
        assert status == {
            "scan.pdf": ("done", "OCR 3 pages"),
            "mixed.pdf": ("done", "OCR 1 page"),  # its text-layer page is read from the layer
            "crazyones.pdf": ("done", ""),  # a text layer: never OCR'd
            "notice.png": ("done", "OCR 1 page"),
            "receipt.jpg": ("done", "OCR 1 page"),
            "fax.tiff": ("done", "OCR 2 pages"),
        }
        assert records(lib)["scan.pdf"].message == "3 of 3 pages had no text layer and were read by OCR."
        for word, number in (("marmalade", 1), ("telescope", 2), ("pineapple", 3)):
            hit = top_hit(lib, word)
            assert hit.path.endswith("scan.pdf") and hit.page == number and word in hit.text
        assert (top_hit(lib, "lighthouse").path, top_hit(lib, "lighthouse").page) == (str(docs / "mixed.pdf"), 2)
        text_page = [h for h in lib.store.text_search("misfits rebels troublemakers", 10) if "mixed" in h.path]
        assert text_page and text_page[0].page == 1
        assert top_hit(lib, "choir practice Wednesday").path.endswith("notice.png")
        assert top_hit(lib, "sourdough").path.endswith("receipt.jpg")
        assert (top_hit(lib, "giraffe").page, top_hit(lib, "walrus").page) == (1, 2)
        assert top_hit(lib, "walrus").path.endswith("fax.tiff")
    finally:
        lib.close()


def test_ocr_off_skips_scans_and_images_with_the_reason(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    scanned_pdf(docs / "scan.pdf", ["marmalade"])
    page("A photo of a notice board.").save(docs / "notice.png")
    shutil.copy(TEXT_PDF, docs / "crazyones.pdf")
    lib = open_library(tmp_path, ocr=False)
    try:
        events = []
        result = lib.index([docs], on_event=events.append).wait(600)
        assert result.indexed == 1
        found = records(lib)
        assert (found["crazyones.pdf"].status, found["crazyones.pdf"].reason) == ("done", "")
        for name in ("scan.pdf", "notice.png"):
            assert (found[name].status, found[name].reason) == ("skipped", "OCR is off")
            assert "OCR is off" in found[name].message and found[name].n_chunks == 0
        assert "scanned pages without a text layer; OCR is off" in found["scan.pdf"].message
        assert not lib.store.text_search("marmalade", 5)
    finally:
        lib.close()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads which libraries a worker has loaded")
def test_workers_load_the_ocr_engine_only_for_a_page_without_text(tmp_path):
    def loaded(pid: int) -> bool:
        maps = Path(f"/proc/{pid}/maps").read_text()
        return "onnxruntime" in maps or "cv2" in maps

    note = tmp_path / "note.txt"
    note.write_text("Plain text needs no OCR.", encoding="utf-8")
    page("Scanned words to read.").save(tmp_path / "scan.png")
    with ParsePool(timeout_s=120, ocr=True) as pool:
        for path in (TEXT_PDF, note):
            outcome = pool.parse(path)
            assert outcome.error is None and outcome.document.ocr_pages == 0
        (pid,) = pool.worker_pids()
        assert not loaded(pid)  # a text layer was read, and OCR never even imported
        outcome = pool.parse(tmp_path / "scan.png")
        assert outcome.document.ocr_pages == 1 and "Scanned words" in outcome.document.sections[0].text
        assert pool.worker_pids() == [pid] and loaded(pid)


def test_damaged_foreign_and_oversized_images_fail_with_their_reason(tmp_path):
    good = io.BytesIO()
    page("Half of this image is missing.").save(good, "PNG")
    (tmp_path / "torn.png").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (tmp_path / "letter.jpg").write_text("Dear friend, this is text.", encoding="utf-8")
    Image.new("1", (10_000, 10_000), 1).save(tmp_path / "bomb.png")  # 100 million pixels in a few kB
    Image.new("L", (800, 600), 255).save(tmp_path / "blank.png")
    with ParsePool(timeout_s=120, ocr=True) as pool:
        outcomes = {Path(o.path).name: o for o in pool.parse_many(sorted(tmp_path.iterdir()))}
    reasons = {name: o.error.status for name, o in outcomes.items()}
    assert reasons == {
        "torn.png": "damaged",
        "letter.jpg": "not a PNG, JPEG or TIFF file",
        "bomb.png": "too large",
        "blank.png": "empty",
    }
    assert "'torn.png' is a damaged image" in outcomes["torn.png"].error.message
    assert "million" in outcomes["bomb.png"].error.message


def test_a_long_ocr_job_that_keeps_reading_pages_outlives_the_time_limit(tmp_path):
    # Twelve steps of 0.25 s: 3 s in all, against a 1.5 s limit. Reported as pages read (as OCR does),
    # each restarts the limit; silent, the same work is a hang and is given up.
    # A page that never ends after three that did is given up, saying so.
    for name in ("pages-12.txt", "silent-12.txt", "stall-3.txt"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    with ParsePool(timeout_s=1.5, loader=SLOW, ocr=True) as pool:
        moving = pool.parse(tmp_path / "pages-12.txt")
        silent = pool.parse(tmp_path / "silent-12.txt")
        stalled = pool.parse(tmp_path / "stall-3.txt")
    assert moving.error is None and moving.document.sections[0].text == "12 steps"
    assert silent.error is not None and silent.error.status == "timed out"
    assert "'silent-12.txt' took longer than 1.5 s to read" in silent.error.message
    assert stalled.error.status == "timed out"
    assert "after OCR had read 3 of its pages: the next one took longer than 1.5 s" in stalled.error.message


def test_without_an_ocr_choice_a_scan_is_empty_as_before(tmp_path):
    path = scanned_pdf(tmp_path / "scan.pdf", ["marmalade"])
    with pytest.raises(DocumentError) as info:
        load(path)
    assert info.value.status == "empty" and "without a text layer" in info.value.message


def test_pages_past_the_ocr_limit_are_named_in_the_status_not_dropped_silently(tmp_path, monkeypatch):
    from engine.rag import ocr
    from engine.rag.indexer import ocr_message

    monkeypatch.setattr(ocr, "MAX_OCR_PAGES", 1)  # read in-process here: the loader takes the limit at call time
    scan = scanned_pdf(tmp_path / "scan.pdf", ["harbour", "lantern"])
    document = load(scan, ocr=True)
    assert document.ocr_pages == 1 and document.ocr_left_out == 1
    assert [s.page for s in document.sections] == [1]
    message = ocr_message(document)
    assert "1 more pages without a text layer were not read" in message and "at most 1 pages" in message


def test_the_commands_that_read_one_file_read_a_scan_by_ocr_when_it_is_on(tmp_path):
    from app.cli.common import read_file

    scan = scanned_pdf(tmp_path / "scan.pdf", ["harbour"])
    assert "harbour" in read_file(str(scan), 120, ocr=True).lower()
    with pytest.raises(DocumentError) as off:
        read_file(str(scan), 120, ocr=False)
    assert "OCR is off" in off.value.user_text()


def test_sixteen_bit_greyscale_and_transparent_images_are_read_not_blank():
    import numpy as np

    from engine.rag import ocr

    # A 16-bit scan whose ink is not pure black (grey 20000 on 60000): clipped to 8 bits, it is all white.
    grey = 20000 + np.asarray(page("A sixteen bit scan.", "The codeword is quartz."), dtype=np.uint32) * 40000 // 255
    wide = Image.fromarray(grey.astype(np.uint16))
    assert wide.mode == "I;16"
    assert "quartz" in ocr.read_image(wide).lower()
    ink = 255 - np.asarray(page("A transparent sticker.", "The codeword is violin."))
    clear = np.zeros((*ink.shape, 4), dtype=np.uint8)
    clear[..., 3] = ink  # black letters on nothing: only the alpha channel draws them
    assert "violin" in ocr.read_image(Image.fromarray(clear)).lower()


def test_a_mailbox_shares_one_ocr_page_limit_and_names_what_it_left_out(tmp_path, monkeypatch):
    from engine.rag import ocr
    from tests.engine.rag import formats

    monkeypatch.setattr(ocr, "MAX_OCR_PAGES", 1)  # read in-process: the loaders take the limit at call time
    scans = []
    for n, word in enumerate(("walnut", "cobalt"), start=1):
        buffer = io.BytesIO()
        page("A scanned notice.", f"The codeword is {word}.").save(buffer, "PNG")
        scans.append(
            formats.message(f"Notice {n}", "see the scan", [(f"scan-{n}.png", buffer.getvalue(), "image/png")])
        )
    tiff = io.BytesIO()
    frames = [page(f"Frame {n}.") for n in (1, 2)]
    frames[0].save(tiff, "TIFF", save_all=True, append_images=frames[1:])
    document = load(formats.mbox(tmp_path / "scans.mbox", scans), ocr=True)
    text = "\n".join(s.text for s in document.sections).lower()
    assert "walnut" in text and "cobalt" not in text and document.ocr_pages == 1
    assert '"scan-2.png" (ocr page limit)' in text
    (tmp_path / "frames.tif").write_bytes(tiff.getvalue())
    framed = load(tmp_path / "frames.tif", ocr=True)
    assert framed.ocr_pages == 1 and framed.ocr_left_out == 1


def test_a_pdf_read_by_ocr_and_found_empty_says_so(tmp_path):
    blank = tmp_path / "blank.pdf"
    Image.new("L", (600, 800), 255).save(blank, "PDF", resolution=72)
    with pytest.raises(DocumentError) as info:
        load(blank, ocr=True)
    assert "OCR read its pages without a text layer and found no text" in info.value.message
