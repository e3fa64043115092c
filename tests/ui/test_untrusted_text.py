"""Model answers and document text are untrusted: shown in the real window, they never read a file,
never render as markup where they should be words, and never open a link without asking.

The files a hostile answer points at are real: a named pipe whose writer (another process) notes every
open (tests/ui/conftest.py FifoTrap), /dev/zero under an address-space limit, and a relative name that
resolves to the pipe from the working folder.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6 import QtGui
from PySide6.QtCore import QEvent, QPoint, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QHelpEvent, QTextCursor, QTextDocument, QTextDocumentFragment
from PySide6.QtWidgets import QApplication, QLabel, QPlainTextEdit, QPushButton, QToolTip

from engine.rag.store import DocumentRecord
from engine.trace.store import SpanRecord
from ui.chat.message import ProseView
from ui.errors import show_error
from ui.quick_ask import QuickAsk
from ui.traces.detail import SpanDetail
from ui.traces.span_tree import SpanTree

REPO = Path(__file__).resolve().parents[2]


def hostile_answer(pipe: Path) -> str:
    return (
        f'Here is the chart: ![a chart of sales]({pipe}) and again <img src="{pipe}"> and '
        "![from a share](file://host/share/x.png) and ![relative](trap.png) [and a link](trap.png). "
        f"See [the source](https://example.org/a \"<img src='{pipe}'>\"). Done."
    )


def save_and_reopen(qtbot, window, services, answer: str, sources: list[dict] | None = None):
    """Save a conversation holding ``answer`` and open it from the sidebar, as after a restart."""
    conversation = services.history.create_conversation()
    services.history.add_message(conversation.id, "user", "What do the documents say?")
    saved = services.history.add_message(conversation.id, "assistant", answer)
    if sources:
        services.history.update_message(saved.id, sources=sources)
    window.refresh_conversations()
    qtbot.waitUntil(lambda: window.sidebar.item_for(conversation.id) is not None)
    window.sidebar.list.setCurrentItem(window.sidebar.item_for(conversation.id))
    qtbot.waitUntil(
        lambda: (
            len(window.chat.messages()) == 2
            and window.chat.messages()[1].text == answer
            and window.chat.messages()[1].isVisible()
        )  # shown by a queued call once added
    )
    return window.chat.messages()[1]


def shown(tip: str) -> str:
    """The words a tooltip or automatic-format label shows for ``tip`` (parsed, never laid out or loaded)."""
    return QTextDocumentFragment.fromHtml(tip).toPlainText() if QtGui.Qt.mightBeRichText(tip) else tip


def hover(qtbot, widget, pos: QPoint) -> str:
    """Hold the mouse over ``pos`` of ``widget`` as a user does until its tooltip shows; the tooltip's text."""
    qtbot.waitUntil(widget.isVisible)
    QToolTip.hideText()
    event = QHelpEvent(QEvent.Type.ToolTip, pos, widget.mapToGlobal(pos))
    QApplication.sendEvent(widget, event)
    return QToolTip.text() if QToolTip.isVisible() else ""


def anchor_pos(qtbot, view, href: str) -> QPoint:
    """Where in ``view``'s viewport the link to ``href`` is drawn (once the view is on screen)."""
    qtbot.waitUntil(view.isVisible)
    document = view.document()
    block = document.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            if fragment.charFormat().anchorHref() == href:
                cursor = QTextCursor(document)
                cursor.setPosition(fragment.position() + max(1, fragment.length() // 2))
                pos = view.cursorRect(cursor).center()
                assert view.anchorAt(pos) == href
                return pos
            it += 1
        block = block.next()
    raise AssertionError(f"no link to {href} in {view.toPlainText()!r}")


def click_link(qtbot, view, href: str) -> None:
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=anchor_pos(qtbot, view, href))


def visible(name: str):
    found = [w for w in QApplication.topLevelWidgets() if w.objectName() == name and w.isVisible()]
    return found[-1] if found else None


@pytest.fixture()
def opened_urls(monkeypatch):
    """QDesktopServices.openUrl recorded instead of run: there is no browser here."""
    calls: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: calls.append(url.toString()) or True)
    return calls


# Item 2: answers that point at files ---------------------------------------------------------------


