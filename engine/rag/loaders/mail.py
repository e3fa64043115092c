"""E-mail (.eml) and mailboxes (.mbox): each message's headers and body, and its attachments read by their own loaders.

A message's text (From, To, Cc, Date, Subject, then the body: plain text, else the HTML's visible text) is
placed at 'message N "Subject"' (N only in a mailbox). Each attachment Locus can read is parsed here, in the
same worker, by the loader of its kind, and keeps its own places (pages, slides, lines) inside the
attachment: 'message 3 "Budget", attachment "plan.pdf", page 2'. An attachment that is of a kind Locus does
not read, damaged or too deeply nested is left out, and why is said under the message's text and in
``LoadedDocument.skipped``; it never fails the message. A forwarded message (message/rfc822) is read like
an attachment, up to MAX_DEPTH levels.
"""

from __future__ import annotations

import email
import email.policy
import mimetypes
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from pathlib import Path

from engine.rag.loaders.base import (
    DocumentError,
    LoadedDocument,
    Section,
    WrongFormat,
    describe_location,
    short_label,
    split_long,
)
from engine.rag.loaders.html import load_html

MAX_DEPTH = 3  # a message inside a message inside a message; deeper ones are left out
MAX_ATTACHMENTS = 100  # per message
_HEADERS = ("From", "To", "Cc", "Date", "Subject")
_MBOX_SEPARATOR = re.compile(rb"^From [^\n]*\n", re.MULTILINE)

# (file name, bytes, depth) -> the attachment as a document, or a DocumentError; given by the loaders' package.
ParseAttachment = Callable[[str, bytes, int], LoadedDocument]


def load_eml(path: Path, data: bytes, parse: ParseAttachment, depth: int = 0) -> LoadedDocument:
    message = _message(data)
    if not _looks_like_mail(message):
        raise WrongFormat(f"'{path.name}' is not an e-mail message, whatever its name says.", kind="e-mail")
    found = _Found()
    sections = _message_sections(message, None, None, parse, depth, found)
    subject = short_label(_header(message, "Subject"))
    return found.document(path, "email", subject or path.name, sections)


def load_mbox(path: Path, data: bytes, parse: ParseAttachment, depth: int = 0) -> LoadedDocument:
    data = data.replace(b"\r\n", b"\n")
    if not data.startswith(b"From "):
        raise WrongFormat(
            f"'{path.name}' is not a mailbox (.mbox): it does not start with a 'From ' line.", kind="mbox"
        )
    sections: list[Section] = []
    found = _Found()
    for number, raw in enumerate((m for m in _MBOX_SEPARATOR.split(data) if m.strip()), start=1):
        raw = re.sub(rb"(?m)^>(>*From )", rb"\1", raw)  # mboxrd quoting of body lines starting with "From "
        sections.extend(_message_sections(_message(raw), number, None, parse, depth, found))
    return found.document(path, "mbox", path.name, sections)


@dataclass
class _Found:
    """What a file's attachments add up to beside their sections: parts left out (and why), OCR's pages."""

    skipped: list[str] = field(default_factory=list)
    ocr_pages: int = 0
    ocr_left_out: int = 0

    def document(self, path: Path, kind: str, title: str, sections: list[Section]) -> LoadedDocument:
        return LoadedDocument(
            str(path),
            kind,
            title,
            tuple(sections),
            skipped=tuple(self.skipped),
            ocr_pages=self.ocr_pages,
            ocr_left_out=self.ocr_left_out,
        )


def _message(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _looks_like_mail(message: EmailMessage) -> bool:
    return any(message.get(h) is not None for h in ("From", "To", "Subject", "Date", "Message-ID"))


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
        return " ".join(str(value).split()) if value is not None else ""
    except (ValueError, TypeError, IndexError, AttributeError):  # a malformed header the parser chokes on
        raw = message.get_all(name, failobj=[])
        return " ".join(str(raw[0]).split()) if raw else ""


def _message_sections(
    message: EmailMessage,
    number: int | None,
    within: str | None,
    parse: ParseAttachment,
    depth: int,
    found: _Found,
) -> list[Section]:
    """The message's own text, then each readable attachment's sections."""
    subject = short_label(_header(message, "Subject"))
    where = describe_location("message", subject, within, number, None, None)
    headers = "\n".join(f"{h}: {_header(message, h)}" for h in _HEADERS if _header(message, h))
    left_out: list[str] = []
    attachments: list[Section] = []
    for index, part in enumerate(message.iter_attachments()):
        name = short_label(part.get_filename()) or f"attachment {index + 1}"
        if index >= MAX_ATTACHMENTS:
            left_out.append(f'"{name}" (more than {MAX_ATTACHMENTS} attachments)')
            continue
        inner = f'{where}, attachment "{name}"'
        try:
            attachments.extend(_attachment(part, name, inner, parse, depth, found))
        except DocumentError as exc:
            left_out.append(f'"{name}" ({exc.status})')
            found.skipped.append(f"{inner}: {exc}")
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - a parser's bug on one attachment fails that attachment only
            left_out.append(f'"{name}" (damaged)')
            found.skipped.append(f"{inner}: it could not be read ({type(exc).__name__}).")
    body = _body(message)
    if left_out:
        body = f"{body}\n\nAttachments not indexed: {', '.join(left_out)}."
    text = f"{headers}\n\n{body}".strip()
    own = [
        Section(piece, page=number, heading=subject, place="message", label=subject, within=within)
        for piece in split_long(text)
        if piece.strip()
    ]
    return own + attachments


def _attachment(
    part: EmailMessage, name: str, where: str, parse: ParseAttachment, depth: int, found: _Found
) -> list[Section]:
    if depth + 1 > MAX_DEPTH:
        raise _NestedTooDeep(f"'{name}' is nested more than {MAX_DEPTH} levels deep; it was left out.")
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        message = inner[0] if isinstance(inner, list) and inner else inner
        if not isinstance(message, EmailMessage):
            return []
        return _message_sections(message, None, where, parse, depth + 1, found)
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    document = parse(_file_name(part, name), data, depth + 1)
    found.skipped.extend(f"{where}: {why}" for why in document.skipped)
    found.ocr_pages += document.ocr_pages
    found.ocr_left_out += document.ocr_left_out
    return [
        replace(s, within=f"{where}, {s.within}" if s.within else where, heading=s.heading or name)
        for s in document.sections
    ]


def _file_name(part: EmailMessage, shown: str) -> str:
    """The name an attachment is read by: its whole file name (the label shown may be cut short, losing
    the suffix that says its kind), else one made from its MIME type ("attachment.pdf")."""
    full = " ".join("".join(" " if ord(ch) < 32 or ord(ch) == 127 else ch for ch in part.get_filename() or "").split())
    if full:
        return full.replace("/", "_").replace("\\", "_")[-255:]
    suffix = mimetypes.guess_extension(part.get_content_type(), strict=False) or ""
    return f"attachment{suffix}" if suffix else shown


class _NestedTooDeep(DocumentError):
    status = "nested too deep"


def _body(message: EmailMessage) -> str:
    """The message's text: its plain-text body, else its HTML body's visible text."""
    try:
        part = message.get_body(preferencelist=("plain", "html"))
    except (KeyError, ValueError, TypeError, AttributeError):
        part = None
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError, TypeError, AttributeError, AssertionError):  # an unknown charset, …
        raw = part.get_payload(decode=True)
        content = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else ""
    if not isinstance(content, str):
        return ""
    if part.get_content_subtype() == "html":
        return "\n\n".join(s.text for s in load_html(Path("body.html"), content).sections)
    return content.strip()
