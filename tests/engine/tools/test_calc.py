"""The calculator tool: exact arithmetic by a small parser, never by running code, with bounded sizes."""

from __future__ import annotations

import threading

import pytest

from engine.tools.builtin import Calculator
from engine.tools.calc import CalculationError, evaluate, format_value
from engine.tools.config import ToolsConfig


@pytest.mark.parametrize(
    ("expression", "shown"),
    [
        ("0.1 + 0.2", "0.3"),  # exact, not 0.30000000000000004
        ("1/3", "1/3 (≈ 0.333333333333333333333333333333)"),
        ("2^10", "1024"),
        ("2 ** -2", "0.25"),
        ("(1.5 + 2) * 3 / 7", "1.5"),
        ("10 // 3", "3"),
        ("-7 % 3", "2"),
        ("1e3 / 8", "125"),
        ("3 × 4 − 2 ÷ 4", "11.5"),
        ("123456789 * 987654321", "121932631112635269"),
        ("0.000123 / 3", "0.000041"),
    ],
)
def test_exact_results(expression, shown):
    assert format_value(evaluate(expression)) == shown


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("__import__('os').system('true')", "not arithmetic"),
        ("open('/etc/passwd').read()", "not arithmetic"),
        ("x + 1", "not arithmetic"),
        ("[1, 2]", "not arithmetic"),
        ("'a' * 3", "is not a number"),
        ("True + 1", "is not a number"),
        ("1 / 0", "Division by zero"),
        ("0 ** -1", "Division by zero"),
        ("9 ** 9 ** 9", "too large"),
        ("10 ** 10000 * 10 ** 10000 * 10 ** 10000 * 10 ** 10000", "too large"),
        ("2 ** 0.5", "whole-number powers"),
        ("1 +", "is not an arithmetic expression"),
        ("", "empty"),
        ("1+" * 600 + "1", "longer than"),
    ],
)
def test_refusals_are_in_words(expression, words):
    with pytest.raises(CalculationError) as caught:
        evaluate(expression)
    assert words in caught.value.message


def test_the_tool_returns_the_result_or_the_error_as_its_result():
    tool = Calculator(lambda: ToolsConfig())
    ok = tool.run({"expression": "0.1 * 3"}, threading.Event(), 5)
    assert (ok.status, ok.text) == ("ok", "0.1 * 3 = 0.3")
    bad = tool.run({"expression": "__import__('os')"}, threading.Event(), 5)
    assert bad.status == "error" and "not arithmetic" in bad.text
    assert tool.spec.read_only and tool.spec.parameters["required"] == ["expression"]
