"""Loaders: turn a file into text sections that remember where they came from.

PDF (text per page), plain text, Markdown, reStructuredText, HTML (visible text),
DOCX, OpenDocument text, EPUB, PowerPoint, Excel and CSV, e-mail (.eml, .mbox)
and source code, one module per format. Text-like files keep their lines
exactly, so every section knows its line range; PDFs know their pages; the
others name their own kind of place (see ``base.describe_location``): a slide,
rows of a sheet, a chapter, a section, a message or an e-mail's attachment. A file
that cannot be read raises a DocumentError whose ``status`` says why in a word
or two ("password protected", "empty", "damaged", …) and whose message says it
in a sentence naming the file.
"""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.rag.loaders.base import (
    MAX_FILE_BYTES,
    CorruptDocument,
    DocumentError,
    EmptyDocument,
    LoadedDocument,
    ParserCrashed,
    ParseTimeout,
    PasswordProtected,
    Section,
    TooLarge,
    TooMuchMemory,
    UnreadableFile,
    UnsupportedFile,
    WrongFormat,
)
from engine.rag.loaders.docx import load_docx
from engine.rag.loaders.epub import load_epub
from engine.rag.loaders.html import load_html
from engine.rag.loaders.image import load_image
from engine.rag.loaders.mail import load_eml, load_mbox
from engine.rag.loaders.odt import load_odt
from engine.rag.loaders.pdf import load_pdf
from engine.rag.loaders.pptx import load_pptx
from engine.rag.loaders.sheets import load_csv, load_xlsx
from engine.rag.loaders.text import code_sections, first_heading, prose_sections

__all__ = [
    "CODE_LANGUAGES",
    "MAX_FILE_BYTES",
    "SKIPPED_DIRS",
    "SUPPORTED_SUFFIXES",
    "CorruptDocument",
    "DocumentError",
    "EmptyDocument",
    "LoadedDocument",
    "ParseTimeout",
    "ParserCrashed",
    "PasswordProtected",
    "Section",
    "SkippedLink",
    "TooLarge",
    "TooMuchMemory",
    "UnreadableFile",
    "UnsupportedFile",
    "WrongFormat",
    "decode_text",
    "discover",
    "kind_for",
    "load",
    "load_data",
]

CODE_LANGUAGES = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".java": "java",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".scala": "scala",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".cs": "csharp",
    ".go": "go",
    ".rs": "rust",
    ".rb": "ruby",
    ".php": "php",
    ".swift": "swift",
    ".m": "objective-c",
    ".sh": "bash",
    ".bash": "bash",
    ".zsh": "bash",
    ".ps1": "powershell",
    ".sql": "sql",
    ".r": "r",
    ".lua": "lua",
    ".pl": "perl",
    ".dart": "dart",
    ".ex": "elixir",
    ".exs": "elixir",
    ".erl": "erlang",
    ".hs": "haskell",
    ".ml": "ocaml",
    ".clj": "clojure",
    ".vue": "vue",
    ".svelte": "svelte",
    ".css": "css",
    ".scss": "scss",
    ".less": "less",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".json": "json",
    ".ini": "ini",
    ".cfg": "ini",
    ".xml": "xml",
    ".gradle": "groovy",
    ".cmake": "cmake",
    ".mk": "make",
    ".tf": "hcl",
    ".proto": "protobuf",
    ".graphql": "graphql",
    ".jl": "julia",
    ".zig": "zig",
}
_KINDS = {
    ".pdf": "pdf",
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "markdown",
    ".rst": "rst",
    ".txt": "text",
    ".text": "text",
    ".log": "text",
    ".csv": "csv",
    ".tsv": "csv",
    ".tex": "text",
    ".org": "text",
    ".adoc": "text",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".docx": "docx",
    ".odt": "odt",
    ".epub": "epub",
    ".pptx": "pptx",
    ".xlsx": "xlsx",
    ".eml": "email",
    ".mbox": "mbox",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".tif": "image",
    ".tiff": "image",
}
_CODE_NAMES = {"makefile": "make", "dockerfile": "dockerfile", "cmakelists.txt": "cmake"}
SUPPORTED_SUFFIXES = frozenset(_KINDS) | frozenset(CODE_LANGUAGES)
SUPPORTED_HINT = (
    "Supported: PDF, Word (.docx), OpenDocument text (.odt), EPUB, PowerPoint (.pptx), Excel (.xlsx), CSV, "
    "e-mail (.eml, .mbox), HTML, plain text, Markdown, reStructuredText, source code, and images (PNG, JPEG, "
    "TIFF) and scanned PDFs read by OCR when it is on."
)
_IO_REPARSE_TAG_MOUNT_POINT = 0xA0000003  # a Windows junction
SKIPPED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "__pycache__",
        "build",
        "dist",
        "target",
        ".venv",
        "venv",
        ".tox",
        ".mypy_cache",
        ".pytest_cache",
        "site-packages",
        ".idea",
        ".vscode",
    }
)


