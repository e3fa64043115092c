"""A source names a document the index read, by its absolute path. A saved or imported source that names
anything else (a relative path, the kernel's /proc files, a device) is not opened from disk, and a text file
is read only up to the viewer's limit, whatever its size says."""

from __future__ import annotations

import os

import pytest

from ui.source_viewer import MAX_TEXT_BYTES, SourceViewer


@pytest.mark.parametrize(
    "path, said",
    [
        ("/proc/self/pagemap", "system file"),  # says size 0, holds gigabytes
        ("/proc/self/environ", "system file"),  # the window's environment
        ("/dev/zero", "system file"),
        ("/sys/kernel/mm/transparent_hugepage/enabled", "system file"),
        (".ssh/id_rsa", "names no document path"),
        ("notes.txt", "names no document path"),
    ],
)
def test_sources_that_name_no_document_are_not_opened(qtbot, path, said):
    viewer = SourceViewer({"path": path, "kind": "text", "line_start": 1})
    qtbot.addWidget(viewer)
    assert said in viewer.error and viewer.text_view is None


def test_a_link_into_proc_is_not_followed(qtbot, tmp_path):
    link = tmp_path / "innocent.txt"
    os.symlink("/proc/self/environ", link)
    viewer = SourceViewer({"path": str(link), "kind": "text", "line_start": 1})
    qtbot.addWidget(viewer)
    assert "system file" in viewer.error and viewer.text_view is None


def test_a_text_file_is_read_up_to_the_limit(qtbot, tmp_path):
    big = tmp_path / "big.txt"
    with big.open("wb") as file:
        file.truncate(MAX_TEXT_BYTES + 1)  # sparse: cheap to make
    viewer = SourceViewer({"path": str(big), "kind": "text", "line_start": 1})
    qtbot.addWidget(viewer)
    assert "too large" in viewer.error

    small = tmp_path / "small.txt"
    small.write_text("first\nsecond line\n")
    viewer = SourceViewer({"path": str(small), "kind": "text", "line_start": 2})
    qtbot.addWidget(viewer)
    assert viewer.error == "" and "second line" in viewer.text_view.toPlainText()


def test_an_imported_source_without_its_document_is_not_opened(qtbot):
    viewer = SourceViewer({"path": "", "imported": True, "kind": "text", "quote": "the ferry leaves at 7:40"})
    qtbot.addWidget(viewer)
    assert "imported conversation" in viewer.error and viewer.text_view is None
