"""Code help: explain, review, write tests for or fix code, shown to the model with its line numbers.

The code is pasted text or a range of a file (``load_code_range``). With a document library,
related chunks of indexed files are retrieved and added as context, each with its file and
lines, so the answer can point at code beyond what was given. The answer streams as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import InvalidRequestError, NotFoundError
from engine.rag.loaders import CODE_LANGUAGES, decode_text
from engine.runtime.types import ChatMessage
from engine.tasks.base import TaskContext, require_text

if TYPE_CHECKING:
    from engine.rag.library import DocumentLibrary
    from engine.rag.retrieve import Passage

ACTIONS: dict[str, str] = {"explain": "Explain", "review": "Review", "tests": "Write tests", "fix": "Fix an error"}
MAX_CODE_BYTES = 2 * 2**20  # beyond this a "range" is a whole data file, not code to read
_RANGE = re.compile(r"^(\d+)(?:\s*[-–:]\s*(\d*))?$")


@dataclass(frozen=True)
class CodeRange:
    """Lines ``first_line``..``last_line`` of a source file, with its language when known."""

    path: str
    text: str
    first_line: int
    last_line: int
    language: str | None
    whole: bool = False  # the whole file, not a range of it

    @property
    def location(self) -> str:
        """'src/app.py:10-24', or 'src/app.py' for the whole file."""
        return self.path if self.whole else f"{self.path}:{self.first_line}-{self.last_line}"


def split_location(argument: str) -> tuple[str, str | None]:
    """'src/app.py:10-20' -> ('src/app.py', '10-20'); a path that exists as written is never split."""
    path, sep, lines = argument.rpartition(":")
    if not sep or not _RANGE.match(lines.strip()) or Path(argument).exists():
        return argument, None
    return path, lines.strip()


def load_code_range(path: str | Path, lines: str | None = None) -> CodeRange:
    """Read a source file, or lines 'A-B' ('A', 'A-' to the end) of it, keeping its line numbers."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise InvalidRequestError(f"'{path}' is a folder, not a file of code.")
        if size > MAX_CODE_BYTES:
            raise InvalidRequestError(
                f"'{path.name}' is {size / 2**20:.1f} MB, too large to read as code.",
                hint="Choose a range of lines, like FILE:10-60, from a smaller file.",
            )
        text = decode_text(path.read_bytes(), path.name)
    except FileNotFoundError:
        raise NotFoundError(f"There is no file '{path}'.") from None
    except OSError as exc:
        raise InvalidRequestError(f"'{path}' could not be read: {exc.strerror or exc}.") from exc
    all_lines = text.splitlines()
    first, last = 1, max(1, len(all_lines))
    if lines:
        m = _RANGE.match(lines.strip())
        if not m:
            raise InvalidRequestError(f"'{lines}' is not a range of lines.", hint="Write it like 10-24, or 10.")
        first = int(m.group(1))
        if m.group(2):
            last = int(m.group(2))
        elif m.group(2) is None:  # 'A' alone: that one line; 'A-': to the end
            last = first
        if first < 1 or first > len(all_lines) or last < first:
            raise InvalidRequestError(f"Lines {lines} are not in '{path.name}', which has {len(all_lines)} lines.")
        last = min(last, len(all_lines))
    return CodeRange(
        str(path), "\n".join(all_lines[first - 1 : last]), first, last, guess_language(str(path), text), whole=not lines
    )


_CONTENT_HINTS = (
    ("python", r"^\s*(?:def \w+\(.*\)\s*(?:->.*)?:|class \w+.*:|from [\w.]+ import |import \w+$)"),
    ("rust", r"^\s*(?:pub )?fn \w+|\blet mut\b|^\s*use \w+::"),
    ("go", r"^package \w+|^func (?:\(\w+ \*?\w+\) )?\w+\("),
    ("java", r"^\s*(?:public|private|protected) (?:static )?(?:final )?(?:class|interface|void|[\w<>\[\]]+ \w+\()"),
    ("cpp", r"^#include\s*<\w+>$|\bstd::|\btemplate\s*<"),
    ("c", r"^#include\s*[<\"]"),
    ("php", r"<\?php"),
    ("typescript", r"^\s*(?:interface \w+|type \w+ =|(?:export )?function \w+\(.*:\s*\w+)"),
    ("javascript", r"^\s*(?:function \w+\(|const \w+ = |let \w+ = |export |module\.exports)|=>"),
    ("bash", r"^\s*(?:if \[|for \w+ in .*; do|echo |export \w+=)"),
    ("sql", r"(?i)^\s*(?:select .* from|insert into|create table|update \w+ set)"),
)
_SHEBANGS = {
    "python": "python",
    "node": "javascript",
    "bash": "bash",
    "sh": "bash",
    "zsh": "bash",
    "ruby": "ruby",
    "perl": "perl",
}


