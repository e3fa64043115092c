"""The agent loop: the model asks for tool calls, the user approves them, they run, their results go back to
the model, and so on until it answers without a call.

It is an answer's step function (``fn(ctx)``, engine/tasks/base.py), so an answer that uses tools is saved,
traced, cancelled and ended like any other; what it adds are the tool calls' events (engine/answer.py):

    step      one generation over the conversation so far, with the tools offered (``ctx.generate_step``)
    per call  ToolCallStarted -> checked (a tool that exists, arguments that fit its schema) -> approved
              (trusted, allowed for the conversation, or ApprovalNeeded and the user's answer on the handle)
              -> run on a thread of its own, with a timeout and a cancel event -> ToolCallEnded
    results   go back to the model as ``tool`` messages, capped in size; the next step reads them

A call that cannot run (an unknown tool, arguments that do not fit, a call the user denied, one that failed
or ran out of time) goes back to the model as a result that says so, in words it can act on. Nothing a
tool returns can approve or start anything: only ``AnswerHandle.approve`` answers an approval, and every
call the model asks for after reading a result is checked and approved like the first.

Budgets (``AgentSettings``): model steps, tokens the model writes over all of them, and wall-clock seconds
(not counting the time the answer waits for the user). A model that keeps calling is stopped at the step
budget, and the answer ends failed, saying so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from engine.answer import ToolCallEnded, ToolCallStarted
from engine.chat_settings import AgentSettings
from engine.errors import EngineError
from engine.runtime.types import ChatMessage
from engine.tasks.base import TaskCancelled, TaskContext
from engine.tools.base import Approval, Tool, ToolCall, ToolResult, ToolSpec
from engine.tools.results import capped
from engine.trace import spans
from engine.trace.tracing import Tracing, set_attributes

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 3  # a safe under-estimate of characters per token, for sizing results to the window
STUCK_TOOL_GRACE_S = 2.0  # how long a tool that was told to stop may take before it is left behind


class AgentStopped(EngineError):
    """An answer that uses tools ran out of one of its budgets (steps, tokens, time) before it answered."""

    code = "agent_budget"


class ApprovalPolicy:
    """Which tool calls of one answer run without asking: trusted tools (by name, or a whole MCP server as
    "server/*"), read-only ones when the user trusts those, and tools the user allowed for the conversation
    (now or before: ``remembered``).

    ``remember``: called with a tool's name when the user allows it for the conversation (the Assistant
    saves it with the conversation); an answer that is not saved remembers it for itself only.
    """

    def __init__(
        self, settings: AgentSettings, remembered: Iterable[str] = (), remember: Callable[[str], None] | None = None
    ):
        self.trusted = frozenset(settings.trusted)
        self.trust_read_only = settings.trust_read_only
        self.allowed = set(remembered)
        self._remember = remember

    def granted(self, spec: ToolSpec) -> str | None:
        """Why a call of this tool needs no asking ("trusted", "read_only", "conversation"), else None."""
        server = spec.name.split("/", 1)[0] + "/*" if "/" in spec.name else None
        if spec.name in self.trusted or (server is not None and server in self.trusted):
            return "trusted"
        if spec.read_only and self.trust_read_only:
            return "read_only"
        if spec.name in self.allowed:
            return "conversation"
        return None

    def record(self, name: str, approval: Approval) -> None:
        """The user's answer to one call; "conversation" allows the tool for the rest of the conversation."""
        if approval != "conversation" or name in self.allowed:
            return
        self.allowed.add(name)
        if self._remember is not None:
            try:
                self._remember(name)
            except Exception:  # this answer still remembers it
                log.exception("could not save the approval of %s for the conversation", name)


class _Running:
    """One tool call on its thread: its cancel event, and a wake-up for the loop (the call ended or the
    answer was stopped: Cancellation calls ``cancel``)."""

    def __init__(self) -> None:
        self.stop = threading.Event()  # the tool's cancel event
        self.wake = threading.Event()
        self.result: ToolResult | None = None
        self.error: BaseException | None = None
        self.finished = threading.Event()

    def cancel(self) -> None:
        self.stop.set()
        self.wake.set()


