"""Translation that keeps Markdown intact: only prose reaches the model; code and URLs come back byte for byte.

The text is cut into copied pieces and prose units (engine.tasks.translate_segment); units are
batched to the context, translated in order and streamed paragraph by paragraph. A translation
that loses or mangles a placeholder is retried greedily, and failing that the unit is kept as it
was: protected text always survives.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass, replace

from engine.errors import InvalidRequestError
from engine.tasks.base import TaskContext, require_text
from engine.tasks.translate_segment import PLACEHOLDER, Masked, Piece, checked, mask, segment

LANGUAGES: tuple[str, ...] = tuple(
    "English Arabic Chinese Czech Dutch French German Greek Hindi Indonesian Italian Japanese Korean Polish "
    "Portuguese Russian Spanish Swedish Turkish Ukrainian Vietnamese".split()
)
# ISO 639-1 codes, in LANGUAGES' order.
_CODES = dict(zip("en ar zh cs nl fr de el hi id it ja ko pl pt ru es sv tr uk vi".split(), LANGUAGES, strict=True))
MAX_BATCH_UNITS = 8  # more units per request and a small model starts merging or dropping paragraphs


def language_name(value: str) -> str:
    """The LANGUAGES entry for a name or ISO 639-1 code (any case); InvalidRequestError naming the choices."""
    key = (value or "").strip().lower()
    for name in LANGUAGES:
        if key == name.lower():
            return name
    if key in _CODES:
        return _CODES[key]
    close = difflib.get_close_matches(key.title(), LANGUAGES, n=1)
    raise InvalidRequestError(
        f"'{value}' is not a language Locus translates.",
        hint=(f"Did you mean {close[0]}? " if close else "") + f"Choose one of: {', '.join(LANGUAGES)}.",
    )


# Language detection ------------------------------------------------------------------------------

_STOPWORDS = {
    "English": "the and is are of to in that it with for this was you not be have on which from by they an or will",
    "French": "le la les des est et une un du en que qui dans pour pas sur au avec ce sont nous vous il elle mais ou",
    "German": "der die das und ist nicht ein eine zu den mit von sich auf für dem auch es ich sie wir wird oder aber",
    "Spanish": "el los las es y una un del que en por para con no se como está son pero muy al lo su",
    "Italian": "il lo gli della di che è e una un per non con sono del delle nel anche come ma alla questo",
    "Portuguese": "o os as da do das dos que é e um uma não em para com por se mais são na no ao mas",
    "Dutch": "de het een en is van niet dat op te zijn met voor ook maar er wordt dit aan hij ze ik we",
    "Swedish": "och att det som är en ett på för med inte av till den har jag vi om men kan var",
    "Polish": "i w nie na się że z jest to do jak co ale od po są tak dla przez czy",
    "Czech": "a je se na že v to s jsou by ale jak do od pro tak jsem není být který",
    "Turkish": "ve bir bu da de için ile çok ne olarak daha gibi ama var değil mi ben sen",
    "Indonesian": "yang dan di ini itu dengan untuk tidak dari dalam akan ada adalah ke juga saya kami bisa",
    "Vietnamese": "và của là có không được những các một cho trong này người với đã để",
}
_LETTERS = {
    "Spanish": "ñ¿¡",
    "Portuguese": "ãõ",
    "German": "ßäöü",
    "French": "èêàçœ",
    "Polish": "ąęłńśźżć",
    "Czech": "řěůšč",
    "Turkish": "ğşı",
    "Swedish": "åäö",
    "Vietnamese": "ơưđạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ",
}
_WORD_LANGS: dict[str, list[str]] = {}
for _lang, _words in _STOPWORDS.items():
    for _w in _words.split():
        _WORD_LANGS.setdefault(_w, []).append(_lang)
_CHAR_LANGS: dict[str, list[str]] = {}
for _lang, _chars in _LETTERS.items():
    for _c in _chars:
        _CHAR_LANGS.setdefault(_c, []).append(_lang)
_SCRIPTS = (
    (0x0370, 0x03FF, "Greek"),
    (0x0400, 0x04FF, "Cyrillic"),
    (0x0600, 0x06FF, "Arabic"),
    (0x0750, 0x077F, "Arabic"),
    (0x0900, 0x097F, "Hindi"),
    (0x1100, 0x11FF, "Korean"),
    (0x3040, 0x30FF, "Kana"),
    (0x3130, 0x318F, "Korean"),
    (0x3400, 0x4DBF, "Han"),
    (0x4E00, 0x9FFF, "Han"),
    (0xAC00, 0xD7AF, "Korean"),
)


def _script(c: str) -> str:
    code = ord(c)
    for low, high, name in _SCRIPTS:
        if low <= code <= high:
            return name
    return "Latin" if code < 0x250 or 0x1E00 <= code <= 0x1EFF else "Other"


def detect_language(text: str) -> str | None:
    """The LANGUAGES entry ``text`` is most likely written in, from its script or common words; None if unsure."""
    letters = [c for c in text if c.isalpha()]
    if len(letters) < 3:
        return None
    scripts = Counter(_script(c) for c in letters)
    scripts["CJK"] = scripts.pop("Han", 0) + scripts.pop("Kana", 0)
    script, count = scripts.most_common(1)[0]
    if script == "CJK":
        kana = sum(1 for c in letters if _script(c) == "Kana")
        return "Japanese" if kana >= 0.1 * count else "Chinese"
    if script == "Cyrillic":
        return "Ukrainian" if any(c in "іїєґІЇЄҐ" for c in letters) else "Russian"
    if script in ("Greek", "Arabic", "Hindi", "Korean"):
        return script
    if script != "Latin":
        return None
    scores: dict[str, float] = {}
    for word in re.findall(r"[^\W\d_]+", text.lower()):
        for lang in _WORD_LANGS.get(word, ()):
            scores[lang] = scores.get(lang, 0.0) + 1 / len(_WORD_LANGS[word])
    for c in text.lower():
        for lang in _CHAR_LANGS.get(c, ()):
            scores[lang] = scores.get(lang, 0.0) + 0.5 / len(_CHAR_LANGS[c])
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)[:2]  # the likeliest two
    if not ranked or ranked[0][1] < 1.0 or (len(ranked) > 1 and ranked[0][1] < 1.2 * ranked[1][1]):
        return None
    return ranked[0][0]


# The task ---------------------------------------------------------------------------------------


@dataclass
class _Job:
    """What one unit (or, for a very long one, one run of its sentences) sends to the model."""

    unit: int
    text: str
    result: str | None = None  # the checked translation; None when the model lost a placeholder


_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")


def _prose_units(pieces: list[Piece]) -> tuple[dict[int, Masked], list[int]]:
    """Every prose piece masked, and the indices of those with words to translate."""
    masks = {i: mask(p.source) for i, p in enumerate(pieces) if p.prose}
    return masks, [i for i, m in masks.items() if re.search(r"[^\W\d_]", PLACEHOLDER.sub("", m.text))]


def check_languages(text: str, target: str, source: str | None = None) -> tuple[str, str | None]:
    """(target, source) as LANGUAGES names, the source detected from the prose when not given (None if unsure).

    InvalidRequestError for empty text, an unknown language, or a source that is the target.
    """
    require_text(text)
    target = language_name(target)
    if source:
        source = language_name(source)
        if source == target:
            raise InvalidRequestError(
                f"The source and target language are both {target}.", hint=f"Choose a target other than {target}."
            )
        return target, source
    masks, units = _prose_units(segment(text))
    detected = detect_language("\n".join(masks[i].text for i in units))
    if detected == target:
        raise InvalidRequestError(
            f"The text already seems to be in {target}.",
            hint="Choose another target language, or name the text's language.",
        )
    return target, detected


def translate(ctx: TaskContext, text: str, target: str, source: str | None = None) -> str:
    """Translate ``text`` into ``target``, streaming each finished paragraph in order; returns the whole text."""
    target, language = check_languages(text, target, source)
    pieces = segment(text)
    masks, units = _prose_units(pieces)
    translator = _Translator(ctx, target, language)
    by_unit = {i: translator.jobs(i, masks[i].text) for i in units}
    jobs = [job for i in units for job in by_unit[i]]
    ctx.details.update(
        source_language=language, source_detected=not source, target_language=target, units=len(units), kept_original=0
    )
    parts: list[str] = []
    emitted = 0

    def emit_through(index: int) -> None:
        nonlocal emitted
        for k in range(emitted, index):
            piece = pieces[k]
            part = translator.render(piece, masks[k], by_unit.get(k, [])) if piece.prose else piece.text
            parts.append(part)
            ctx.emit_text(part)
        emitted = max(emitted, index)

    ctx.progress("Translating", 0, len(units))
    done = 0
    for batch in translator.batches(jobs):
        translator.run(batch, masks)
        finished = [j.unit for j in batch if j is by_unit[j.unit][-1]]
        done += len(finished)
        emit_through(max(finished, default=-1) + 1)
        ctx.progress("Translating", done, len(units))
    emit_through(len(pieces))
    return "".join(parts)


class _Translator:
    """Batches jobs to the token budget, asks the model, checks placeholders and falls back."""

    def __init__(self, ctx: TaskContext, target: str, source: str | None):
        self.ctx, self.target, self.source = ctx, target, source
        overhead = sum(ctx.count_tokens(m.content) + 8 for m in self.messages(""))
        # Input plus up to twice as many output tokens must fit beside the prompt.
        self.budget = max(32, (ctx.n_ctx - overhead - 64) // 3)

    def messages(self, text: str):
        return self.ctx.render("translate", text=text, source=self.source or "", target=self.target)

    def jobs(self, unit: int, text: str) -> list[_Job]:
        """One job for a unit that fits the budget; runs of whole sentences (or words) for one that does not."""
        if self.ctx.count_tokens(text) <= self.budget:
            return [_Job(unit, text)]
        jobs, current = [], ""
        pieces = _SENTENCE_END.split(text)
        for piece in [w for p in pieces for w in (p.split(" ") if self.ctx.count_tokens(p) > self.budget else [p])]:
            joined = f"{current} {piece}" if current else piece
            if current and self.ctx.count_tokens(joined) > self.budget:
                jobs.append(_Job(unit, current))
                joined = piece
            current = joined
        return [*jobs, _Job(unit, current)]

    def batches(self, jobs: list[_Job]):
        batch: list[_Job] = []
        used = 0
        for job in jobs:
            cost = self.ctx.count_tokens(job.text) + 2
            if batch and (used + cost > self.budget or len(batch) == MAX_BATCH_UNITS):
                yield batch
                batch, used = [], 0
            batch.append(job)
            used += cost
        if batch:
            yield batch

    def generate(self, texts: list[str], greedy: bool) -> str:
        sampling = self.ctx.sampling
        # Translation wants the likeliest wording, and placeholders and names must repeat unpenalised.
        # One paragraph sent means one paragraph back: a blank line starts chatter, not translation.
        sampling = replace(
            sampling,
            temperature=0.0 if greedy else min(sampling.temperature, 0.3),
            repeat_penalty=1.0,
            stop=("\n\n",) if len(texts) == 1 else (),
        )
        tokens = sum(self.ctx.count_tokens(t) for t in texts)
        return self.ctx.generate(
            self.messages("\n\n".join(texts)), sampling=sampling, max_tokens=2 * tokens + 16 * len(texts)
        )

    def run(self, batch: list[_Job], masks: dict[int, Masked]) -> None:
        """Fill each job's result from the batch's answer, else from a greedy retry alone (else it stays None)."""
        self.ctx.check_cancel()
        answer = self.generate([j.text for j in batch], greedy=False)
        parts = _PARAGRAPH_BREAK.split(answer.strip()) if len(batch) > 1 else [answer]
        if len(parts) == len(batch):
            for job, part in zip(batch, parts, strict=True):
                job.result = checked(part, job.text, masks[job.unit])
        for job in batch:
            if job.result is None:
                job.result = checked(self.generate([job.text], greedy=True), job.text, masks[job.unit])

    def render(self, piece: Piece, masked: Masked, jobs: list[_Job]) -> str:
        """The unit's translation laid out like the original, or the original when any part failed."""
        if not jobs:
            return piece.text
        if any(j.result is None for j in jobs):
            self.ctx.details["kept_original"] += 1
            return piece.text
        # Lay out the masked text first: whitespace inside code spans and URLs must not be touched.
        text = " ".join(j.result or "" for j in jobs)  # (none is None: checked above)
        if piece.kind == "paragraph":
            text = ("\n" + piece.continuation).join(line.strip() for line in text.splitlines() if line.strip())
        else:
            text = " ".join(text.split())
            if piece.kind == "cell":  # a pipe of the model's own would split the cell
                text = re.sub(r"(?<!\\)\|", r"\\|", text)
        return masked.restore(text)