@pytest.mark.timeout(120, method="thread")
def test_a_saved_answer_with_images_reopens_without_reading_any_file(
    qtbot, window, services, fifo_trap, monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)  # "trap.png" in the answer now names the pipe
    answer = hostile_answer(fifo_trap.path)
    widget = save_and_reopen(qtbot, window, services, answer)
    picture = widget.grab()  # laid out and painted, as on screen
    assert fifo_trap.opened == 0, "the view opened a file named in the answer"
    prose = widget.segment_widgets()[0]
    assert isinstance(prose, ProseView)
    text = prose.shown_text()
    assert f'<img src="{fifo_trap.path}">' in text  # raw HTML in an answer is shown as the words it is
    assert "[image: a chart of sales]" in text and "[image: from a share]" in text and "[image: relative]" in text
    tip = hover(qtbot, prose.viewport(), anchor_pos(qtbot, prose, "https://example.org/a"))  # a title with markup
    assert "https://example.org/a" in shown(tip) and "<img" not in tip
    prose.selectAll()
    prose.copy()  # what is copied loads nothing where it is pasted either
    copied = QApplication.clipboard().mimeData()
    assert "[image: a chart of sales]" in copied.text() and "<img" not in copied.html()
    picture.save(str(tmp_path / "refused-image.png"))


@pytest.mark.timeout(120, method="thread")
def test_the_answer_views_own_resource_lookup_fetches_nothing(qtbot, window, services, fifo_trap, tmp_path):
    """Qt's documents look resources up themselves (resolving names against a base URL) and fall back to
    opening the path: asked directly, the views of an answer and of the quick ask return nothing."""
    prose = window.chat.add_message("assistant", "Some words.").segment_widgets()[0]
    popup = QuickAsk(services)
    qtbot.addWidget(popup)
    for view in (prose, popup.answer):
        document = view.document()
        base = QUrl.fromLocalFile(f"{tmp_path}/")
        document.setMetaInformation(QTextDocument.MetaInformation.DocumentUrl, base.toString())
        document.setBaseUrl(base)
        for name in (QUrl.fromLocalFile(str(fifo_trap.path)), QUrl("trap.png"), QUrl("file://host/share/x.png")):
            for kind in (
                QTextDocument.ResourceType.ImageResource,
                QTextDocument.ResourceType.StyleSheetResource,
                QTextDocument.ResourceType.HtmlResource,
            ):
                assert document.resource(kind, name) is None
                assert view.loadResource(kind, name) is None
    assert fifo_trap.opened == 0


