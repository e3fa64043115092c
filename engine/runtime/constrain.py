"""Constrained decoding: JSON schemas as GBNF grammars, and token healing.

Grammars are enforced by llama.cpp's own grammar sampler. JSON schemas are
converted with llama-cpp-python's converter, after a check that refuses the
keywords it would silently ignore (so what the grammar allows also validates).

Token healing (as in Guidance) fixes prompts that end in the middle of what the
model would write as one token, e.g. ``href="http:`` or ``is Par``: the last
prompt token(s) are taken back and the first generated token(s) must spell the
text they stood for, so the model can pick ``://`` or `` Paris`` instead of
being stuck after a lone ``:`` or `` Par``.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.errors import InvalidRequestError
from engine.runtime.grammar_check import limits_problem

# Keywords that do not constrain values, and those the converter turns into grammar.
_ANNOTATIONS = {
    "title",
    "description",
    "$schema",
    "$id",
    "$comment",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$defs",
    "definitions",
}
_SUPPORTED = _ANNOTATIONS | {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "anyOf",
    "allOf",
    "$ref",
    "pattern",
    "minLength",
    "maxLength",
    "format",
}
_HINTS = {
    "oneOf": "Use 'anyOf' (guided output cannot make the choices exclusive)",
    "minimum": "Remove the numeric bound or list the allowed numbers with 'enum'",
    "maximum": "Remove the numeric bound or list the allowed numbers with 'enum'",
    "exclusiveMinimum": "Remove the numeric bound or list the allowed numbers with 'enum'",
    "exclusiveMaximum": "Remove the numeric bound or list the allowed numbers with 'enum'",
}
# llama-cpp-python's string character rule lets raw control characters (a newline)
# into strings, which strict JSON parsers refuse; JSON needs them escaped.
_LOOSE_CHAR = r'[^"\\] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'
_STRICT_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'


def check_schema(schema: object) -> dict:
    """The schema, if it is a valid JSON schema that guided output can honour; else InvalidRequestError."""
    import jsonschema

    if not isinstance(schema, dict):
        raise InvalidRequestError('A JSON schema must be a JSON object, like {"type": "object", ...}.')
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
        _check_supported(schema, "")
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise InvalidRequestError(
            f"The JSON schema is not valid{f' at /{where}' if where else ''}: {exc.message}."
        ) from exc
    except RecursionError:
        raise InvalidRequestError("The JSON schema is nested too deeply to be used.") from None
    return schema


def _check_supported(node: object, where: str) -> None:
    if not isinstance(node, dict):
        if isinstance(node, bool):
            raise InvalidRequestError(
                f"The JSON schema uses a true/false schema at {where or '/'}, which guided output does not support.",
                hint="Write it as an object schema.",
            )
        return
    for key in node:
        if key not in _SUPPORTED:
            raise InvalidRequestError(
                f"The JSON schema uses '{key}' at {where or '/'}, which guided output does not support.",
                hint=(_HINTS.get(key) or "Remove it") + ".",
            )
    if "pattern" in node and ("minLength" in node or "maxLength" in node):
        raise InvalidRequestError(
            f"The JSON schema combines 'pattern' with a length limit at {where or '/'}.",
            hint="Put the length into the pattern, e.g. ^[a-z]{1,8}$.",
        )
    if "allOf" in node and not all(
        isinstance(c, dict) and ("properties" in c or "$ref" in c or "anyOf" in c) for c in node["allOf"]
    ):
        raise InvalidRequestError(
            f"The JSON schema uses 'allOf' at {where or '/'} with a part that is not an object with 'properties'.",
            hint="Guided output only merges object schemas.",
        )
    if isinstance(node.get("type"), list) and set(node) - _ANNOTATIONS - {"type"}:
        raise InvalidRequestError(
            f"The JSON schema lists several types at {where or '/'} together with other constraints.",
            hint="Write the choices with 'anyOf'.",
        )
    described = node.get("properties", {})
    for name in node.get("required", []):
        if name not in described:
            raise InvalidRequestError(
                f"The JSON schema requires '{name}' at {where or '/'} but does not describe it under 'properties'.",
                hint=f"Add '{name}' to 'properties'.",
            )
    for key in ("properties", "$defs", "definitions"):
        for name, sub in node.get(key, {}).items():
            _check_supported(sub, f"{where}/{key}/{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            _check_supported(node[key], f"{where}/{key}")
    for key in ("prefixItems", "anyOf", "allOf"):
        for i, sub in enumerate(node.get(key, [])):
            _check_supported(sub, f"{where}/{key}/{i}")


def schema_to_grammar(schema: dict) -> str:
    """The GBNF grammar whose every output parses as JSON and validates under ``schema``."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    check_schema(schema)
    try:
        grammar = json_schema_to_gbnf(json.dumps(schema))
    except (AssertionError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise InvalidRequestError(f"The JSON schema cannot be used to guide generation: {exc}.") from exc
    problem = limits_problem(grammar)
    if problem:  # each place a maxLength or maxItems allows nests one level; each enum value adds text
        raise InvalidRequestError(
            f"The JSON schema makes a grammar too large to guide generation: {problem}.",
            hint="Use smaller 'maxLength' and 'maxItems' limits, shorter enums, or fewer properties.",
        )
    return grammar.replace(_LOOSE_CHAR, _STRICT_CHAR)


# GBNF text split into comments, literals, character classes and rule names (with "::=" when defined).
_GBNF_PART = re.compile(r'#[^\n]*|"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|([a-zA-Z0-9-]+)\s*(::=)?|.', re.S)


def grammar_problem(grammar: str) -> str | None:
    """The commonest GBNF mistakes in words (no root rule, a rule used but not defined); None if neither.

    llama.cpp writes its own parse errors to stderr only, so this names them for the user.
    """
    defined, used = set(), []
    for match in _GBNF_PART.finditer(grammar):
        name, assigns = match.group(1), match.group(2)
        if name and not name.isdigit():  # digits are repetition counts, as in {2,5}
            (defined.add(name) if assigns else used.append(name))
    if "root" not in defined:
        return "it has no 'root' rule"
    missing = [name for name in used if name not in defined]
    return f"the rule '{missing[0]}' is used but never defined" if missing else None


def validation_error(schema: dict, value: object) -> str | None:
    """None when ``value`` is valid under ``schema``, else its most relevant problem in words."""
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"at /{where}: {error.message}" if where else error.message


class PieceIndex:
    """The vocabulary's token texts searchable by prefix; build once per model (about 50 ms)."""

    def __init__(self, pieces: Sequence[bytes]):
        self.pieces = pieces
        ordered = sorted((p, t) for t, p in enumerate(pieces) if p)
        self._keys = [p for p, _ in ordered]
        self._ids = [t for _, t in ordered]
        self._by_text: dict[bytes, list[int]] = {}
        for p, t in ordered:
            self._by_text.setdefault(p, []).append(t)

    def starting_with(self, prefix: bytes) -> list[int]:
        """Tokens whose text starts with ``prefix`` (``prefix`` itself included)."""
        i = bisect.bisect_left(self._keys, prefix)
        out = []
        while i < len(self._keys) and self._keys[i].startswith(prefix):
            out.append(self._ids[i])
            i += 1
        return out

    def extends(self, prefix: bytes) -> bool:
        """Whether some token's text is ``prefix`` followed by more."""
        i = bisect.bisect_right(self._keys, prefix)
        return i < len(self._keys) and self._keys[i].startswith(prefix)

    def proper_prefixes_of(self, text: bytes) -> list[int]:
        """Tokens whose text is a non-empty proper start of ``text``."""
        return [t for n in range(1, len(text)) for t in self._by_text.get(text[:n], ())]


@dataclass
class Healing:
    """Text taken back from the end of a prompt, and how much of it generation has spelled again."""

    removed: bytes  # what the backed-up tokens stood for
    n_tokens: int  # how many prompt tokens were taken back
    remaining: bytes = b""  # the part no generated token has covered yet

    def __post_init__(self) -> None:
        if not self.remaining:
            self.remaining = self.removed

    @property
    def active(self) -> bool:
        return bool(self.remaining)

    def allowed(self, index: PieceIndex) -> list[int]:
        """Tokens that keep the output consistent with the prompt: they start with what remains
        (ending healing), or are a start of it (healing goes on with the next token)."""
        return index.starting_with(self.remaining) + index.proper_prefixes_of(self.remaining)

    def consume(self, piece: bytes) -> bytes:
        """Advance past a generated token; returns the part of it that is new text (not the prompt's)."""
        if piece.startswith(self.remaining):
            new, self.remaining = piece[len(self.remaining) :], b""
            return new
        if self.remaining.startswith(piece):
            self.remaining = self.remaining[len(piece) :]
            return b""
        self.remaining = b""  # unreachable while sampling is restricted to allowed(); stay readable
        return piece


def heal(tokens: Sequence[int], index: PieceIndex, max_back: int = 3) -> tuple[list[int], Healing | None]:
    """Back the prompt up over the most trailing tokens (up to ``max_back``) whose joined text
    some single token extends; None when the prompt ends cleanly.

    Several tokens are taken back when together they start a longer token (``:`` ``/`` -> ``://``).
    Control tokens (empty text) are never taken back, and the first token always stays, so
    there is something to evaluate. The taken-back text always starts on a character boundary.
    """
    tokens = list(tokens)
    best, tail = 0, b""
    for k in range(1, min(max_back, len(tokens) - 1) + 1):
        piece = index.pieces[tokens[-k]]
        if not piece:
            break
        tail = piece + tail
        if 0x80 <= tail[0] < 0xC0:  # starts inside a UTF-8 character: go further back
            continue
        if index.extends(tail):
            best = k
    if best == 0:
        return tokens, None
    removed = b"".join(index.pieces[t] for t in tokens[-best:])
    return tokens[:-best], Healing(removed, best)
