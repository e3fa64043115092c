"""Loaders: turn a file into text sections that remember where they came from.

PDF (text per page), plain text, Markdown, reStructuredText, HTML (visible text),
DOCX and source code. Text-like files keep their lines exactly, so every section
knows its line range; PDFs know their pages. A file that cannot be read raises a
DocumentError whose ``status`` says why in a word or two ("password protected",
"empty", "damaged", …) and whose message says it in a sentence.
"""

from __future__ import annotations

import codecs
import html.parser
import io
import logging
import re
import unicodedata
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from engine.errors import EngineError

MAX_FILE_BYTES = 200 * 2**20
_SECTION_CHARS = 4000  # a heading's body longer than this is split at paragraph boundaries
_CODE_WINDOW = 60  # lines per section for code without recognisable definitions


@dataclass(frozen=True)
class Section:
    text: str
    page: int | None = None  # 1-based page (PDF)
    line_start: int | None = None  # 1-based first line in the file (text, Markdown, RST, code)
    line_end: int | None = None  # 1-based last line, inclusive
    heading: str | None = None


@dataclass(frozen=True)
class LoadedDocument:
    path: str
    kind: str  # pdf, text, markdown, rst, html, docx, code
    title: str
    sections: tuple[Section, ...]
    language: str | None = None  # for code
    pages: int | None = None  # for PDFs


class DocumentError(EngineError):
    """A file that could not be indexed; ``status`` is the short reason shown beside it."""

    code = "document_error"
    status = "failed"


class PasswordProtected(DocumentError):
    status = "password protected"


class EmptyDocument(DocumentError):
    status = "empty"


class WrongFormat(DocumentError):
    status = "wrong format"


class CorruptDocument(DocumentError):
    status = "damaged"


class UnsupportedFile(DocumentError):
    status = "unsupported"


class TooLarge(DocumentError):
    status = "too large"


class ParseTimeout(DocumentError):
    status = "timed out"


class ParserCrashed(DocumentError):
    status = "parser crashed"


# File kinds ---------------------------------------------------------------------------

CODE_LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascript", ".ts": "typescript", ".tsx": "typescript", ".java": "java", ".kt": "kotlin",
    ".scala": "scala", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp",
    ".hh": "cpp", ".cs": "csharp", ".go": "go", ".rs": "rust", ".rb": "ruby", ".php": "php", ".swift": "swift",
    ".m": "objective-c", ".sh": "bash", ".bash": "bash", ".zsh": "bash", ".ps1": "powershell", ".sql": "sql",
    ".r": "r", ".lua": "lua", ".pl": "perl", ".dart": "dart", ".ex": "elixir", ".exs": "elixir", ".erl": "erlang",
    ".hs": "haskell", ".ml": "ocaml", ".clj": "clojure", ".vue": "vue", ".svelte": "svelte", ".css": "css",
    ".scss": "scss", ".less": "less", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json",
    ".ini": "ini", ".cfg": "ini", ".xml": "xml", ".gradle": "groovy", ".cmake": "cmake", ".mk": "make",
    ".tf": "hcl", ".proto": "protobuf", ".graphql": "graphql", ".jl": "julia", ".nim": "nim", ".zig": "zig",
}
_KINDS = {".pdf": "pdf", ".md": "markdown", ".markdown": "markdown", ".mdx": "markdown", ".rst": "rst",
          ".txt": "text", ".text": "text", ".log": "text", ".csv": "text", ".tsv": "text", ".tex": "text",
          ".org": "text", ".adoc": "text", ".html": "html", ".htm": "html", ".xhtml": "html", ".docx": "docx"}
_CODE_NAMES = {"makefile": "make", "dockerfile": "dockerfile", "cmakelists.txt": "cmake"}
SUPPORTED_SUFFIXES = frozenset(_KINDS) | frozenset(CODE_LANGUAGES)
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", "build", "dist", "target", ".venv",
                          "venv", ".tox", ".mypy_cache", ".pytest_cache", "site-packages", ".idea", ".vscode"})


def kind_for(path: str | Path) -> str | None:
    """'pdf', 'markdown', …, 'code', or None when Locus cannot read this kind of file."""
    path = Path(path)
    name = path.name.lower()
    if name in _CODE_NAMES:
        return "code"
    suffix = path.suffix.lower()
    return _KINDS.get(suffix) or ("code" if suffix in CODE_LANGUAGES else None)


