"""The engine's front door for answers: conversations in, one stream of answer events out.

Every answer (a question, one from documents, a question asked again or edited, a task run as a turn)
takes the same path, on a thread of its own so that the caller (the GUI thread, too) gets its handle at
once:

    prepare   the conversation (made when new, its options saved) and the backend that answers (resolved once)
    retrieve  the question's passages, when the conversation answers from documents
    record    the question and the answer's placeholder: AnswerStarted names them
    generate  the answer's generations (engine/tasks/base.py), its text streamed as it comes; with tools, the
              agent loop (engine/agent.py): model -> tool calls -> approval -> run -> results -> model
    cite      the sources the answer rests on (answers from documents)
    save      the final state; then AnswerEnded

The history writer (engine/history/writer.py) saves the growing text on its own thread; the thread that
generates only hands it over. Each stage is traced by one wrapper (engine/trace/spans.py).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine import forgetting
from engine.agent import Agent, ApprovalPolicy
from engine.answer import AnswerEnded, AnswerStarted, AnswerStats, Cited, Outcome, Retrieved
from engine.answering import AnswerHandle, AnswerStream
from engine.assistants import Assistants, answered_by
from engine.chat_settings import ChatSettings
from engine.compaction import fold_summary
from engine.errors import EngineError, InvalidRequestError
from engine.forgetting import ConversationDeleted
from engine.history.store import UNSET, HistoryStore
from engine.history.writer import HistoryWriter
from engine.rag.cite import ranked_sources
from engine.rag.retrieve import Retrieval
from engine.runtime.backend import BackendRegistry
from engine.runtime.budget import context_window
from engine.runtime.generator import wrap_unexpected
from engine.runtime.types import ChatMessage, Priority, SamplingParams
from engine.tasks.base import TaskContext, run_steps
from engine.tasks.templates import TemplateLibrary
from engine.tools.base import TOOL_NAME, Tool
from engine.trace import spans
from engine.trace.tracing import Tracing
from engine.turns import Turn, TurnRequest, Turns, model_turns

log = logging.getLogger(__name__)

SOURCE_BUDGET_TOKENS = 1500  # at most this much of the prompt goes to sources (less on small contexts)

Steps = Callable[[TaskContext], str | None]


class DocumentsUnavailable(EngineError):
    """A conversation asked for documents but the document index is not open."""

    code = "documents_unavailable"


class ToolsUnavailable(EngineError):
    """A conversation asked for tools but no tools are set up in this process."""

    code = "tools_unavailable"


TOOL_CHOICES = ("auto", "none", "required")  # or one of the answer's tools, by name


@dataclass(frozen=True)
class _Job:
    """One answer's request with what was in force when it was asked (read once, on the caller's thread)."""

    turn: TurnRequest
    steps: Callable[[Turn, Retrieval | None, _Job, list[Tool]], Steps]  # the answer's generations
    settings: ChatSettings
    tracing: Tracing
    sampling: SamplingParams
    priority: Priority
    token_healing: bool
    tool_choice: str = "auto"
    # The assistant (engine/assistants.py): one chosen with the question (an id or None; UNSET: the
    # conversation's own), whether the request brought its own sampling, and who answered (saved with it).
    assistant: object = UNSET
    own_sampling: bool = False
    answered_by: dict | None = None


class Assistant:
    """Answers over saved conversations, on the registry's backends and one history store (and documents)."""

    def __init__(
        self,
        backends: BackendRegistry,
        history: HistoryStore,
        settings: ChatSettings | None = None,
        *,
        tracing: Tracing | None = None,
        library=None,
        templates: TemplateLibrary | None = None,
        monitor=None,
        traces=None,
        kv_spill_dir=None,
        writer: HistoryWriter | None = None,
        save_interval_s: float = 0.5,
        tools=None,
    ):
        self.backends = backends  # which backends exist now and the default; swapped whole on a settings change
        self.history = history
        self.settings = settings or ChatSettings()  # replaced whole; read once per request
        self.tracing = tracing or backends.resolve(None)[1].tracing  # idem
        self.library = library  # engine.rag.library.DocumentLibrary, set once the index is open
        # engine.tools.registry.ToolRegistry (anything with resolve(names) -> list[Tool]): the tools answers may call
        self.tools = tools
        self.templates = templates
        self.monitor = monitor  # engine.trace.monitor.Monitor: drift, relevance and support checks
        # The local trace store, also when recording is off (what was kept still goes with a delete),
        # and the folder conversation states spill to: a delete cleans both.
        self.traces = traces if traces is not None else self.tracing.store
        self.kv_spill_dir = kv_spill_dir
        self.writer = writer or HistoryWriter(history, save_interval_s=save_interval_s)
        self.turns = Turns(history, backends)
        self.presets = Assistants(history)  # the assistants conversations answer with
        self._running: set[threading.Thread] = set()  # answers on their way (close waits for them)
        self._running_lock = threading.Lock()
        self._calibrated_for: int | None = None  # documents in the index when the monitor was calibrated

    # Asking (each returns at once; what follows comes as events) ------------------------------

    def ask(
        self,
        text: str,
        conversation_id: int | None = None,
        on_event=None,
        *,
        collections=UNSET,
        backend=UNSET,
        tools: tuple[str, ...] | list[str] | None = None,
        tool_choice: str = "auto",
        priority: Priority = Priority.INTERACTIVE,
        sampling: SamplingParams | None = None,
        save: bool = True,
        earlier: tuple[ChatMessage, ...] = (),
        system_prompt: str | None = None,
        assistant: object = UNSET,
    ) -> AnswerHandle:
        """Answer a question, in a conversation (a new one when none is given).

        ``collections`` (None: no documents, []: all, or names), ``backend`` (None: the default, "local",
        "remote") and ``tools`` (names of the tools its answers may call; () for none) are saved on the
        conversation; left out (``tools`` None), it keeps what it had. With tools the answer runs the agent
        loop (engine/agent.py): each call waits for ``handle.approve`` unless its tool is trusted or allowed
        for the conversation. ``tool_choice`` (this question's only): "auto" (the model decides), "none",
        "required" (a call first) or a tool's name (that call first). ``sampling``: this question's own;
        None: the settings'. ``save`` False: nothing goes to history (no conversation) and the trace keeps
        timings and counts only; such an answer may bring its own ``earlier`` turns and ``system_prompt``
        (the local API's client's conversation; None: the settings'). ``assistant``: the id of the assistant
        that answers (None: none), saved on the conversation; left out, the conversation's own answers.
        """
        if not text.strip():
            raise InvalidRequestError("The question is empty.")
        if not save and conversation_id is not None:
            raise InvalidRequestError("An answer that is not saved cannot continue a saved conversation.")
        if save and (earlier or system_prompt is not None):
            raise InvalidRequestError("Only an answer that is not saved brings its own earlier turns.")
        chosen = UNSET if tools is None else _tool_names(tools)
        _check_tool_choice(tool_choice)
        return self._start(
            TurnRequest(
                "chat",
                text,
                conversation_id,
                collections=collections,
                backend=backend,
                tools=chosen,
                save=save,
                earlier=tuple(earlier),
                system_prompt=system_prompt,
            ),
            self._chat_steps,
            on_event,
            priority,
            sampling,
            tool_choice=tool_choice,
            assistant=assistant,
        )

    def regenerate(
        self,
        conversation_id: int,
        on_event=None,
        *,
        sampling: SamplingParams | None = None,
        message_id: int | None = None,
    ) -> AnswerHandle:
        """Answer a question again: the answer ``message_id`` (or its question; None: the last question of
        the branch shown). The new answer is a version beside the earlier ones, and the branch shown."""
        return self._start(
            TurnRequest("chat", None, conversation_id, replace="answer", message_id=message_id),
            self._chat_steps,
            on_event,
            Priority.INTERACTIVE,
            sampling,
        )

    def resend_edited(
        self,
        conversation_id: int,
        text: str,
        on_event=None,
        *,
        sampling: SamplingParams | None = None,
        message_id: int | None = None,
    ) -> AnswerHandle:
        """Ask an edited question in place of question ``message_id`` (None: the last of the branch shown):
        a new version beside it, starting a branch the conversation shows; the earlier one stays."""
        if not text.strip():
            raise InvalidRequestError("The question is empty.")
        return self._start(
            TurnRequest("chat", text, conversation_id, replace="exchange", message_id=message_id),
            self._chat_steps,
            on_event,
            Priority.INTERACTIVE,
            sampling,
        )

    def run_task(
        self,
        fn: Steps,
        request_text: str,
        conversation_id: int | None = None,
        on_event=None,
        *,
        name: str = "task",
        priority: Priority = Priority.INTERACTIVE,
        save: bool = True,
        backend=UNSET,
        sampling: SamplingParams | None = None,
        token_healing: bool | None = None,
    ) -> AnswerHandle:
        """Run a task (summarize, translate, ...) as a turn: ``request_text`` is saved as the question and
        the task's output streams into the answer. ``save`` False: nothing is saved (the terminal's task
        commands), and the trace keeps no text. ``sampling``/``token_healing``: this task's own; None: the
        settings'."""
        if not request_text.strip():
            raise InvalidRequestError("There is nothing to work on.")
        if self.templates is None:
            raise InvalidRequestError("No prompt templates are available.")
        if not save and conversation_id is not None:
            raise InvalidRequestError("A task that is not saved cannot run in a saved conversation.")
        return self._start(
            TurnRequest(name, request_text, conversation_id, backend=backend, save=save),
            lambda _turn, _retrieval, _job, _tools: fn,
            on_event,
            priority,
            sampling,
            token_healing,
        )

    def delete_conversation(self, conversation_id: int) -> ConversationDeleted:
        """Delete a conversation and everything derived from it (engine/forgetting.py)."""
        return forgetting.delete_conversation(self, conversation_id)

    def delete_branch(self, message_id: int) -> tuple[int, int, int]:
        """Delete a version of a message and all that follows it, with what derives from it
        (engine/forgetting.py); returns (messages, traces, cached states) removed."""
        return forgetting.delete_branch(self, message_id)

    def context_for(self, conversation_id: int) -> tuple[ChatMessage, ...]:
        """The conversation as the model will see it next: system prompt, then saved turns."""
        preset = self.presets.of_conversation(conversation_id)
        system = preset.system_prompt if preset is not None else self.settings.system_prompt
        # A summary (engine/compaction.py) joins the system prompt, as in every turn's prompt.
        system, earlier = fold_summary(system, model_turns(self.history.messages(conversation_id)))
        return (*((ChatMessage("system", system),) if system else ()), *earlier)

    def close(self, timeout: float = 30.0) -> None:
        """Wait for the answers on their way to end (stop the backends first: a running answer then ends
        stopped and is saved as partial), then for the history writer to save what it holds."""
        with self._running_lock:
            running = list(self._running)
        deadline = time.monotonic() + timeout
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.writer.close()

    # One answer, on its own thread -------------------------------------------------------------

    def _start(
        self,
        turn: TurnRequest,
        steps,
        on_event,
        priority: Priority,
        sampling: SamplingParams | None,
        token_healing: bool | None = None,
        *,
        tool_choice: str = "auto",
        assistant: object = UNSET,
    ) -> AnswerHandle:
        settings, tracing = self.settings, self.tracing  # what is in force now, whatever changes later
        job = _Job(
            turn,
            steps,
            settings,
            tracing if turn.save else tracing.without_content(),
            sampling or settings.sampling,
            priority,
            settings.token_healing if token_healing is None else token_healing,
            tool_choice,
            assistant,
            sampling is not None,
        )
        handle = AnswerHandle(on_event)
        thread = threading.Thread(
            target=self._run, args=(handle, job), name=f"locus-answer-{handle.answer_id}", daemon=True
        )
        with self._running_lock:
            self._running.add(thread)
        thread.start()
        return handle

    def _run(self, handle: AnswerHandle, job: _Job) -> None:
        stream = AnswerStream(handle)
        try:
            self._answer(stream, job)
        except BaseException as exc:
            log.exception("answer %s failed unexpectedly", handle.answer_id)
            if not stream.started:
                stream.start(AnswerStarted(handle.answer_id, job.turn.kind, None, None, None, "", None))
            stream.end(AnswerEnded(handle.answer_id, "failed", stream.said, AnswerStats(), None, wrap_unexpected(exc)))
        finally:
            with self._running_lock:
                self._running.discard(threading.current_thread())

    def _answer(self, stream: AnswerStream, job: _Job) -> None:
        """prepare → retrieve → record → generate → cite → save, then the end."""
        began, handle = time.perf_counter(), stream.handle
        try:
            turn = self.turns.prepare(job.turn)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes the answer's end
            self._refuse(stream, job.turn, exc, None)
            return
        try:
            job = self._with_assistant(turn, job)
        except BaseException as exc:  # noqa: BLE001 - an unknown assistant refuses the answer
            self.turns.forget(turn)
            self._refuse(stream, job.turn, exc, None, turn)
            return
        info = turn.backend.model_info
        with spans.answer(
            job.tracing,
            "ask" if job.turn.kind == "chat" else turn.kind,
            task=turn.kind,
            conversation_id=turn.conversation_id,
            backend=turn.backend_name,
            model=info.name if info else None,
            summary=turn.question,
            question=turn.question if job.turn.kind == "chat" else None,
            task_id=None if job.turn.kind == "chat" else handle.answer_id,
        ) as root:
            try:
                retrieval = self._retrieve(turn, job, root, handle)
                tools = self._tools_for(turn, job)
                self.turns.record(turn)
            except BaseException as exc:  # noqa: BLE001 - nothing is left behind of a turn that cannot go on
                self.turns.forget(turn)
                root.finish(self._refuse(stream, job.turn, exc, root.trace_id, turn))
                return
            handle.retrieval = retrieval
            saving = turn.assistant_message_id is not None
            if saving:
                stream.on_text = lambda piece, m=turn.assistant_message_id: self.writer.grow(m, piece)
            stream.start(
                AnswerStarted(
                    handle.answer_id,
                    turn.kind,
                    turn.conversation_id,
                    turn.user_message_id,
                    turn.assistant_message_id,
                    turn.backend_name,
                    root.trace_id,
                )
            )
            if retrieval is not None:
                stream.emit(Retrieved(handle.answer_id, retrieval.passages, tuple(turn.collections or ())))
            ctx = TaskContext(
                turn.backend,
                self.templates,
                job.sampling,
                stream,
                handle.cancellation,
                priority=job.priority,
                token_healing=job.token_healing,
                span=root.span,
                trace_parent=root.context,
                conversation_key=turn.conversation_key,
            )
            steps = job.steps(turn, retrieval, job, tools)
            outcome, text, error = run_steps(steps, ctx)
            citations = (*self._cite(job.tracing, root, retrieval, outcome, text), *ctx.citations)
            if retrieval is not None and retrieval.passages and outcome != "failed":
                # Every passage the model was given, those the answer rests on first (issue 19).
                citations = tuple(ranked_sources(retrieval.passages, citations))
            stats = ctx.stats.with_total(time.perf_counter() - began, ctx.details)
            if saving:
                self._save(turn, outcome, text, stats, error, citations, root.trace_id, job.answered_by)
            if citations:
                stream.emit(Cited(handle.answer_id, citations))
            ended = AnswerEnded(handle.answer_id, outcome, text, stats, root.trace_id, error)
            root.finish(ended)  # before the consumer hears of the end: its trace is complete by then
            stream.end(ended)

    def _refuse(
        self,
        stream: AnswerStream,
        request: TurnRequest,
        exc: BaseException,
        trace_id: str | None,
        turn: Turn | None = None,
    ) -> AnswerEnded:
        """End an answer that could not start: nothing of it is saved (AnswerStarted names no message)."""
        error = exc if isinstance(exc, EngineError) else wrap_unexpected(exc)
        if not isinstance(exc, EngineError):
            log.error("answer %s could not start", stream.answer_id, exc_info=exc)
        kept = None if turn is not None and turn.created else request.conversation_id
        stream.start(
            AnswerStarted(
                stream.answer_id,
                turn.kind if turn else request.kind,
                kept,
                None,
                None,
                turn.backend_name if turn else "",
                trace_id,
            )
        )
        return stream.end(AnswerEnded(stream.answer_id, "failed", "", AnswerStats(), trace_id, error))

    def _chat_steps(self, turn: Turn, retrieval: Retrieval | None, job: _Job, tools: list[Tool]) -> Steps:
        """A question's generations over the conversation (with sources, from documents): one, streamed; or,
        with tools, the agent loop's steps."""
        own = job.turn.system_prompt
        context = turn.context(job.settings.system_prompt if own is None else own, retrieval)
        if not tools:
            return lambda ctx: ctx.generate(context, stream=True)
        conversation_id = turn.conversation_id
        policy = ApprovalPolicy(
            job.settings.agent,
            turn.approved_tools,
            self._remember_approval(conversation_id) if conversation_id is not None else None,
        )
        return Agent(context, tools, job.tool_choice, job.settings.agent, policy, job.tracing).run

    def _with_assistant(self, turn: Turn, job: _Job) -> _Job:
        """The conversation's assistant (engine/assistants.py) gives a question its system prompt and sampling
        (sampling the request brought still wins); ``answered_by`` records who answered. A model the assistant
        names that is not the one answering is not loaded: the record names both."""
        if not job.turn.save:
            return job
        preset = self.presets.for_turn(turn.conversation_id, job.assistant)
        chat = job.turn.kind == "chat"
        settings, sampling = job.settings, job.sampling
        if preset is not None and chat:
            settings = dataclasses.replace(settings, system_prompt=preset.system_prompt)
            if not job.own_sampling:
                sampling = preset.sampling_params(sampling)
        system = settings.system_prompt if chat and job.turn.system_prompt is None else job.turn.system_prompt or ""
        record = answered_by(preset if chat else None, system, sampling, turn.backend.model_info)
        return dataclasses.replace(job, settings=settings, sampling=sampling, answered_by=record)

    def _remember_approval(self, conversation_id: int) -> Callable[[str], None]:
        """Saves a tool the user allowed for the whole conversation with it (reopening it keeps the approval)."""

        def remember(name: str) -> None:
            self.history.approve_tool(conversation_id, name)

        return remember

    def _tools_for(self, turn: Turn, job: _Job) -> list[Tool]:
        """The tools this answer may call (none for a task, or with tool_choice "none"); an unknown or
        unavailable tool, or a named choice that is not among them, refuses the answer."""
        if job.turn.kind != "chat" or not turn.tools or job.tool_choice == "none":
            if job.tool_choice not in ("auto", "none"):
                raise InvalidRequestError(
                    f"The tool choice '{job.tool_choice}' needs tools, and this conversation has none.",
                    hint="Choose its tools first.",
                )
            return []
        if self.tools is None:
            raise ToolsUnavailable("Tools are not available here.", hint="Ask without tools.")
        tools = list(self.tools.resolve(list(turn.tools)))
        if job.tool_choice not in TOOL_CHOICES and job.tool_choice not in {t.spec.name for t in tools}:
            raise InvalidRequestError(
                f"The tool choice '{job.tool_choice}' is not one of this conversation's "
                f"tools ({', '.join(turn.tools)})."
            )
        return tools

    def _retrieve(self, turn: Turn, job: _Job, root: spans.AnswerSpan, handle: AnswerHandle) -> Retrieval | None:
        """The question's passages when the conversation answers from documents, else None."""
        if turn.collections is None or job.turn.kind != "chat" or handle.cancellation.cancelled:
            return None
        library = self.library
        if library is None:
            raise DocumentsUnavailable(
                "The document index is not open yet.", hint="Wait a moment for it to load, then ask again."
            )
        budget = min(SOURCE_BUDGET_TOKENS, int(context_window(turn.backend.model_info) * 0.35))
        with spans.retrieving(
            job.tracing, root, turn.collections, question=turn.question, monitor=self.monitor
        ) as stage:
            # The model's own tokenizer lives on the runtime thread; ~3 characters per token
            # is a safe over-estimate, and the runtime's context fitting is the backstop.
            stage.result = library.retrieve(turn.question, turn.collections or None, lambda t: len(t) // 3 + 1, budget)
        return stage.result

    def _cite(
        self, tracing: Tracing, root: spans.AnswerSpan, retrieval: Retrieval | None, outcome: str, text: str
    ) -> tuple:
        """The sources an answer from documents rests on (and, for the monitor, how well it rests on them)."""
        if retrieval is None or not retrieval.passages or outcome == "failed":
            return ()
        try:
            with spans.citing(tracing, root) as stage:
                stage.result = tuple(self.library.cite(text, retrieval)) if text.strip() else ()
                if outcome == "complete":
                    stage.support = self._check_support(tracing, root, retrieval, text, stage.result)
            return stage.result
        except Exception:  # an answer without sources beats a lost answer
            log.exception("citations failed")
            return ()

    def _save(
        self,
        turn: Turn,
        outcome: Outcome,
        text: str,
        stats: AnswerStats,
        error: EngineError | None,
        citations,
        trace_id: str | None,
        answered_by: dict | None = None,
    ) -> None:
        """The answer's final state, through the writer (after the text it still holds); waits until written."""
        saved = {**stats.to_dict(), "trace_id": trace_id} if trace_id else stats.to_dict()
        assert turn.assistant_message_id is not None  # a saved turn has its answer's message (Turns.record)
        try:
            self.writer.finish(
                turn.assistant_message_id,
                outcome,
                text,
                stats=saved,
                error=error.user_text() if error is not None else None,
                # Without the passages' text: a document the user removes must not live on in the history
                # (the quote stays, as part of the answer; a reopened answer's top passage shows it).
                sources=[c.to_dict() for c in citations] or None,
                answered_by=answered_by,
            ).result()
        except Exception:  # the answer still reaches its reader
            log.exception("could not save answer %s", turn.assistant_message_id)

    def _check_support(self, tracing: Tracing, root: spans.AnswerSpan, retrieval: Retrieval, text: str, citations):
        """How well the answer's sentences rest on its cited passages (all retrieved ones if none is cited)."""
        if self.monitor is None or not text.strip():
            return None
        passages = [c.passage.text for c in citations] or [p.text for p in retrieval.passages]
        try:
            self._calibrate_if_needed()
            return self.monitor.record_answer(
                text, passages, self.library.embedder.embed, root.trace_id, keep_text=tracing.capture_content
            )
        except Exception:  # monitoring must never cost the user their answer
            log.exception("monitor could not check an answer's support")
            return None

    def _calibrate_if_needed(self) -> None:
        """Calibrate the monitor's levels on the index the first time, and again when it has grown or shrunk."""
        count = len(self.library.documents())
        known = self._calibrated_for
        if self.monitor.calibration is not None:
            if known is None:  # saved by an earlier run: taken as made for the index as it is now
                self._calibrated_for = count
                return
            if abs(count - known) <= 0.2 * max(known, 1):
                return
        self.monitor.calibrate(self.library.store.sample_chunks(200), self.library.embedder.embed)
        self._calibrated_for = count


def saved_source(citation) -> dict:
    """A source as a live answer shows it (the window, the API): ``Citation.to_dict()`` and the passage's text,
    which the window shows as the top passage (engine/rag/question_kind.top_passage). The history saves
    ``to_dict()`` alone, so that removing a document removes its text everywhere."""
    return {**citation.to_dict(), "text": citation.passage.text}


def _tool_names(tools) -> tuple[str, ...]:
    """Tool names as given to ``ask`` (a lone string is one name), checked for shape."""
    names = (tools,) if isinstance(tools, str) else tuple(tools)
    for name in names:
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise InvalidRequestError(
                f"'{name}' is not a tool's name.", hint="Tools are named like calculator or server/tool."
            )
    return names


def _check_tool_choice(choice: str) -> None:
    if not isinstance(choice, str) or not (choice in TOOL_CHOICES or TOOL_NAME.match(choice)):
        raise InvalidRequestError(f"The tool choice must be auto, none, required or a tool's name, not {choice!r}.")