def guess_language(path: str | None, code: str) -> str | None:
    """The code's language from its file extension, else its shebang, else telling patterns in its text."""
    if path:
        suffix = Path(path).suffix.lower()
        if suffix in CODE_LANGUAGES:
            return CODE_LANGUAGES[suffix]
    first = code.lstrip().split("\n", 1)[0]
    if first.startswith("#!"):
        words = re.findall(r"[a-z]+", first.rsplit("/", 1)[-1])
        for word in words:
            if word in _SHEBANGS:
                return _SHEBANGS[word]
    for language, pattern in _CONTENT_HINTS:
        if re.search(pattern, code, re.M):
            return language
    return None


def number_lines(text: str, first_line: int = 1) -> str:
    """Each line prefixed with its number, right-aligned: ' 9 | code'."""
    lines = text.split("\n")
    width = len(str(first_line + len(lines) - 1))
    return "\n".join(f"{n:>{width}} | {line}" for n, line in enumerate(lines, first_line))


def _fenced(text: str, language: str | None, first_line: int | None) -> str:
    body = number_lines(text, first_line) if first_line is not None else text
    fence = "```"
    while fence in body:  # code that itself holds ``` needs a longer fence
        fence += "`"
    return f"{fence}{language or ''}\n{body}\n{fence}"


def _passage_block(passage: Passage) -> str:
    """A retrieved passage under its file and lines; code fenced and numbered from its first line."""
    where = ", ".join(x for x in (passage.path, passage.location()) if x)
    if passage.kind != "code":
        return f"From {where}:\n{passage.text}"
    language = CODE_LANGUAGES.get(Path(passage.path).suffix.lower())
    return f"From {where}:\n{_fenced(passage.text, language, passage.line_start)}"


def related_passages(
    ctx: TaskContext, library: DocumentLibrary, query: str, budget: int, exclude: CodeRange | None = None
) -> list[Passage]:
    """Indexed chunks related to ``query`` within ``budget`` tokens, leaving out the code already given."""
    if budget < 64:
        return []
    retrieval = library.retrieve(query[:2000], None, ctx.count_tokens, budget, max_passages=4)
    kept = []
    for passage in retrieval.passages:
        if (
            exclude is not None
            and Path(passage.path).resolve() == Path(exclude.path).resolve()
            and (passage.line_start or 0) <= exclude.last_line
            and (passage.line_end or 10**9) >= exclude.first_line
        ):
            continue
        kept.append(passage)
    return kept


def code_messages(
    ctx: TaskContext,
    action: str,
    code: str | CodeRange,
    *,
    language: str | None = None,
    location: str = "",
    error: str = "",
    library: DocumentLibrary | None = None,
    question: str = "",
) -> tuple[tuple[ChatMessage, ...], int]:
    """The prompt for ``action`` over ``code`` (plus related indexed code with a library) and its size in tokens."""
    if action not in ACTIONS:
        raise InvalidRequestError(
            f"'{action}' is not a kind of code help.", hint=f"Choose one of: {', '.join(ACTIONS)}."
        )
    given = code if isinstance(code, CodeRange) else None
    text = require_text(code.text if isinstance(code, CodeRange) else code, "code")
    language = language or (given.language if given else None) or guess_language(None, text)
    values = {
        "code": _fenced(text.rstrip("\n"), language, given.first_line if given else 1),
        "language": language or "",
        "location": location or (given.location if given else ""),
        "error": error.strip(),
        "question": question.strip(),
        "context": "",
    }
    template = ctx.template(f"code_{action}")

    def render() -> tuple[tuple[ChatMessage, ...], int]:
        messages = template.render(**{k: v for k, v in values.items() if k in template.variables})
        return messages, sum(ctx.count_tokens(m.content) + 8 for m in messages)  # + the chat template's marks

    messages, used = render()
    if used + 64 > ctx.n_ctx:
        raise InvalidRequestError(
            f"The code takes about {used} tokens; the model's context holds {ctx.n_ctx}.",
            hint="Choose fewer lines, or a model with a larger context.",
        )
    if library is not None and "context" in template.variables:
        ctx.progress("Searching the index", 0, 1)
        answer_room = min(ctx.sampling.max_tokens, ctx.n_ctx // 3)
        query = " ".join(x for x in (question, error, text) if x)
        passages = related_passages(ctx, library, query, min(ctx.n_ctx // 4, ctx.n_ctx - used - answer_room), given)
        ctx.progress("Searching the index", 1, 1)
        if passages:
            values["context"] = "\n\n".join(_passage_block(p) for p in passages)
            messages, used = render()
    return messages, used


def code_help(
    ctx: TaskContext,
    action: str,
    code: str | CodeRange,
    *,
    language: str | None = None,
    location: str = "",
    error: str = "",
    library: DocumentLibrary | None = None,
    question: str = "",
) -> str:
    """Stream the model's answer for ``action`` (a key of ACTIONS) over ``code``; returns the answer."""
    messages, used = code_messages(
        ctx, action, code, language=language, location=location, error=error, library=library, question=question
    )
    ctx.check_cancel()
    return ctx.generate(messages, stream=True, max_tokens=min(ctx.sampling.max_tokens, ctx.n_ctx - used - 8))