def kind_for(path: str | Path) -> str | None:
    """'pdf', 'markdown', …, 'code', or None when Locus cannot read this kind of file."""
    path = Path(path)
    if path.name.lower() in _CODE_NAMES:
        return "code"
    suffix = path.suffix.lower()
    return _KINDS.get(suffix) or ("code" if suffix in CODE_LANGUAGES else None)


@dataclass(frozen=True)
class SkippedLink:
    """A link inside an added folder that the walk did not follow, and why."""

    path: Path  # the link itself, where it sits in the folder (not resolved)
    target: Path  # where it leads, resolved (the link itself for a loop that never resolves)
    reason: str  # a few words: "link leaves the folder", "link into a hidden folder", …
    message: str  # a sentence naming the link and where it leads


def discover(paths: Iterable[str | Path], on_skip: Callable[[SkippedLink], None] | None = None) -> Iterator[Path]:
    """Every indexable file under the given files and folders, resolved, in a stable order.

    Folders recurse in name order, skipping hidden entries, version-control, build and dependency
    folders and files of kinds Locus does not read. A link (or Windows junction) inside a folder is
    followed only to where the walk itself would go: never out of the added folder, into a hidden or
    excluded folder, to a hidden file, or back up its own path (a loop); each of those is passed to
    ``on_skip``. A file named directly is yielded whenever it exists, supported or not, so that the
    caller reports it as "unsupported" instead of dropping what the user explicitly asked for; paths
    that do not exist are skipped.
    """
    seen: set[Path] = set()
    for given in paths:
        root = Path(given).expanduser()
        if root.is_file():
            if root.resolve() not in seen:
                seen.add(root.resolve())
                yield root.resolve()
            continue
        top = root.resolve() if root.is_dir() else None
        visited: set[Path] = set()
        stack = [top] if top is not None else []
        while top is not None and stack:
            folder = stack.pop()
            if folder in visited:  # reached again through a link inside the folder
                continue
            visited.add(folder)
            try:
                entries = sorted(folder.iterdir(), key=lambda p: p.name)
            except OSError:
                continue
            subfolders = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    target = _followed(top, folder, entry, on_skip)
                    if target is None:
                        continue
                    if target.is_dir():
                        if entry.name not in SKIPPED_DIRS:
                            subfolders.append(target)
                    elif target.is_file() and kind_for(target) is not None and target not in seen:
                        seen.add(target)
                        yield target
                except OSError:
                    continue
            stack.extend(reversed(subfolders))


def _followed(top: Path, folder: Path, entry: Path, on_skip: Callable[[SkippedLink], None] | None) -> Path | None:
    """Where a folder entry leads if the walk may go there, else None (a link refused is reported)."""
    if not _is_link(entry):
        return folder / entry.name
    try:
        target = entry.resolve(strict=True)
    except FileNotFoundError:
        return None  # a broken link: nothing there to index
    except (OSError, RuntimeError):  # ELOOP (or, before Python 3.13, RuntimeError): links in a circle
        target = None
    if target is None:
        reason, where = "link loop", "in a circle of links"
    elif not target.is_relative_to(top):
        reason, where = "link leaves the folder", f"to '{target}', outside '{top}'"
    elif target.is_dir() and folder.is_relative_to(target):
        reason, where = "link loop", f"back up to '{target}', a folder it is inside"
    else:
        inside = target.relative_to(top).parts
        if any(part.startswith(".") for part in inside[:-1]) or (target.is_dir() and inside[-1].startswith(".")):
            reason, where = "link into a hidden folder", f"into a hidden folder ('{target}')"
        elif inside[-1].startswith("."):
            reason, where = "link to a hidden file", f"to a hidden file ('{target}')"
        elif any(part in SKIPPED_DIRS for part in inside[:-1]) or (target.is_dir() and inside[-1] in SKIPPED_DIRS):
            reason, where = "link into an excluded folder", f"into a folder that is never indexed ('{target}')"
        else:
            return target  # a link to somewhere the walk goes anyway
    if on_skip is not None:
        rule = (
            ""
            if reason == "link loop"
            else (
                " Indexing follows links only to places inside the added folder that are neither hidden nor excluded."
            )
        )
        on_skip(SkippedLink(entry, target or entry, reason, f"'{entry}' was not followed: it leads {where}.{rule}"))
    return None


def _is_link(entry: Path) -> bool:
    """A symbolic link, or on Windows a junction (a folder link that is not a symlink)."""
    if entry.is_symlink():
        return True
    if sys.platform == "win32":
        return getattr(os.lstat(entry), "st_reparse_tag", 0) == _IO_REPARSE_TAG_MOUNT_POINT
    return False


def load(path: str | Path, max_bytes: int = MAX_FILE_BYTES, *, ocr: bool | None = None) -> LoadedDocument:
    """Read one file into sections; raises a DocumentError saying why when it cannot.

    ``ocr``: True reads scanned PDF pages and images by OCR; False (OCR turned off) skips them as OcrOff;
    None (not asked) reads no scans, and a PDF of scans alone is "empty"."""
    path = Path(path)
    name = path.name
    kind = kind_for(path)
    if kind is None:
        raise UnsupportedFile(
            f"'{name}' is not a kind of file Locus can read.",
            hint=SUPPORTED_HINT,
        )
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise TooLarge(
                f"'{name}' is {size / 2**20:.0f} MB, over the {max_bytes / 2**20:.0f} MB limit for one file."
            )
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(f"'{name}' could not be opened: {exc.strerror or exc}.", detail=repr(exc)) from exc
    if not data:
        raise EmptyDocument(f"No text could be extracted from '{name}': the file is empty (0 bytes).")
    from engine.rag import ocr as ocr_budget  # light: the OCR engine itself loads on the first page

    ocr_budget.start_file()  # one file's pages read by OCR, its attachments' included, count against one limit
    return load_data(path, data, kind=kind, max_bytes=max_bytes, ocr=ocr)


