"""Tool calls on the bundled model: how many are valid with the grammar and without it, and what the agent
loop costs per step.

Valid calls: 50 requests (``PROMPTS``), each offering the same three tools (add, search_notes, time_in) and
asking for a call, greedily, on the same prompt both ways:

- grammar: ``GenerationRequest(tools=..., tool_choice="required")``: the runtime describes the tools in the
  system prompt (SmolLM2's template cannot show them) and holds the answer to calls that parse and fit
  their schemas (engine/tools/grammar.py); the calls come back in ``Done.tool_calls``.
- free: the same system prompt and tool description, no grammar; the model's text is read by the generic
  format's parser (engine/tools/formats.py, Hermes ``<tool_call>`` or bare JSON).

A request counts as valid when it gave at least one call and every call parsed, named an offered tool and
fitted its schema (``ToolCall.error`` is None); "right tool" when its first call was the tool the prompt
was written for.

Overhead per step: an answer through ``Assistant.ask`` with an instant trusted tool and tool_choice
"required" (a call, its result, then the answer: two model steps), beside a plain answer to the same
question. Overhead is the answer's wall-clock time (ask() to AnswerEnded) minus its generations' own time
(queue, prompt evaluation, decoding) and its tool's run time; for the agent it is given per model step.

    .venv/bin/python bench/tool_calls.py [--answers 10] [--threads N] [--model PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.answer import AnswerEnded, ToolCallEnded
from engine.assistant import Assistant
from engine.chat_settings import AgentSettings, ChatSettings
from engine.history.store import HistoryStore
from engine.models.bundled import bundled_llm_path
from engine.runtime.backend import BackendRegistry
from engine.runtime.native import default_threads
from engine.runtime.runtime import Runtime
from engine.runtime.types import ChatMessage, GenerationRequest, ModelConfig, SamplingParams
from engine.tools.base import ToolResult, ToolSpec
from engine.tools.formats import GENERIC, parse_calls
from engine.tools.grammar import describe_tools

SYSTEM = "You are a helpful assistant. Use the tools you are given."
TOOLS = (
    ToolSpec(
        "add",
        "Add two whole numbers a and b.",
        {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    ),
    ToolSpec(
        "search_notes",
        "Search the user's notes for a few words.",
        {
            "type": "object",
            "properties": {"query": {"type": "string", "maxLength": 80}},
            "required": ["query"],
            "additionalProperties": False,
        },
    ),
    ToolSpec(
        "time_in",
        "The current time in a city.",
        {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 40}},
            "required": ["city"],
            "additionalProperties": False,
        },
    ),
)
_SUMS = [
    (17, 25),
    (120, 44),
    (9, 91),
    (1234, 4321),
    (3, 4),
    (250, 750),
    (68, 32),
    (11, 12),
    (500, 501),
    (77, 23),
    (42, 58),
    (6, 7),
    (1000, 2000),
    (15, 85),
    (33, 66),
    (8, 9),
    (140, 260),
]
_NOTES = [
    "the ferry timetable",
    "my dentist appointment",
    "the wifi password hint",
    "the recipe for rye bread",
    "what Anna said about the budget",
    "the trip to Lisbon",
    "the book club list",
    "the garden plan",
    "the car insurance renewal",
    "my running times",
    "the meeting with Tom",
    "the birthday gift ideas",
    "the plumber's number",
    "the quarterly figures",
    "the lecture on tides",
    "the hiking route",
    "the bike repair",
]
_CITIES = [
    "Tokyo",
    "Lisbon",
    "New York",
    "Nairobi",
    "Sydney",
    "Oslo",
    "Lima",
    "Cairo",
    "Seoul",
    "Toronto",
    "Berlin",
    "Mumbai",
    "Mexico City",
    "Reykjavik",
    "Jakarta",
    "Athens",
]
PROMPTS: list[tuple[str, str]] = (
    [(f"What is {a} plus {b}?", "add") for a, b in _SUMS]
    + [(f"Find {n} in my notes.", "search_notes") for n in _NOTES]
    + [(f"What time is it in {c} right now?", "time_in") for c in _CITIES]
)
assert len(PROMPTS) == 50


class Adder:
    """An instant tool for the overhead runs."""

    spec = TOOLS[0]

    def run(self, arguments: dict, cancel: threading.Event, timeout_s: float) -> ToolResult:
        return ToolResult("", "ok", str(arguments.get("a", 0) + arguments.get("b", 0)))


class Toolbox:
    def resolve(self, names):
        return [Adder() for _ in names]


def valid(calls) -> bool:
    return bool(calls) and all(c.error is None for c in calls)


def call_shares(runtime: Runtime, sampling: SamplingParams) -> dict:
    """Valid and right-tool shares over PROMPTS, with the grammar and without it."""
    counts = {"grammar": [0, 0], "free": [0, 0]}
    free_system = SYSTEM + "\n\n" + describe_tools(TOOLS, "required")
    for question, tool in PROMPTS:
        guided = runtime.submit(
            GenerationRequest(
                (ChatMessage("system", SYSTEM), ChatMessage("user", question)),
                sampling,
                tools=TOOLS,
                tool_choice="required",
            )
        ).wait()
        free = runtime.submit(
            GenerationRequest((ChatMessage("system", free_system), ChatMessage("user", question)), sampling)
        ).wait()
        _text, free_calls = parse_calls(free.text, GENERIC, TOOLS)
        for path, calls in (("grammar", guided.tool_calls), ("free", free_calls)):
            counts[path][0] += valid(calls)
            counts[path][1] += bool(calls) and calls[0].name == tool and calls[0].error is None
    return counts


def overheads(runtime: Runtime, sampling: SamplingParams, answers: int, folder: Path) -> dict:
    """Median overhead (ms) of a plain answer, and of an agent answer per model step."""
    history = HistoryStore(folder / "locus.sqlite3")
    settings = ChatSettings(SYSTEM, sampling, agent=AgentSettings(trusted=("add",)))
    assistant = Assistant(BackendRegistry.of(runtime), history, settings, tools=Toolbox())
    plain, agent, steps = [], [], []
    try:
        for i in range(answers + 1):  # the first of each is a warm-up
            question = f"What is {10 + i} plus {20 + i}?"
            for kind in ("plain", "agent"):
                began = time.perf_counter()
                if kind == "plain":
                    handle = assistant.ask(question)
                else:
                    handle = assistant.ask(question, tools=["add"], tool_choice="required")
                tool_s = 0.0
                for event in handle.events():
                    if isinstance(event, ToolCallEnded):
                        tool_s += event.result.duration_s
                    if isinstance(event, AnswerEnded):
                        break
                wall = time.perf_counter() - began
                st = event.stats
                assert event.complete, event
                spent = st.queue_s + st.prompt_eval_s + st.generation_s + tool_s
                if i == 0:
                    continue
                if kind == "plain":
                    plain.append((wall - spent) * 1000)
                else:
                    agent.append((wall - spent) * 1000 / st.generations)
                    steps.append(st.generations)
    finally:
        assistant.close()
        history.close()
    return {"plain": statistics.median(plain), "agent": statistics.median(agent), "steps": statistics.median(steps)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=10, help="answers of each kind for the overhead")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    model = args.model or str(bundled_llm_path())
    sampling = SamplingParams(temperature=0.0, seed=1, max_tokens=96)
    runtime = Runtime()
    info = runtime.load(ModelConfig(model, n_ctx=4096, n_threads=args.threads)).result(timeout=300)
    print(
        f"model: {info.name}, n_ctx {info.n_ctx}, threads {info.n_threads}; {len(PROMPTS)} prompts, 3 tools, "
        "greedy, 96 tokens at most"
    )
    try:
        counts = call_shares(runtime, sampling)
        print()
        print(f"{'path':<10}{'valid calls':>14}{'right tool':>14}")
        for path in ("grammar", "free"):
            ok, right = counts[path]
            print(
                f"{path:<10}{ok:>8}/{len(PROMPTS)} {ok / len(PROMPTS):>4.0%}{right:>8}/{len(PROMPTS)} "
                f"{right / len(PROMPTS):>4.0%}"
            )
        with tempfile.TemporaryDirectory() as folder:
            cost = overheads(runtime, sampling, args.answers, Path(folder))
        print()
        print(
            f"overhead beside the model (median of {args.answers} answers, ms; ask() to AnswerEnded, less queue, "
            "prompt evaluation, decoding and the tool's run)"
        )
        print(f"  plain answer               {cost['plain']:8.2f} ms")
        print(f"  agent answer, per step     {cost['agent']:8.2f} ms   ({cost['steps']:.0f} model steps per answer)")
    finally:
        runtime.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
