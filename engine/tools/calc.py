"""Exact arithmetic for the calculator tool: a small walker over Python's expression syntax, never eval.

Numbers are exact fractions (``0.1 + 0.2`` is 3/10, not 0.30000000000000004); the operators are
+ - * / // % ** (``^`` is read as a power too, as people write it) and parentheses. Powers need a
whole-number exponent, and results are bounded in size, so no expression can make Locus compute for
long or fill its memory.
"""

from __future__ import annotations

import ast
from fractions import Fraction

from engine.tools.errors import ToolError

MAX_EXPRESSION_CHARS = 1000
MAX_NODES = 400
MAX_EXPONENT = 10_000  # |n| in x ** n
MAX_RESULT_BITS = 33_300  # about 10,000 decimal digits in a numerator or denominator
APPROX_DIGITS = 30  # significant digits of the decimal shown beside a fraction that does not end


class CalculationError(ToolError):
    """An expression the calculator cannot or will not work out, with the reason in words."""

    code = "calculation_error"


def evaluate(expression: str) -> Fraction:
    """The exact value of an arithmetic ``expression``; raises CalculationError in words."""
    text = expression.strip()
    if not text:
        raise CalculationError("The expression is empty.")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise CalculationError(f"The expression is longer than {MAX_EXPRESSION_CHARS} characters.")
    text = text.replace("×", "*").replace("÷", "/").replace("−", "-")  # as people and models write them
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise CalculationError(f"'{text}' is not an arithmetic expression ({_syntax_reason(exc)}).") from exc
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise CalculationError(f"The expression has more than {MAX_NODES} parts.")
    return _Walker(text).value(tree.body)


def format_value(value: Fraction) -> str:
    """How a result is written: a whole number, an exact decimal, or a fraction with its decimal value."""
    if value.denominator == 1:
        return str(value.numerator)
    decimal = _exact_decimal(value)
    if decimal is not None:
        return decimal
    return f"{value.numerator}/{value.denominator} (≈ {_approximate(value)})"


def _syntax_reason(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError) and exc.msg:
        return exc.msg
    return "it could not be read"


class _Walker:
    def __init__(self, source: str):
        self.source = source

    def value(self, node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant):
            return self._number(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            operand = self.value(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp):
            return self._binary(node)
        raise CalculationError(
            f"'{_segment(self.source, node)}' is not arithmetic: only numbers, + - * / // % "
            "** ^ and parentheses are understood."
        )

    def _number(self, node: ast.Constant) -> Fraction:
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise CalculationError(f"{_segment(self.source, node)!s} is not a number.")
        if isinstance(node.value, int):
            return Fraction(node.value)
        # A decimal is read from its own digits, so 0.1 is exactly one tenth (the float is not).
        literal = _segment(self.source, node).replace("_", "")
        try:
            return Fraction(literal)
        except (ValueError, ZeroDivisionError) as exc:
            raise CalculationError(f"{literal} is not a number this calculator reads.") from exc

    def _binary(self, node: ast.BinOp) -> Fraction:
        left, right = self.value(node.left), self.value(node.right)
        op = node.op
        if isinstance(op, ast.Add):
            return _bounded(left + right)
        if isinstance(op, ast.Sub):
            return _bounded(left - right)
        if isinstance(op, ast.Mult):
            return _bounded(left * right)
        if isinstance(op, (ast.Div, ast.FloorDiv, ast.Mod)):
            if right == 0:
                raise CalculationError("Division by zero.")
            if isinstance(op, ast.Div):
                return _bounded(left / right)
            return _bounded(Fraction(left // right) if isinstance(op, ast.FloorDiv) else left % right)
        if isinstance(op, (ast.Pow, ast.BitXor)):
            return _power(left, right)
        raise CalculationError(f"'{_segment(self.source, node)}' uses an operator the calculator does not have.")


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1:
        raise CalculationError("Only whole-number powers are worked out exactly (no roots or fractional powers).")
    n = exponent.numerator
    if abs(n) > MAX_EXPONENT:
        raise CalculationError(f"The exponent {n} is too large (at most {MAX_EXPONENT:,}).")
    if base == 0 and n < 0:
        raise CalculationError("Division by zero (zero to a negative power).")
    size = max(base.numerator.bit_length(), base.denominator.bit_length())
    if size * abs(n) > MAX_RESULT_BITS:
        raise CalculationError("The result would be too large (more than about 10,000 digits).")
    return base**n


def _bounded(value: Fraction) -> Fraction:
    if max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_RESULT_BITS:
        raise CalculationError("The result would be too large (more than about 10,000 digits).")
    return value


def _segment(source: str, node: ast.AST) -> str:
    return ast.get_source_segment(source, node) or type(node).__name__


def _exact_decimal(value: Fraction) -> str | None:
    """The decimal that equals ``value`` exactly, or None when it never ends (a 3 or 7 in the denominator)."""
    d, twos, fives = value.denominator, 0, 0
    while d % 2 == 0:
        d, twos = d // 2, twos + 1
    while d % 5 == 0:
        d, fives = d // 5, fives + 1
    if d != 1:
        return None
    places = max(twos, fives)
    scaled = abs(value.numerator) * 10**places // value.denominator
    digits = str(scaled).rjust(places + 1, "0")
    sign = "-" if value < 0 else ""
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def _approximate(value: Fraction) -> str:
    """``value`` to APPROX_DIGITS significant digits (for a fraction whose decimal never ends)."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    whole_digits = len(str(value.numerator // value.denominator)) if value >= 1 else 0
    places = max(APPROX_DIGITS - whole_digits, 0)
    if value < 1:  # leading zeros after the point do not count as significant
        shift = 0
        while value * 10 ** (shift + 1) < 1:
            shift += 1
        places = shift + APPROX_DIGITS
    scaled = round(value * 10**places)
    digits = str(scaled).rjust(places + 1, "0")
    text = f"{digits[:-places]}.{digits[-places:]}" if places else digits
    return sign + (text.rstrip("0").rstrip(".") if "." in text else text)