def load_data(
    path: Path, data: bytes, *, kind: str, max_bytes: int = MAX_FILE_BYTES, ocr: bool | None = None, depth: int = 0
) -> LoadedDocument:
    """Parse a file's bytes as ``kind``: what ``load`` does once the file is read, and what an e-mail's
    attachments go through (``depth``: how deep inside messages they sit)."""
    name = path.name

    def attachment(inner: str, content: bytes, inner_depth: int) -> LoadedDocument:
        inner_kind = kind_for(inner)
        if inner_kind is None:
            raise UnsupportedFile(f"'{inner}' is not a kind of file Locus can read.")
        if not content:
            raise EmptyDocument(f"'{inner}' is empty.")
        return load_data(Path(inner), content, kind=inner_kind, max_bytes=max_bytes, ocr=ocr, depth=inner_depth)

    if kind == "pdf":
        document = load_pdf(path, data, ocr=ocr)
    elif kind == "image":
        document = load_image(path, data, ocr=ocr)
    elif kind == "docx":
        document = load_docx(path, data, max_bytes)
    elif kind == "odt":
        document = load_odt(path, data, max_bytes)
    elif kind == "epub":
        document = load_epub(path, data, max_bytes)
    elif kind == "pptx":
        document = load_pptx(path, data, max_bytes)
    elif kind == "xlsx":
        document = load_xlsx(path, data, max_bytes)
    elif kind == "email":
        document = load_eml(path, data, attachment, depth)
    elif kind == "mbox":
        document = load_mbox(path, data, attachment, depth)
    else:
        text = decode_text(data, name)
        if kind == "html":
            document = load_html(path, text)
        elif kind == "csv":
            document = load_csv(path, text)
        elif kind == "code":
            language = _CODE_NAMES.get(name.lower()) or CODE_LANGUAGES.get(path.suffix.lower())
            document = LoadedDocument(str(path), "code", name, tuple(code_sections(text)), language=language)
        else:
            document = LoadedDocument(
                str(path), kind, first_heading(text, kind) or name, tuple(prose_sections(text, kind))
            )
    if not any(s.text.strip() for s in document.sections):
        if kind != "pdf":
            why = ": it is blank."
        elif ocr and document.ocr_pages == 0 and not document.ocr_left_out:
            why = ": OCR read its pages without a text layer and found no text on them."
        else:
            why = " (scanned pages without a text layer, or only images)."
        raise EmptyDocument(f"No text could be extracted from '{name}'{why}")
    return document


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 text saved without a byte-order mark (Windows tools do), told from binary by where its zero
    bytes fall: in text mostly of Latin letters every other byte is zero, all on one side."""
    head = data[:8192]
    even, odd = head[0::2].count(0), head[1::2].count(0)
    pairs = len(head) // 2
    if not pairs or len(data) % 2:
        return None
    for zeros, other, encoding in ((odd, even, "utf-16-le"), (even, odd, "utf-16-be")):
        if zeros >= pairs * 0.3 and other <= pairs * 0.01:
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError:
                return None
            controls = sum(1 for ch in text[:4096] if ord(ch) < 32 and ch not in "\t\n\r\f")
            return text if controls <= len(text[:4096]) * 0.01 else None
    return None


def decode_text(data: bytes, name: str) -> str:
    """Bytes to text: BOM, then UTF-16 without a BOM, then UTF-8, then a detected encoding (Windows-1252,
    Shift-JIS, GB18030, Windows-1251, …), then Latin-1; never fails on odd bytes.

    Raises UnsupportedFile for binary content (NUL bytes in the first 8 KB of a file that is not UTF-16).
    """
    for bom, encoding in _BOMS:  # UTF-32 first: its LE mark begins with UTF-16's
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    if b"\x00" in data[:8192]:
        wide = _utf16_without_bom(data)
        if wide is None:
            raise UnsupportedFile(f"'{name}' looks like a binary file, not text.")
        return wide
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes

        matches = from_bytes(data[: 1 << 20])
        best = matches.best()
        if best is not None and best.encoding:
            # Short texts often fit several code pages equally well; among equally good
            # guesses prefer Windows-1252, by far the commonest legacy encoding of Western text.
            tied = {m.encoding for m in matches if m.chaos <= best.chaos and m.coherence >= best.coherence}
            return data.decode("cp1252" if "cp1252" in tied else best.encoding, errors="replace")
    except (ImportError, LookupError):  # an optional helper, or a codec Python lacks
        pass
    return data.decode("latin-1", errors="replace")
