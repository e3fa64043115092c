"""Zip packages of XML parts (EPUB, OpenDocument, PowerPoint, Excel), opened with the standard library only.

Every part is read against one budget of uncompressed bytes for the whole file, checked before it is
unpacked, so that a zip bomb fails as "too large" instead of filling the parser's memory. XML that
declares entities is refused: these formats never need them, and it is how entity-expansion bombs start
(an external DTD named in a DOCTYPE is never fetched by ElementTree).
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from xml.etree import ElementTree

from engine.rag.loaders.base import CorruptDocument, PasswordProtected, TooLarge, WrongFormat

_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
# "<!ENTITY" as UTF-8 (and ASCII-compatible encodings), UTF-16 and UTF-32, either byte order
_ENTITY_MARKS = tuple("<!ENTITY".encode(e) for e in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"))
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # the container of encrypted Office files and of old .doc/.xls/.ppt


class Package:
    """An opened zip package of one file, named for messages (``label``: "PowerPoint presentation")."""

    def __init__(self, name: str, data: bytes, max_bytes: int, *, kind: str, label: str):
        self.name, self.kind, self.label = name, kind, label
        self.budget = max_bytes  # uncompressed bytes still allowed
        self.max_bytes = max_bytes
        if data.startswith(OLE_MAGIC):
            if "EncryptedPackage".encode("utf-16-le") in data:
                raise PasswordProtected(
                    f"'{name}' is password protected; Locus cannot read it without the password.",
                    hint="Save an unprotected copy and index that instead.",
                )
            raise WrongFormat(
                f"'{name}' is an old binary Office file, not a {label}; Locus reads only the newer format.",
                kind=kind,
                hint="Open it and save it again in the current format.",
            )
        try:
            self.archive = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise WrongFormat(
                f"'{name}' is not a {label}, whatever its name says.", kind=kind, detail=str(exc)
            ) from exc
        self.names = set(self.archive.namelist())

    def damaged(self, why: str, detail: str | None = None) -> CorruptDocument:
        return CorruptDocument(f"'{self.name}' is a damaged {self.label}: {why}.", detail=detail)

    def has(self, member: str) -> bool:
        return member in self.names

    def read(self, member: str) -> bytes:
        """A part's bytes; a missing part is a wrong format, a part over the budget is too large."""
        try:
            info = self.archive.getinfo(member)
        except KeyError as exc:
            raise WrongFormat(
                f"'{self.name}' is not a {self.label}: it has no '{member}'.", kind=self.kind, detail=str(exc)
            ) from exc
        if info.file_size > self.budget:
            raise TooLarge(
                f"'{self.name}' unpacks to more than {self.max_bytes / 2**20:.0f} MB, over the limit for one file.",
                hint="A file this much larger inside than on disk is most likely a decompression bomb.",
            )
        self.budget -= info.file_size
        try:
            return self.archive.read(info)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError, ValueError) as exc:
            raise self.damaged(f"its part '{member}' cannot be unpacked", repr(exc)) from exc

    def relations(self, part: str) -> dict[str, tuple[str, str]]:
        """An Open XML part's relationships (its _rels/<name>.rels): id -> (type's last word, target part),
        targets resolved against the part's folder; external targets left out."""
        folder, file = posixpath.split(part)
        rels = posixpath.join(folder, "_rels", file + ".rels")
        if not self.has(rels):
            return {}
        out = {}
        for rel in self.xml(rels).iter(f"{_REL}Relationship"):
            target = rel.get("Target") or ""
            if rel.get("TargetMode") == "External" or not target:
                continue
            resolved = (
                target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join(folder, target))
            )
            out[rel.get("Id") or ""] = ((rel.get("Type") or "").rsplit("/", 1)[-1], resolved)
        return out

    def xml(self, member: str) -> ElementTree.Element:
        """A part parsed as XML (no DTDs)."""
        return parse_xml(self.read(member), lambda why, detail: self.damaged(f"'{member}' {why}", detail))


def parse_xml(data: bytes, damaged) -> ElementTree.Element:
    """XML that declares no entities; ``damaged(why, detail)`` makes the error to raise."""
    if any(mark in data for mark in _ENTITY_MARKS):
        raise damaged("declares XML entities, which this format never needs", None)
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise damaged("is not well-formed XML", str(exc)) from exc


def local(tag: str) -> str:
    """An element's name without its namespace."""
    return tag.rsplit("}", 1)[-1]
