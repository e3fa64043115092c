"""Whether a question's answer is a passage: "which document says…", "where does it say…", "what is the
definition of…" (and their German and French forms).

For such questions the passage itself is the best answer a small model can give, so the window shows
the top passage beside the model's answer. A pure function of the question's text: a few patterns,
matched case-insensitively anywhere in the question, so that "Quick question: which file…" counts too.
"""

from __future__ import annotations

import re

_PLACE = (
    r"(?:documents?|docs?|files?|pages?|sections?|chapters?|paragraphs?|passages?|sources?|papers?|reports?"
    r"|slides?|pdfs?|e-?mails?)"
)
_ORT = r"(?:dokument|datei|seite|abschnitt|kapitel|absatz|stelle|quelle|notiz|folie|tabelle|mail|nachricht)\w*"
_LIEU = (
    r"(?:documents?|fichiers?|pages?|sections?|chapitres?|paragraphes?|passages?|sources?|notes?|diapositives?"
    r"|courriels?|e-?mails?|messages?)"
)

_PATTERNS = [
    # English
    rf"\bwhich {_PLACE}\b",
    rf"\bwhat {_PLACE} (?:says?|mentions?|states?|describes?|defines?|explains?|contains?|talks?|covers?)\b",
    rf"\bin (?:which|what) {_PLACE}\b",
    r"\bwhere (?:does|do|did|is|are|was|were) (?:it|they|this|that|the \w+|\w+) "
    r"(?:say|says|said|mention|mentioned|state|stated|written|defined|described|explained|discussed|talk)\b",
    r"\bwhere (?:is|are) (?:it|this|that|they)? ?(?:written|stated|said|mentioned|defined|described)\b",
    r"\bwhere can i (?:find|read)\b",
    r"\bwhat (?:is|'s|are) the definitions? of\b",
    r"\bhow (?:is|are) [\w\s'\"-]{1,60} defined\b",
    r"^\s*(?:please\s+)?define\b",
    r"\bdefinitions? of\b",
    r"\b(?:quote|cite) (?:the|a|me)\b",
    rf"\b(?:find|show me|give me) the (?:exact )?(?:{_PLACE}|wording|sentence|lines?)\b",
    # German
    rf"\b(?:welche[smrn]?|in welche[mr]) {_ORT}\b",
    r"\bwo (?:steht|stehen|stand|finde ich|lese ich)\b",
    r"\bwo (?:wird|werden|wurde|ist|sind) [\w\s-]{1,60} "
    r"(?:erwähnt|definiert|beschrieben|erklärt|genannt|geschrieben|festgelegt)\b",
    r"\bwie (?:ist|sind|wird|werden) [\w\s-]{1,60} definiert\b",
    r"\b(?:was ist|wie lautet) die definition\b",
    r"\bdefinition (?:von|des|der|für)\b",
    r"\bdefiniere\b",
    r"\bzitiere\b",
    # French
    rf"\b(?:quel(?:le)?s?|dans quel(?:le)?s?|lequel|laquelle) {_LIEU}\b",
    r"\boù (?:est-ce qu'|est-il |est-elle |dit-on|trouve-t-on|parle-t-on|se trouve|lit-on)",
    r"\boù (?:le|la|les|l'|ce|cette|on) [\w\s'-]{0,40}(?:dit|écrit|mentionne|parle|définit|décrit)\b",
    r"\bquelle est la définition\b",
    r"\bdéfinition (?:de|du|des|d')",
    r"\bdéfinis(?:sez)?\b",
    r"\bque dit (?:le|la|les|l')",
    r"\bcite[rz]\b",
]
_PASSAGE = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE)


def asks_for_passage(question: str) -> bool:
    """True for a question whose answer is a passage of the documents (which document, where it says,
    a definition), in English, German or French."""
    return bool(_PASSAGE.search(" ".join(question.split())))


def top_passage(question: str, sources: list[dict]) -> dict | None:
    """The saved source (``Citation.to_dict()``'s shape) to show as the top passage beside an answer from
    documents, or None: the first passage by retrieval rank (number 1 in the prompt), when the question asks
    for a passage or when the answer rests on none of them (then the passage is the best evidence)."""
    if not sources:
        return None
    if not asks_for_passage(question) and any(s.get("supported", True) for s in sources):
        return None
    return min(sources, key=lambda s: int(s.get("number", 0)))
