"""The rule of ui/plain.py and ui/safe_text.py, as a scan of ui/: data reaches the screen as words.

Qt renders anything that looks like HTML in a QLabel, a tooltip or a message box, and rendered HTML
loads the images it names. So in ui/ (outside the two modules that implement the safe forms):
- labels are made with plain_label (or rich_label, for markup whose values are escaped);
- a tooltip, status tip or "What's this" is a fixed string or literal(...), in widgets and in models;
- message boxes come from ui.plain (message_box, confirm) or take fixed / literal(...) text;
- rich text is shown only by SafeTextBrowser: no QTextBrowser, QTextEdit or QTextDocument of one's
  own, no setHtml/setMarkdown/insertHtml outside it, no text format switched to rich or automatic;
- links open only through ui/web_links.py (no setOpenExternalLinks(True), no QDesktopServices.openUrl).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXEMPT = {
    "ui/plain.py",
    "ui/safe_text.py",
    "ui/web_links.py",
    # A conversation laid out for a PDF file, never shown on screen: its QTextDocument reads Markdown without
    # HTML and refuses every resource (tests/ui/test_export_pdf.py).
    "ui/export_pdf.py",
}
TIP_SETTERS = {"setToolTip", "setStatusTip", "setWhatsThis"}
RICH_SETTERS = {"setHtml", "setMarkdown", "insertHtml", "fromHtml", "fromMarkdown"}
RICH_VIEWS = {"QTextBrowser", "QTextEdit", "QTextDocument", "QLabel", "QMessageBox", "QProgressDialog", "QErrorMessage"}
BOX_STATICS = {"question", "information", "warning", "critical", "about"}
ESCAPERS = {"literal", "plain_label", "rich_label", "mnemonic_safe"}


def _name(node: ast.AST) -> str:
    """'QLabel' for QLabel(...), 'setToolTip' for x.setToolTip(...)."""
    return getattr(node, "attr", getattr(node, "id", ""))


def _is_fixed(node: ast.AST) -> bool:
    """A fixed string (or a choice between fixed strings), or a value an escaper made."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.IfExp):
        return _is_fixed(node.body) and _is_fixed(node.orelse)
    if isinstance(node, ast.Call):
        return _name(node.func) in ESCAPERS
    return False


def _mentions(node: ast.AST, attribute: str) -> bool:
    return any(_name(n) == attribute for n in ast.walk(node))


def problems_in(path: Path, relative: str) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{relative}:{node.lineno} {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if _name(base) in RICH_VIEWS:
                    report(node, f"subclasses {_name(base)}")
        elif isinstance(node, ast.If) and _mentions(node.test, "ToolTipRole"):
            for inner in ast.walk(ast.Module(body=node.body, type_ignores=[])):
                if isinstance(inner, ast.Return) and inner.value is not None and not _is_fixed(inner.value):
                    report(inner, "returns a tooltip that is not literal(...)")
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        owner = _name(getattr(node.func, "value", None)) if isinstance(node.func, ast.Attribute) else ""
        if isinstance(node.func, ast.Name) and name in RICH_VIEWS:
            report(node, f"makes a {name} (use ui.plain or ui.safe_text)")
        elif name in TIP_SETTERS and node.args and not _is_fixed(node.args[-1]):
            report(node, f"{name} with text that is not literal(...)")
        elif name in RICH_SETTERS:
            report(node, f"{name} outside SafeTextBrowser")
        elif owner == "QMessageBox" and name in BOX_STATICS and not all(_is_fixed(a) for a in node.args[1:]):
            report(node, f"QMessageBox.{name} with text that is not literal(...)")
        elif owner == "QInputDialog" and not all(_is_fixed(a) for a in node.args[1:3]):
            report(node, f"QInputDialog.{name} with a label that is not fixed")
        elif name == "addRow" and len(node.args) == 2 and not isinstance(node.args[0], (ast.Constant, ast.Call)):
            report(node, "addRow with a label that is not fixed (Qt makes it an automatic-format QLabel)")
        elif name == "setTextFormat" and not (node.args and _name(node.args[0]) == "PlainText"):
            report(node, "a text format other than PlainText")
        elif name == "setOpenExternalLinks" and not (
            node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value is False
        ):
            report(node, "opens links by itself")
        elif name == "openUrl":
            report(node, "opens a URL outside ui/web_links.py")
        elif owner == "QToolTip" and name == "showText" and not (len(node.args) > 1 and _is_fixed(node.args[1])):
            report(node, "QToolTip.showText with text that is not literal(...)")
    return found


def violations(root: Path | None = None) -> list[str]:
    root = root or REPO
    out = []
    for path in sorted((root / "ui").rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative not in EXEMPT:
            out += problems_in(path, relative)
    return out


def test_ui_shows_data_as_plain_text():
    assert violations() == []


def test_the_scan_sees_each_risky_call(tmp_path, monkeypatch):
    """Each form the rule forbids, once: the scan must report every one (or the test above proves nothing)."""
    fake = tmp_path / "ui"
    fake.mkdir()
    (fake / "bad.py").write_text(
        "label = QLabel(name)\n"  # 1 a label in automatic format
        "button.setToolTip(path)\n"  # 2 a tooltip of data
        "item.setToolTip(0, f'{path}')\n"  # 3 an item's tooltip of data
        "view.setHtml(answer)\n"  # 4 rich text outside the safe view
        "QMessageBox.question(self, 'Delete', f'Delete {name}?')\n"  # 5 a message box guessing the format
        "box = QMessageBox(self)\n"  # 6 a message box of one's own
        "form.addRow(name, editor)\n"  # 7 an automatic label made by the form
        "label.setTextFormat(Qt.TextFormat.RichText)\n"  # 8 rich text switched on
        "view.setOpenExternalLinks(True)\n"  # 9 links opened by Qt
        "QDesktopServices.openUrl(url)\n"  # 10 a URL opened directly
        "class View(QTextBrowser):\n    pass\n"  # 11 a rich view of one's own
        "def data(index, role):\n"
        "    if role == Qt.ItemDataRole.ToolTipRole:\n"
        "        return row.summary\n"  # 12 a model's tooltip of data
        "QToolTip.showText(pos, text)\n"  # 13 a tooltip shown directly
        "ok = button.setToolTip(literal(path))\n"  # fine
        "label = plain_label(name)\n",
        encoding="utf-8",
    )  # fine
    assert len(violations(tmp_path)) == 13, violations(tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert len(violations()) == 13
