"""The engine's front door for chat: conversations in, streamed answers out.

``Assistant`` ties the history to the runtime: it saves the user's message
before anything is generated, streams the answer into a placeholder message
that is saved as it grows, and marks it complete, partial (cancelled) or
failed at the end. A conversation that uses documents gets the question's
passages retrieved first (on the caller's thread, never the model's) and its
answer's citations worked out afterwards (on a small helper thread), so the
events are: Retrieved, Started, Token..., Cited, Done. The window and the CLI
both talk to this class.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from engine.errors import EngineError, InvalidRequestError, NotFoundError
from engine.history.models import CONTEXT_STATUSES, Message
from engine.history.store import HistoryStore
from engine.rag.cite import Citation
from engine.rag.retrieve import Passage, Retrieval
from engine.runtime.backend import Backend, BackendRegistry
from engine.runtime.generator import wrap_unexpected
from engine.runtime.runtime import ChannelHandle, EventChannel, RequestHandle
from engine.tasks import doc_qa
from engine.tasks.base import TaskContext, TaskDone, TaskFailed, TaskHandle, TaskText, start_task
from engine.tasks.templates import TemplateLibrary
from engine.trace import spans
from engine.trace.tracing import Tracing, context_of, fail, trace_id_of
from engine.runtime.types import (
    ChatMessage,
    Done,
    Failed,
    GenerationRequest,
    Priority,
    SamplingParams,
    Token,
    next_request_id,
)

log = logging.getLogger(__name__)

_UNSET = object()
SOURCE_BUDGET_TOKENS = 1500  # at most this much of the prompt goes to sources (less on small contexts)


@dataclass(frozen=True)
class Retrieved:
    """The passages found for a question from documents, before generation starts."""

    request_id: int
    passages: tuple[Passage, ...]
    collections: list[str]


@dataclass(frozen=True)
class Cited:
    """The sources an answer from documents relies on (comes just before Done)."""

    request_id: int
    citations: tuple[Citation, ...]


@dataclass(frozen=True)
class ConversationDeleted:
    """What deleting a conversation removed: its messages, traces and cached model states."""

    conversation_id: int
    title: str
    messages: int
    traces: int
    cached_states: int

    def describe(self) -> str:
        """One sentence for people: 'Deleted conversation “Trip” and 3 traces.'"""
        traces = f"{self.traces} trace{'' if self.traces == 1 else 's'}"
        return f"Deleted conversation \u201c{self.title}\u201d and {traces}."


class DocumentsUnavailable(EngineError):
    """A conversation asked for documents but the document index is not open."""

    code = "documents_unavailable"


@dataclass(frozen=True)
class ChatSettings:
    """What every chat request gets unless it says otherwise."""

    system_prompt: str = "You are Locus, a helpful assistant running privately on the user's computer."
    sampling: SamplingParams = field(default_factory=SamplingParams)
    token_healing: bool = True  # for completion-style prompts (tasks, the local API)


class AnswerHandle(ChannelHandle):
    """One answer being generated: its conversation and messages, its events, and control.

    Events: Retrieved?, Started, Token..., Cited?, then Done or Failed.
    """

    def __init__(self, conversation_id: int, user_message: Message, assistant_message_id: int,
                 request_id: int, on_event: Callable[[object], None] | None):
        self.conversation_id = conversation_id
        self.user_message = user_message
        self.assistant_message_id = assistant_message_id
        self.request_id = request_id
        self.request: RequestHandle | None = None
        self.retrieval: Retrieval | None = None
        self.citations: tuple[Citation, ...] = ()
        self.channel = EventChannel(on_event)
        self.span = None  # the question's root span, ended just before the terminal event
        self.trace_id: str | None = None

    def cancel(self) -> None:
        if self.request is not None:
            self.request.cancel()


class _AnswerRecorder:
    """Persists a streaming answer or task output: every ``interval`` seconds while it grows, then its
    final state (complete, cancelled = partial, or failed; stopped before any text: removed)."""

    def __init__(self, history: HistoryStore, message_id: int, interval: float):
        self.history = history
        self.message_id = message_id
        self.interval = interval
        self.parts: list[str] = []
        self.last_save = time.monotonic()
        self.extra_stats: dict = {}  # saved with the final stats (the trace id)

    def __call__(self, event) -> None:
        if isinstance(event, (Token, TaskText)):
            self._grow(event.text)
        elif isinstance(event, Done):
            self._finish(event.text, event.stats.finish_reason == "cancelled",
                         dict(asdict(event.stats), **self.extra_stats))
        elif isinstance(event, TaskDone):
            self._finish(event.text, event.cancelled, event.stats)
        elif isinstance(event, (Failed, TaskFailed)):
            self.history.update_message(self.message_id, content="".join(self.parts), status="failed",
                                        error=event.error.user_text())

    def _grow(self, text: str) -> None:
        self.parts.append(text)
        now = time.monotonic()
        if now - self.last_save >= self.interval:
            self.history.update_message(self.message_id, content="".join(self.parts))
            self.last_save = now

    def _finish(self, text: str, cancelled: bool, stats: dict) -> None:
        if cancelled and not text.strip():
            self.history.delete_message(self.message_id)  # stopped before it said anything
            return
        self.history.update_message(self.message_id, content=text,
                                    status="cancelled" if cancelled else "complete", stats=stats)


class Assistant:
    """Chat over saved conversations, on the registry's backends and one history store (and documents, when open)."""

    def __init__(self, backends: BackendRegistry, history: HistoryStore, settings: ChatSettings | None = None,
                 *, save_interval_s: float = 0.5, library=None, templates: TemplateLibrary | None = None,
                 tracing: Tracing | None = None, monitor=None, traces=None, kv_spill_dir=None):
        self.backends = backends  # which backends exist now and the default; swapped whole on a settings change
        self.tracing = tracing or backends.resolve(None)[1].tracing
        self.monitor = monitor  # engine.trace.monitor.Monitor: drift, relevance and support checks
        # The local trace store, also when recording is off (what was kept still goes with a delete),
        # and the folder conversation states spill to: a delete cleans both.
        self.traces = traces if traces is not None else self.tracing.store
        self.kv_spill_dir = kv_spill_dir
        self._calibrated_for: int | None = None  # documents in the index when the monitor was calibrated
        self.templates = templates
        self.history = history
        self.settings = settings or ChatSettings()
        self.save_interval_s = save_interval_s
        self.library = library  # engine.rag.library.DocumentLibrary, opened off the GUI thread
        self._lock = threading.Lock()
        self._post = ThreadPoolExecutor(1, thread_name_prefix="locus-cite")

    def ask(
        self,
        text: str,
        conversation_id: int | None = None,
        on_event: Callable[[object], None] | None = None,
        *,
        collections=_UNSET,
        backend=_UNSET,
        priority: Priority = Priority.INTERACTIVE,
        sampling: SamplingParams | None = None,
    ) -> AnswerHandle:
        """Save the question (in a new conversation if none is given) and start answering it.

        ``collections`` (None: no documents, []: all, or names) and ``backend`` (None: the default,
        "local", "remote") are saved on the conversation; left out, it keeps what it had.
        ``sampling``: this question's own (`locus ask --temperature` ...); None: the settings'.
        """
        if not text.strip():
            raise InvalidRequestError("The question is empty.")
        with self._lock:
            created = conversation_id is None
            if created:
                conversation_id = self.history.create_conversation().id
            span = None
            try:
                if collections is not _UNSET:
                    self.history.set_collections(conversation_id, collections)
                if backend is not _UNSET:
                    self.history.set_backend(conversation_id, backend)
                span = self._start_span(conversation_id, text)
                # Everything that can fail (retrieval above all) happens before the question is
                # saved, so a failed ask never leaves a question without its answer behind.
                retrieval = self._retrieve_for(conversation_id, text, span)
            except BaseException as exc:
                if created:
                    self.history.delete_conversation(conversation_id)
                self._span_failed(span, exc)
                raise
            user = self.history.add_message(conversation_id, "user", text)
            return self._answer(conversation_id, user, retrieval, on_event, priority, span=span, sampling=sampling)

    def regenerate(self, conversation_id: int, on_event: Callable[[object], None] | None = None) -> AnswerHandle:
        """Drop the last answer and answer the last question again."""
        with self._lock:
            messages = self.history.messages(conversation_id)
            user = self._last(messages, "user", conversation_id)
            span = self._start_span(conversation_id, user.content)
            try:
                retrieval = self._retrieve_for(conversation_id, user.content, span)
            except BaseException as exc:
                self._span_failed(span, exc)
                raise
            self.history.delete_messages_from(conversation_id, user.id + 1)
            return self._answer(conversation_id, user, retrieval, on_event, Priority.INTERACTIVE, new_question=False,
                                span=span)

    def resend_edited(self, conversation_id: int, text: str,
                      on_event: Callable[[object], None] | None = None) -> AnswerHandle:
        """Replace the last question (and its answer) with an edited one and answer it."""
        if not text.strip():
            raise InvalidRequestError("The question is empty.")
        with self._lock:
            messages = self.history.messages(conversation_id)
            last_user = self._last(messages, "user", conversation_id)
            span = self._start_span(conversation_id, text)
            try:
                retrieval = self._retrieve_for(conversation_id, text, span)
            except BaseException as exc:
                self._span_failed(span, exc)
                raise
            self.history.delete_messages_from(conversation_id, last_user.id)
            user = self.history.add_message(conversation_id, "user", text)
            return self._answer(conversation_id, user, retrieval, on_event, Priority.INTERACTIVE, span=span)

    def delete_conversation(self, conversation_id: int) -> ConversationDeleted:
        """Delete a conversation and everything derived from it: its messages (and their search index
        entries), its traces, and its cached model states in RAM and spill files.

        Stop its running answer first; spans of it still on their way are dropped when they arrive.
        Traces already sent to an OTLP collector are beyond reach.
        """
        title = self.history.conversation(conversation_id).title  # NotFoundError for an unknown id
        key = f"conversation:{conversation_id}"
        states = 0
        for backend in self.backends.current().available.values():
            try:
                states += backend.forget(key).result(timeout=30)
            except Exception:  # noqa: BLE001 - a runtime that is gone holds nothing any more
                log.warning("a runtime could not drop the cache of conversation %s", conversation_id,
                            exc_info=True)
        if self.kv_spill_dir is not None:
            from engine.runtime.kv_states import remove_spilled

            states += remove_spilled(self.kv_spill_dir, key)
        messages = self.history.delete_conversation(conversation_id)
        traces = 0
        if self.traces is not None:
            self.tracing.flush()  # spans already ended are stored now, so the delete finds them
            traces = self.traces.forget_conversation(conversation_id)
        return ConversationDeleted(conversation_id, title, messages, traces, states)

    def start_task(self, fn: Callable[[TaskContext], str], on_event: Callable[[object], None] | None = None,
                   *, name: str = "task", priority: Priority = Priority.NORMAL) -> TaskHandle:
        """Run a task function (summarize, translate, ...) on its own thread; nothing is saved."""
        if self.templates is None:
            raise InvalidRequestError("No prompt templates are available.")
        return start_task(fn, self.runtime_for(None), self.templates, self.settings.sampling, on_event,
                          priority=priority, name=name, token_healing=self.settings.token_healing,
                          tracing=self.tracing)

    def run_task(self, fn: Callable[[TaskContext], str], request_text: str, conversation_id: int | None = None,
                 on_event: Callable[[object], None] | None = None, *, name: str = "task",
                 priority: Priority = Priority.INTERACTIVE) -> TaskHandle:
        """Run a task as a turn of a conversation: ``request_text`` is saved as the user's message
        at once, the output streams into an answer that is saved as it grows and ends complete,
        partial (cancelled) or failed. The handle gets ``conversation_id``, ``user_message`` and
        ``assistant_message_id``.
        """
        if not request_text.strip():
            raise InvalidRequestError("There is nothing to work on.")
        if self.templates is None:
            raise InvalidRequestError("No prompt templates are available.")
        with self._lock:
            if conversation_id is None:
                conversation_id = self.history.create_conversation().id
            user = self.history.add_message(conversation_id, "user", request_text)
            placeholder = self.history.add_message(conversation_id, "assistant", "", status="streaming")
        recorder = _AnswerRecorder(self.history, placeholder.id, self.save_interval_s)
        handle = start_task(fn, self.runtime_for(conversation_id), self.templates, self.settings.sampling, on_event, tap=recorder,
                            priority=priority, name=name, token_healing=self.settings.token_healing,
                            tracing=self.tracing, summary=request_text, conversation_id=conversation_id)
        handle.conversation_id = conversation_id
        handle.user_message = user
        handle.assistant_message_id = placeholder.id
        return handle

    def close(self) -> None:
        self._post.shutdown(wait=True)

    # ------------------------------------------------------------------------------

    @staticmethod
    def _last(messages: list[Message], role: str, conversation_id: int) -> Message:
        for message in reversed(messages):
            if message.role == role:
                return message
        raise NotFoundError(f"Conversation {conversation_id} has no {role} message to work from.")

    def runtime_for(self, conversation_id: int | None) -> Backend:
        """The backend that answers in a conversation: the one it chose, else the default
        (BackendUnavailableError when the one it chose is not set up)."""
        name = self.history.conversation(conversation_id).backend if conversation_id is not None else None
        return self.backends.resolve(name)[1]

    def context_for(self, conversation_id: int) -> tuple[ChatMessage, ...]:
        """The conversation as the model will see it: system prompt, then saved turns."""
        context = [ChatMessage("system", self.settings.system_prompt)] if self.settings.system_prompt else []
        context.extend(self._turns(self.history.messages(conversation_id)))
        return tuple(context)

    @staticmethod
    def _turns(messages: list[Message]) -> list[ChatMessage]:
        return [ChatMessage(m.role, m.content) for m in messages
                if m.status in CONTEXT_STATUSES and m.content.strip()]

    def _start_span(self, conversation_id: int, question: str):
        info = self.runtime_for(conversation_id).model_info
        uses_documents = self.history.conversation(conversation_id).uses_documents
        return spans.start_ask(self.tracing, question, conversation_id, info.name if info else None, uses_documents)

    def _span_failed(self, span, error: BaseException) -> None:
        if span is not None:
            spans.finish_root(self.tracing, span, Failed(0, wrap_unexpected(error)))

    def _retrieve_for(self, conversation_id: int, question: str, span=None) -> Retrieval | None:
        """The question's passages when the conversation answers from documents, else None."""
        conversation = self.history.conversation(conversation_id)
        if not conversation.uses_documents:
            return None
        if self.library is None:
            raise DocumentsUnavailable("The document index is not open yet.",
                                       hint="Wait a moment for it to load, then ask again.")
        info = self.runtime_for(conversation_id).model_info
        n_ctx = info.n_ctx if info else 4096
        budget = min(SOURCE_BUDGET_TOKENS, int(n_ctx * 0.35))
        # The model's own tokenizer lives on the runtime thread; ~3 characters per token
        # is a safe over-estimate, and the runtime's context fitting is the backstop.
        start_ns = time.time_ns()
        try:
            retrieval = self.library.retrieve(question, conversation.collections or None,
                                              lambda t: len(t) // 3 + 1, budget)
        except BaseException as exc:
            if span is not None:
                spans.retrieval_failed(self.tracing, span, start_ns, exc)
            raise
        if span is not None:
            child = spans.record_retrieval(self.tracing, span, retrieval, start_ns, conversation.collections)
            self._observe_question(question, retrieval, span, child)
        return retrieval

    def _observe_question(self, question: str, retrieval: Retrieval, root, child) -> None:
        """Give the monitor the question's embedding and nearest-chunk similarity (drift, relevance)."""
        if self.monitor is None or retrieval.query_vector is None:
            return
        try:
            flagged = self.monitor.record_question(question if self.tracing.capture_content else None,
                                                   retrieval.query_vector, retrieval.top_similarity,
                                                   trace_id_of(root))
        except Exception:  # noqa: BLE001 - monitoring must never cost the user their answer
            log.exception("monitor could not record a question")
            return
        if root.is_recording():
            root.set_attribute("locus.monitor.no_relevant_documents", bool(flagged))

    def _answer(self, conversation_id: int, user: Message, retrieval: Retrieval | None,
                on_event: Callable[[object], None] | None, priority: Priority,
                new_question: bool = True, span=None, sampling: SamplingParams | None = None) -> AnswerHandle:
        span = span if span is not None else self._start_span(conversation_id, user.content)
        try:
            runtime = self.runtime_for(conversation_id)
            if retrieval is not None:
                earlier = self._turns([m for m in self.history.messages(conversation_id) if m.id < user.id])
                context = doc_qa.build_messages(self.settings.system_prompt, earlier, user.content,
                                                retrieval.passages)
            else:
                context = self.context_for(conversation_id)
            placeholder = self.history.add_message(conversation_id, "assistant", "", status="streaming")
        except BaseException as exc:  # a question just saved goes again, so none is left without its answer
            self.history.delete_messages_from(conversation_id, user.id if new_question else user.id + 1)
            self._span_failed(span, exc)
            raise
        request_id = next_request_id()
        answer = AnswerHandle(conversation_id, user, placeholder.id, request_id, on_event)
        answer.retrieval = retrieval
        answer.span, answer.trace_id = span, trace_id_of(span)
        if retrieval is not None:
            collections = self.history.conversation(conversation_id).collections or []
            answer.channel.emit(Retrieved(request_id, retrieval.passages, list(collections)))
        recorder = _AnswerRecorder(self.history, placeholder.id, self.save_interval_s)
        if answer.trace_id:
            recorder.extra_stats["trace_id"] = answer.trace_id
        request = GenerationRequest(context, sampling or self.settings.sampling, priority=priority,
                                    request_id=request_id,
                                    conversation_key=f"conversation:{conversation_id}")
        answer.request = runtime.submit(request, lambda event: self._deliver(answer, event), tap=recorder,
                                             trace_parent=context_of(span))
        return answer

    def _deliver(self, answer: AnswerHandle, event) -> None:
        """Runtime events to the answer's consumer; an answer from documents gets its citations first."""
        if isinstance(event, Done) and answer.retrieval is not None and answer.retrieval.passages:
            try:
                self._post.submit(self._cite_then_finish, answer, event)
                return
            except RuntimeError:  # shutting down: the answer ends without its sources
                pass
        if isinstance(event, (Done, Failed)):
            spans.finish_root(self.tracing, answer.span, event)
        answer.channel.emit(event)

    def _cite_then_finish(self, answer: AnswerHandle, done: Done) -> None:
        span = self.tracing.start("cite", answer.span)
        try:
            citations = tuple(self.library.cite(done.text, answer.retrieval)) if done.text.strip() else ()
            answer.citations = citations
            if citations:
                self.history.update_message(answer.assistant_message_id,
                                            sources=[c.to_dict() for c in citations])
            spans.record_citations(self.tracing, span, citations, self._check_support(answer, done, citations))
            answer.channel.emit(Cited(answer.request_id, citations))
        except Exception as exc:  # noqa: BLE001 - an answer without sources beats a lost answer
            log.exception("citations failed for request %s", answer.request_id)
            fail(span, exc)
        finally:
            span.end()
            spans.finish_root(self.tracing, answer.span, done)
            answer.channel.emit(done)

    def _check_support(self, answer: AnswerHandle, done: Done, citations):
        """How well the answer's sentences rest on its cited passages (all retrieved ones if none is cited)."""
        if self.monitor is None or not done.text.strip() or done.stats.finish_reason == "cancelled":
            return None
        passages = [c.passage.text for c in citations] or [p.text for p in answer.retrieval.passages]
        try:
            self._calibrate_if_needed()
            return self.monitor.record_answer(done.text, passages, self.library.embedder.embed, answer.trace_id,
                                              keep_text=self.tracing.capture_content)
        except Exception:  # noqa: BLE001 - monitoring must never cost the user their answer
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