@pytest.mark.timeout(120, method="thread")
def test_an_answer_pointing_at_dev_zero_renders_at_once(qtbot, window, services):
    """/dev/zero never ends: a view that read it would take all memory. The limit turns that into a crash
    of this test instead of the machine's memory; the fixed view never reads it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    in_use = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmSize:"))) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (in_use + 2**30, hard))
    try:
        widget = window.chat.add_message("assistant", "Look: ![zeros](/dev/zero) ![more](file:///dev/zero)")
        widget.grab()
        popup = QuickAsk(services)
        qtbot.addWidget(popup)
        popup.open()
        popup.answer.show_text("Quick: ![zeros](/dev/zero)")
        popup.grab()
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert "[image: zeros]" in widget.segment_widgets()[0].shown_text()
    assert "[image: zeros]" in popup.answer.shown_text()


@pytest.mark.timeout(120, method="thread")
def test_the_quick_ask_answer_reads_no_file_either(qtbot, services, fifo_trap, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    popup = QuickAsk(services)
    qtbot.addWidget(popup)
    popup.open()
    popup.answer.show_text(hostile_answer(fifo_trap.path))
    popup.answer.show()
    popup.grab()
    assert fifo_trap.opened == 0
    assert "[image: a chart of sales]" in popup.answer.shown_text()


# Item 3: document text and names are shown as plain text --------------------------------------------


@pytest.mark.timeout(120, method="thread")
def test_a_citation_quoting_markup_shows_the_words_and_opens_its_source(
    qtbot, window, services, fifo_trap, monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)
    document = tmp_path / "<img src=trap.png> notes.md"  # a legal file name that is also markup
    document.write_text("# Notes\n\nSee the chart here.\n", encoding="utf-8")
    quote = f'See <img src="{fifo_trap.path}"> here.'
    title = f'<img src="{fifo_trap.path}"> Annual report'
    source = {
        "number": 1,
        "path": str(document),
        "title": title,
        "kind": "markdown",
        "page": None,
        "line_start": 3,
        "line_end": 3,
        "location": "line 3",
        "quote": quote,
        "explicit": True,
    }
    widget = save_and_reopen(qtbot, window, services, "The notes say so [1].", [source])
    widget.grab()
    quotes = [label for label in widget.sources.findChildren(QLabel) if label.objectName() == "sourceQuote"]
    assert [label.text() for label in quotes] == [f"\u201c{quote}\u201d"]
    assert quotes[0].textFormat() == Qt.TextFormat.PlainText
    [button] = widget.sources.buttons()
    assert title in button.text().replace("&&", "&")
    tip = hover(qtbot, button, button.rect().center())
    assert str(document) in shown(tip)

    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    viewer = window.documents.viewers[-1]
    viewer.grab()
    labels = " ".join(label.text() for label in viewer.findChildren(QLabel))
    assert document.name in labels and all(
        label.textFormat() == Qt.TextFormat.PlainText for label in viewer.findChildren(QLabel)
    )
    assert fifo_trap.opened == 0


@pytest.mark.timeout(120, method="thread")
def test_names_and_messages_from_data_show_as_plain_text(qtbot, window, services, fifo_trap):
    markup = f'<img src="{fifo_trap.path}">'
    # A document whose name and failure message hold markup, in the Documents panel.
    record = DocumentRecord(
        doc_id="d1",
        path=f"/docs/{markup}.md",
        collection="default",
        title="",
        kind="markdown",
        status="failed",
        reason="unreadable",
        message=f"Could not read {markup}",
        content_hash="",
        size=1,
        mtime=0.0,
        n_chunks=0,
        pages=0,
        updated_at=0.0,
    )
    panel = window.documents.panel
    window.documents.dock.show()
    panel.set_documents([record])
    item = panel.tree.topLevelItem(0)
    for column in (0, 2):
        rect = panel.tree.visualItemRect(item)
        x = sum(panel.tree.columnWidth(c) for c in range(column)) + 5
        tip = hover(qtbot, panel.tree.viewport(), QPoint(x, rect.center().y()))
        assert (record.path if column == 0 else record.message) == shown(tip)
    # A conversation titled with markup, in the sidebar.
    conversation = services.history.create_conversation(markup)
    window.refresh_conversations()
    qtbot.waitUntil(lambda: window.sidebar.item_for(conversation.id) is not None)
    row = window.sidebar.list.visualItemRect(window.sidebar.item_for(conversation.id))
    assert shown(hover(qtbot, window.sidebar.list.viewport(), row.center())) == markup
    # An error message naming such a file.
    box = show_error(window, "Documents", f"Could not read {markup}.")
    box.grab()
    assert box.textFormat() == Qt.TextFormat.PlainText and markup in box.text()
    box.close()
    assert fifo_trap.opened == 0


@pytest.mark.timeout(120, method="thread")
def test_a_span_named_with_markup_shows_its_words_in_the_trace_viewer(qtbot, fifo_trap):
    """Span names, errors and attributes come from requests (the local API takes any model name)."""
    markup = f'<img src="{fifo_trap.path}">'
    span = SpanRecord(
        "a" * 32,
        "b" * 16,
        None,
        markup,
        "internal",
        0,
        2_000_000,
        "error",
        f"failed on {markup}",
        {"gen_ai.request.model": markup},
        [],
    )
    tree, detail = SpanTree(), SpanDetail()
    for widget in (tree, detail):
        qtbot.addWidget(widget)
        widget.show()
    tree.show_spans([span])
    detail.show_span(span, [span])
    detail.grab()
    tree.grab()
    header = QTextDocumentFragment.fromHtml(detail.header.text()).toPlainText()
    assert markup in header and f"failed on {markup}" in header
    item = tree.items()[0]
    assert markup in shown(hover(qtbot, tree.viewport(), tree.visualItemRect(item).center()))
    assert fifo_trap.opened == 0


# Item 4: links ask first, and only web links open ------------------------------------------------------


def test_a_file_link_in_an_answer_opens_nothing_and_says_so(qtbot, window, opened_urls):
    widget = window.chat.add_message("assistant", "Read [the notes](file:///etc/passwd) or [this](smb://host/x).")
    prose = widget.segment_widgets()[0]
    click_link(qtbot, prose, "file:///etc/passwd")
    qtbot.waitUntil(lambda: visible("linkRefused") is not None)
    box = visible("linkRefused")
    assert "file:///etc/passwd" in box.informativeText() and "only web links" in box.text()
    box.close()
    click_link(qtbot, prose, "smb://host/x")
    qtbot.waitUntil(lambda: visible("linkRefused") is not None)
    visible("linkRefused").close()
    assert opened_urls == []


def test_a_web_link_shows_its_real_target_and_opens_only_after_open(qtbot, window, opened_urls, tmp_path):
    target = "https://evil.example/login?next=%2Fhome"
    widget = window.chat.add_message("assistant", f"Sign in at [https://bank.example]({target}) today.")
    prose = widget.segment_widgets()[0]
    assert target in shown(hover(qtbot, prose.viewport(), anchor_pos(qtbot, prose, target)))

    click_link(qtbot, prose, target)
    qtbot.waitUntil(lambda: visible("linkDialog") is not None)
    dialog = visible("linkDialog")
    assert opened_urls == []  # asked, not opened
    shown_target = dialog.findChild(QPlainTextEdit, "linkTarget").toPlainText()
    labels = " ".join(label.text() for label in dialog.findChildren(QLabel))
    assert shown_target == target and "evil.example" in labels
    dialog.grab().save(str(tmp_path / "link-dialog.png"))
    qtbot.mouseClick(dialog.findChild(QPushButton, "cancelLink"), Qt.MouseButton.LeftButton)
    assert opened_urls == [] and not dialog.isVisible()

    click_link(qtbot, prose, target)
    qtbot.waitUntil(lambda: visible("linkDialog") is not None)
    qtbot.mouseClick(visible("linkDialog").findChild(QPushButton, "openLink"), Qt.MouseButton.LeftButton)
    assert opened_urls == [target]


def test_source_links_still_open_their_source(qtbot, window, tmp_path, opened_urls):
    note = tmp_path / "ferry.md"
    note.write_text("# Ferry\n\nIt leaves at 08:15.\n", encoding="utf-8")
    widget = window.chat.add_message("assistant", "It leaves at 08:15 [1].")
    widget.set_sources(
        [
            {
                "number": 1,
                "path": str(note),
                "title": "Ferry",
                "kind": "markdown",
                "line_start": 3,
                "line_end": 3,
                "location": "line 3",
                "quote": "It leaves at 08:15.",
                "explicit": True,
            }
        ]
    )
    with qtbot.waitSignal(window.chat.sourceClicked):
        click_link(qtbot, widget.segment_widgets()[0], "source:1")
    assert window.documents.viewers and opened_urls == []


def test_links_in_the_quick_ask_ask_first_too(qtbot, services, opened_urls):
    popup = QuickAsk(services)
    qtbot.addWidget(popup)
    popup.open()
    popup.answer.show_text("See [the file](file:///etc/hostname) or [the site](https://example.org/a).")
    popup.answer.show()
    before = popup.answer.toPlainText()
    click_link(qtbot, popup.answer, "file:///etc/hostname")
    qtbot.waitUntil(lambda: visible("linkRefused") is not None)
    visible("linkRefused").close()
    assert popup.answer.toPlainText() == before  # the file was not loaded into the view either
    click_link(qtbot, popup.answer, "https://example.org/a")
    qtbot.waitUntil(lambda: visible("linkDialog") is not None)
    assert opened_urls == []
    qtbot.mouseClick(visible("linkDialog").findChild(QPushButton, "openLink"), Qt.MouseButton.LeftButton)
    assert opened_urls == ["https://example.org/a"]


def test_screenshots(qtbot, window, opened_urls, fifo_trap, tmp_path):
    """Not a check: pictures of the refused image and the link question for the docs (kept by hand)."""
    window.resize(900, 560)
    widget = window.chat.add_message(
        "assistant",
        f"The report's chart: ![quarterly sales chart]({fifo_trap.path})\n\n"
        "Details are on [the vendor's site](https://vendor.example/q3-report?ref=locus).",
    )
    qtbot.waitUntil(lambda: widget.segment_widgets()[0].isVisible())
    window.grab().save(str(tmp_path / "answer-with-refused-image.png"))
    click_link(qtbot, widget.segment_widgets()[0], "https://vendor.example/q3-report?ref=locus")
    qtbot.waitUntil(lambda: visible("linkDialog") is not None)
    visible("linkDialog").grab().save(str(tmp_path / "link-dialog.png"))
    visible("linkDialog").close()
    assert fifo_trap.opened == 0 and opened_urls == []
    print("screenshots in", tmp_path)


def test_copying_from_an_answer_then_quitting_exits_cleanly(tmp_path):
    """The clipboard owns what a copy gave it and Qt frees it after Python has stopped: the process must
    still exit cleanly (it used to die of a segmentation fault at exit, after any copy from an answer)."""
    script = tmp_path / "copy_then_quit.py"
    script.write_text(
        "import sys\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from ui.safe_text import SafeTextBrowser\n"
        "app = QApplication(sys.argv)\n"
        "view = SafeTextBrowser()\n"
        "view.set_markdown('Some *answer* with ![a picture](/dev/zero) in it.')\n"
        "view.selectAll()\n"
        "view.copy()\n"
        "assert QApplication.clipboard().text().startswith('Some answer with [image: a picture]')\n"
        "print('copied')\n",
        encoding="utf-8",
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "copied"), done.stderr[-2000:]