def discover(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Every indexable file under the given files and folders, in a stable order.

    Folders recurse, skipping hidden entries, version-control, build and dependency folders and
    files of kinds Locus does not read. A file named directly is always yielded (if it exists),
    supported or not, so that the caller can report it as unsupported rather than ignore it.
    """
    seen: set[Path] = set()
    for given in paths:
        root = Path(given).expanduser()
        if root.is_file():
            resolved = root.resolve()
            if resolved not in seen:
                seen.add(resolved)
                yield resolved
            continue
        if not root.is_dir():
            continue
        visited_dirs: set[Path] = set()
        stack = [root.resolve()]
        while stack:
            folder = stack.pop()
            if folder in visited_dirs:  # symlink loops
                continue
            visited_dirs.add(folder)
            try:
                entries = sorted(folder.iterdir(), key=lambda p: p.name)
            except OSError:
                continue
            subfolders = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    if entry.name not in SKIPPED_DIRS:
                        subfolders.append(entry.resolve())
                elif entry.is_file() and kind_for(entry) is not None:
                    resolved = entry.resolve()
                    if resolved not in seen:
                        seen.add(resolved)
                        yield resolved
            stack.extend(reversed(subfolders))


# Loading ------------------------------------------------------------------------------


def load(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> LoadedDocument:
    """Read one file into sections; raises a DocumentError saying why when it cannot."""
    path = Path(path)
    name = path.name
    kind = kind_for(path)
    if kind is None:
        raise UnsupportedFile(f"'{name}' is not a kind of file Locus can read.",
                              hint="Supported: PDF, text, Markdown, reStructuredText, HTML, DOCX and source code.")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CorruptDocument(f"'{name}' could not be opened: {exc.strerror}.") from exc
    if size > max_bytes:
        raise TooLarge(f"'{name}' is {size / 2**20:.0f} MB, over the {max_bytes / 2**20:.0f} MB limit for one file.")
    if size == 0:
        raise EmptyDocument(f"'{name}' is an empty file.")
    data = path.read_bytes()
    if kind == "pdf":
        document = _load_pdf(path, data)
    elif kind == "docx":
        document = _load_docx(path, data)
    else:
        text = decode_text(data, name)
        if kind == "html":
            document = _load_html(path, text)
        elif kind in ("markdown", "rst", "text"):
            document = LoadedDocument(str(path), kind, _first_heading(text, kind) or name,
                                      tuple(_prose_sections(text, kind)))
        else:
            language = _CODE_NAMES.get(name.lower()) or CODE_LANGUAGES.get(path.suffix.lower())
            document = LoadedDocument(str(path), "code", name, tuple(_code_sections(text)), language=language)
    if not any(s.text.strip() for s in document.sections):
        raise EmptyDocument(f"No text could be extracted from '{name}'"
                            + (" (scanned pages without a text layer, or only images)." if kind == "pdf" else "."))
    return document


def decode_text(data: bytes, name: str) -> str:
    """Bytes to text: BOM, then UTF-8, then a detected encoding, then Latin-1; never fails."""
    if b"\x00" in data[:8192] and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UnsupportedFile(f"'{name}' looks like a binary file, not text.")
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                          (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            return data[len(bom):].decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(data[:1 << 20]).best()
        if best is not None and best.encoding:
            return data.decode(best.encoding, errors="replace")
    except (ImportError, LookupError):
        pass
    return data.decode("latin-1", errors="replace")


# PDF ----------------------------------------------------------------------------------


def _load_pdf(path: Path, data: bytes) -> LoadedDocument:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    name = path.name
    if not data.lstrip()[:1024].startswith(b"%PDF") and b"%PDF-" not in data[:1024]:
        raise WrongFormat(f"'{name}' is not a PDF file, whatever its name says.")
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    protected = PasswordProtected(f"'{name}' is password protected; Locus cannot read it without the password.",
                                  hint="Save an unprotected copy and index that instead.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted and not reader.decrypt(""):
                raise protected
            pages = reader.pages
            count = len(pages)
            sections = []
            failures = 0
            for number in range(count):
                try:
                    text = pages[number].extract_text() or ""
                except FileNotDecryptedError:
                    raise protected from None
                except Exception:  # noqa: BLE001 - one bad page must not sink the document
                    failures += 1
                    continue
                # NFKC turns typographic ligatures (ﬁ, ﬂ) and other compatibility forms into
                # the letters people type when they search.
                text = unicodedata.normalize("NFKC", text).strip()
                if text:
                    sections.append(Section(text, page=number + 1))
            title = _pdf_title(reader) or name
    except (FileNotDecryptedError, DependencyError) as exc:
        raise protected from exc
    except PasswordProtected:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError,
            AssertionError, OSError, ZeroDivisionError) as exc:
        raise CorruptDocument(f"'{name}' is a damaged PDF that could not be read.", detail=repr(exc)) from exc
    if count and failures == count:
        raise CorruptDocument(f"'{name}': no page of this PDF could be read.")
    return LoadedDocument(str(path), "pdf", title, tuple(sections), pages=count)


def _pdf_title(reader) -> str | None:
    try:
        title = (reader.metadata or {}).get("/Title")
    except Exception:  # noqa: BLE001 - metadata is optional
        return None
    title = str(title).strip() if title else ""
    title = re.sub(r"^Microsoft (Word|PowerPoint|Excel) - ", "", title)
    placeholder = title.lower() in {"untitled", "untitled document", "title", "model", "document"}
    file_name = re.search(r"\.(pdf|docx?|pptx?|xlsx?|odt|txt)$", title, re.IGNORECASE)
    if placeholder or file_name or not (2 < len(title) < 200) or not title.isprintable():
        return None
    return title


# DOCX ---------------------------------------------------------------------------------

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _load_docx(path: Path, data: bytes) -> LoadedDocument:
    name = path.name
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            xml = archive.read("word/document.xml")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise WrongFormat(f"'{name}' is not a Word (.docx) document, whatever its name says.") from exc
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise CorruptDocument(f"'{name}' is a damaged Word document.", detail=str(exc)) from exc
    body = root.find(f"{_W}body")
    sections: list[Section] = []
    heading, paragraphs, title = None, [], None

    def flush() -> None:
        text = "\n\n".join(p for p in paragraphs if p.strip())
        if text:
            sections.extend(Section(part, heading=heading) for part in _split_long(text))
        paragraphs.clear()

    for block in list(body) if body is not None else []:
        if block.tag == f"{_W}p":
            text = "".join(t.text or "" for t in block.iter(f"{_W}t")).strip()
            style = block.find(f"{_W}pPr/{_W}pStyle")
            style_name = (style.get(f"{_W}val") or "") if style is not None else ""
            if text and (style_name.lower().startswith("heading") or style_name.lower() == "title"):
                flush()
                heading = text
                title = title or text
                paragraphs.append(text)
            elif text:
                paragraphs.append(text)
        elif block.tag == f"{_W}tbl":
            for row in block.iter(f"{_W}tr"):
                cells = ["".join(t.text or "" for t in cell.iter(f"{_W}t")).strip() for cell in row.iter(f"{_W}tc")]
                if any(cells):
                    paragraphs.append(" | ".join(cells))
    flush()
    return LoadedDocument(str(path), "docx", title or name, tuple(sections))


def _split_long(text: str) -> list[str]:
    if len(text) <= _SECTION_CHARS:
        return [text]
    parts, current = [], ""
    for paragraph in text.split("\n\n"):
        if current and len(current) + len(paragraph) > _SECTION_CHARS:
            parts.append(current)
            current = paragraph
        else:
            current = f"{current}\n\n{paragraph}" if current else paragraph
    return parts + ([current] if current else [])


# HTML ---------------------------------------------------------------------------------

_INVISIBLE = {"script", "style", "head", "noscript", "template", "svg", "iframe", "object"}
_BLOCKS = {"p", "div", "br", "li", "tr", "section", "article", "header", "footer", "blockquote", "pre", "table",
           "ul", "ol", "dd", "dt", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "main", "nav", "aside", "figcaption"}


class _VisibleText(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hidden = 0
        self.in_title = False
        self.title = ""
        self.heading_level = 0
        self.heading_text = ""
        self.sections: list[tuple[str | None, list[str]]] = [(None, [])]

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "title":
            self.in_title = True
        if tag in _INVISIBLE:
            self.hidden += 1
        elif tag in _BLOCKS:
            self.sections[-1][1].append("\n")
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6") and not self.hidden:
            self.heading_level, self.heading_text = int(tag[1]), ""

    def handle_endtag(self, tag) -> None:
        if tag == "title":
            self.in_title = False
        if tag in _INVISIBLE:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCKS:
            self.sections[-1][1].append("\n")
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6") and self.heading_level:
            heading = " ".join(self.heading_text.split())
            self.heading_level = 0
            if heading:
                self.sections.append((heading, [heading, "\n"]))

    def handle_data(self, data) -> None:
        if self.in_title:
            self.title += data
        if self.hidden:
            return
        if self.heading_level:
            self.heading_text += data
            return
        self.sections[-1][1].append(data)


def _load_html(path: Path, text: str) -> LoadedDocument:
    parser = _VisibleText()
    parser.feed(text)
    parser.close()
    sections = []
    for heading, parts in parser.sections:
        lines = [" ".join(line.split()) for line in "".join(parts).split("\n")]
        body = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
        sections.extend(Section(part, heading=heading) for part in _split_long(body) if part.strip())
    title = " ".join(parser.title.split()) or (sections[0].heading if sections and sections[0].heading else path.name)
    return LoadedDocument(str(path), "html", title, tuple(sections))


# Text, Markdown, reStructuredText -------------------------------------------------------

_MD_ATX = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+:._])\1{2,}\s*$")


def _headings(lines: list[str], kind: str) -> dict[int, str]:
    """0-based line index -> heading text, for the lines where a section starts."""
    found: dict[int, str] = {}
    in_fence = False
    for i, line in enumerate(lines):
        if kind == "markdown" and line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        if in_fence:
            continue
        if kind == "markdown":
            match = _MD_ATX.match(line)
            if match:
                found[i] = match.group(2).strip()
            elif (i + 1 < len(lines) and line.strip() and re.match(r"^ {0,3}(=+|-+)\s*$", lines[i + 1])
                  and not line.lstrip().startswith(("-", "*", ">"))):
                found[i] = line.strip()  # a setext heading: text over === or ---
        elif kind == "rst":
            if (i + 1 < len(lines) and line.strip() and _RST_UNDERLINE.match(lines[i + 1])
                    and len(lines[i + 1].rstrip()) >= len(line.rstrip())):
                start = i - 1 if i > 0 and _RST_UNDERLINE.match(lines[i - 1]) else i  # an overlined title
                found[start] = line.strip()
    return found


def _first_heading(text: str, kind: str) -> str | None:
    headings = _headings(text.split("\n")[:400], kind)
    return headings[min(headings)] if headings else None


def _prose_sections(text: str, kind: str) -> list[Section]:
    """Sections at headings (Markdown, RST), each split at blank lines when long; exact line ranges."""
    lines = text.split("\n")
    starts = _headings(lines, kind) if kind in ("markdown", "rst") else {}
    boundaries = sorted(set(starts) | {0})
    sections = []
    for n, start in enumerate(boundaries):
        end = boundaries[n + 1] if n + 1 < len(boundaries) else len(lines)
        heading = starts.get(start)
        if heading is None and n > 0:
            heading = sections[-1].heading if sections else None
        sections.extend(_line_block_sections(lines, start, end, heading))
    return sections


def _line_block_sections(lines: list[str], start: int, end: int, heading: str | None) -> list[Section]:
    """Lines [start, end) as sections of at most ~_SECTION_CHARS, cut at blank lines."""
    out, block_start, size = [], start, 0
    for i in range(start, end):
        size += len(lines[i]) + 1
        at_blank = not lines[i].strip()
        if size > _SECTION_CHARS and at_blank and i > block_start:
            out.append(_section_of(lines, block_start, i, heading))
            block_start, size = i + 1, 0
    if block_start < end:
        out.append(_section_of(lines, block_start, end, heading))
    return [s for s in out if s.text.strip()]


def _section_of(lines: list[str], start: int, end: int, heading: str | None) -> Section:
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return Section("\n".join(lines[start:end]), line_start=start + 1, line_end=max(start + 1, end), heading=heading)


# Code ---------------------------------------------------------------------------------

_DEFINITION = re.compile(
    r"^(?:export\s+)?(?:(?:public|private|protected|static|async|pub(?:\(crate\))?|abstract|final|inline)\s+)*"
    r"(?:def|class|function|func|fn|interface|struct|enum|impl|trait|module|object|type|sub|proc|package)\b")


def _code_sections(text: str) -> list[Section]:
    """Sections at top-level definitions (column 0), else windows of _CODE_WINDOW lines."""
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if _DEFINITION.match(line)]
    # Comments and decorators just above a definition belong to it.
    adjusted = []
    for s in starts:
        while s > 0 and lines[s - 1].strip().startswith(("@", "#", "//", "/*", "*", '"""', "///")):
            s -= 1
        adjusted.append(s)
    boundaries = sorted(set([0] + adjusted))
    sections = []
    for n, start in enumerate(boundaries):
        end = boundaries[n + 1] if n + 1 < len(boundaries) else len(lines)
        definition = next((lines[i].strip() for i in range(start, end) if _DEFINITION.match(lines[i])), None)
        for window in range(start, end, _CODE_WINDOW):  # long definitions in windows
            section = _section_of(lines, window, min(end, window + _CODE_WINDOW),
                                  definition[:80] if definition else None)
            if section.text.strip():
                sections.append(section)
    return sections