class Agent:
    """One answer's agent loop over ``messages`` (the conversation, the question last), with ``tools``.

    ``run`` is the answer's step function. What the calls came to is kept in ``ctx.details["tool_calls"]``
    (saved with the answer: name, arguments, status, result, duration) and their sources in ``ctx.citations``.
    """

    def __init__(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[Tool],
        tool_choice: str,
        settings: AgentSettings,
        policy: ApprovalPolicy,
        tracing: Tracing,
    ):
        self.messages = tuple(messages)
        self.tools = {tool.spec.name: tool for tool in tools}
        self.specs = tuple(tool.spec for tool in tools)
        self.tool_choice = tool_choice
        self.settings = settings
        self.policy = policy
        self.tracing = tracing
        self.steps = 0
        self._began = 0.0
        self._waited = 0.0  # seconds spent waiting for the user's approval (not counted against max_seconds)

    # The loop -----------------------------------------------------------------------------

    def run(self, ctx: TaskContext) -> None:
        """Steps until the model answers without a call (its text streamed as the answer), or a budget ends."""
        self._began = time.monotonic()
        messages = list(self.messages)
        choice = self.tool_choice
        calls: list[dict] = ctx.details.setdefault("tool_calls", [])
        try:
            for step in range(1, self.settings.max_steps + 1):
                self.steps = step
                self._check_budgets(ctx)
                forced = choice != "auto"
                done = ctx.generate_step(
                    messages, tools=self.specs, tool_choice=choice, stream=not forced, max_tokens=self._tokens_left(ctx)
                )
                if not done.tool_calls:
                    if forced:
                        ctx.emit_text(done.text)  # a forced step is not streamed (it should have been a call)
                    return None  # the answer: everything said
                # Words beside a forced call stay out of the answer (cut short, they are a call's broken
                # remains); the model still sees them in its own turn.
                messages.append(ChatMessage("assistant", done.text, tool_calls=tuple(done.tool_calls)))
                for call in done.tool_calls:
                    result = self._call(ctx, call, step, calls)
                    # A call the model wrote badly may lack a name (or an id): the result still answers it.
                    messages.append(
                        ChatMessage("tool", result.text, tool_call_id=call.id or None, name=call.name or None)
                    )
                if self.settings.reset_tool_choice:
                    choice = "auto"
            raise AgentStopped(
                f"The model was still calling tools after {self.settings.max_steps} steps, the most one answer "
                "may take, so it was stopped.",
                hint="Ask a narrower question, or allow more steps in Settings → Tools.",
            )
        finally:
            if ctx.span is not None:
                set_attributes(ctx.span, {"locus.agent.steps": self.steps, "locus.agent.tool_calls": len(calls)})

    def _tokens_left(self, ctx: TaskContext) -> int:
        return max(1, min(ctx.sampling.max_tokens, self.settings.max_tokens - ctx.stats.completion_tokens))

    def _seconds_left(self) -> float:
        return self.settings.max_seconds - (time.monotonic() - self._began - self._waited)

    def _check_budgets(self, ctx: TaskContext) -> None:
        s = self.settings
        if ctx.stats.completion_tokens >= s.max_tokens:
            raise AgentStopped(
                f"The model wrote {ctx.stats.completion_tokens} tokens over its steps without "
                f"an answer, the most one answer may ({s.max_tokens}), so it was stopped.",
                hint="Ask a narrower question, or allow more tokens in Settings → Tools.",
            )
        if self._seconds_left() <= 0:
            raise AgentStopped(
                f"The answer took more than {s.max_seconds:g} seconds with its tools, the most "
                "one answer may, so it was stopped.",
                hint="Ask a narrower question, or allow more time in Settings → Tools.",
            )

    # One call -----------------------------------------------------------------------------

    def _call(self, ctx: TaskContext, call: ToolCall, step: int, calls: list[dict]) -> ToolResult:
        """Check, approve, run and cap one call; its events and span. Raises TaskCancelled on a stop."""
        tool = self.tools.get(call.name)
        spec = tool.spec if tool is not None else None
        ctx.emit(ToolCallStarted(ctx.answer_id, call, step))
        cancelled = False
        with spans.executing_tool(self.tracing, ctx.span, call, spec, step) as stage:
            try:
                result = self._handle(ctx, call, tool, stage)
            except TaskCancelled:
                cancelled = True
                result = ToolResult(call.id, "cancelled", "The call was stopped: the answer was cancelled.")
            result = self._capped(ctx, result)
            stage.result = result
        calls.append(
            {
                "id": call.id,
                "name": call.name,
                "arguments": call.arguments,
                "step": step,
                "status": result.status,
                "approval": stage.approval,
                "result": result.text,
                "truncated": result.truncated,
                "duration_s": round(result.duration_s, 6),
            }
        )
        ctx.citations.extend(result.citations)
        ctx.emit(ToolCallEnded(ctx.answer_id, result))
        if cancelled:
            raise TaskCancelled()
        return result

    def _handle(self, ctx: TaskContext, call: ToolCall, tool: Tool | None, stage: spans.ToolStage) -> ToolResult:
        problem = self._problem(call, tool)
        if problem is not None:
            return ToolResult(call.id, "error", problem)
        assert tool is not None
        stage.approval = self.policy.granted(tool.spec)
        if stage.approval is None:
            asked = time.monotonic()
            try:
                approval = ctx.wait_for_approval(call)
            finally:
                self._waited += time.monotonic() - asked
            stage.approval = approval
            self.policy.record(call.name, approval)
            if approval == "deny":
                return ToolResult(
                    call.id,
                    "denied",
                    f"The user did not allow this call of {call.name}. Do not "
                    "call it again for this question: answer without it, or "
                    "say what you would need.",
                )
        ctx.check_cancel()
        return self._run(ctx, call, tool)

    def _problem(self, call: ToolCall, tool: Tool | None) -> str | None:
        """Why a call cannot run, in words the model can act on (None: it can)."""
        error = getattr(call, "error", None)
        if error:
            return f"The call could not be run: {error} Call a tool again, correctly, or answer without it."
        if tool is None:
            names = ", ".join(self.tools) or "none"
            return f"There is no tool named '{call.name}'. The tools you can call are: {names}."
        if not isinstance(call.arguments, dict):
            return f"The arguments for {call.name} must be a JSON object. Call it again with an object."
        invalid = schema_problem(tool.spec.parameters, call.arguments)
        if invalid is not None:
            return (
                f"The arguments for {call.name} do not fit its schema: {invalid}. Call it again with arguments that do."
            )
        return None

    def _run(self, ctx: TaskContext, call: ToolCall, tool: Tool) -> ToolResult:
        """Run a call on a thread of its own: it ends with its result, its timeout, or the answer's stop
        (the tool's cancel event is set then, and a tool that does not stop is left behind)."""
        timeout = max(0.001, min(self.settings.call_timeout_s, self._seconds_left()))
        running = _Running()
        began = time.perf_counter()

        def work() -> None:
            try:
                running.result = tool.run(dict(call.arguments), running.stop, timeout)
            except BaseException as exc:  # noqa: BLE001 - a failing tool fails its call only
                running.error = exc
            finally:
                running.finished.set()
                running.wake.set()

        thread = threading.Thread(target=work, name=f"locus-tool-{call.name}", daemon=True)
        ctx.cancellation.attach(running)
        try:
            thread.start()
            running.wake.wait(timeout)
        finally:
            ctx.cancellation.detach()
        elapsed = time.perf_counter() - began
        if ctx.cancelled:
            running.stop.set()
            running.finished.wait(STUCK_TOOL_GRACE_S)  # a tool that heeds its event ends its work here
            raise TaskCancelled()
        if not running.finished.is_set():
            running.stop.set()
            return ToolResult(
                call.id,
                "timeout",
                f"{call.name} did not finish within {timeout:g} seconds and was stopped.",
                duration_s=elapsed,
            )
        if running.error is not None:
            error = running.error
            words = error.user_text() if isinstance(error, EngineError) else f"{type(error).__name__}: {error}"
            log.info("tool %s failed: %s", call.name, words)
            return ToolResult(call.id, "error", f"{call.name} failed: {words}", duration_s=elapsed)
        result = running.result
        if not isinstance(result, ToolResult):
            return ToolResult(call.id, "error", f"{call.name} returned no result.", duration_s=elapsed)
        return ToolResult(call.id, result.status, str(result.text), result.truncated, elapsed, tuple(result.citations))

    def _capped(self, ctx: TaskContext, result: ToolResult) -> ToolResult:
        """The result cut to the settings' size, and to a quarter of the model's window at most."""
        limit = min(self.settings.result_max_chars, max(500, ctx.n_ctx * CHARS_PER_TOKEN // 4))
        text, cut = capped(result.text, limit)
        if not cut:
            return result
        return ToolResult(result.call_id, result.status, text, True, result.duration_s, result.citations)


def schema_problem(schema: dict, arguments: dict) -> str | None:
    """What is wrong with ``arguments`` for a tool's JSON schema, in one sentence (None: they fit)."""
    import jsonschema

    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        error = jsonschema.exceptions.best_match(cls(schema).iter_errors(arguments))
    except jsonschema.SchemaError as exc:
        return f"the tool's own schema is broken ({exc.message})"
    except Exception as exc:  # noqa: BLE001 - a server's schema is untrusted: whatever it breaks fails this call only
        return f"the tool's own schema could not be applied ({type(exc).__name__})"
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message}{f' (at {where})' if where else ''}"
