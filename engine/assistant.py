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
from engine.runtime.runtime import ChannelHandle, EventChannel, RequestHandle, Runtime
from engine.tasks import doc_qa
from engine.tasks.base import TaskContext, TaskDone, TaskFailed, TaskHandle, TaskText, start_task
from engine.tasks.templates import TemplateLibrary
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

    def __call__(self, event) -> None:
        if isinstance(event, (Token, TaskText)):
            self._grow(event.text)
        elif isinstance(event, Done):
            self._finish(event.text, event.stats.finish_reason == "cancelled", asdict(event.stats))
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
    """Chat over saved conversations, on one runtime and one history store (and documents, when open)."""

    def __init__(self, runtime: Runtime, history: HistoryStore, settings: ChatSettings | None = None,
                 *, save_interval_s: float = 0.5, library=None, templates: TemplateLibrary | None = None):
        self.runtime = runtime
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
        priority: Priority = Priority.INTERACTIVE,
    ) -> AnswerHandle:
        """Save the question (in a new conversation if none is given) and start answering it.

        ``collections`` (None: no documents, []: all, or names) is saved on the conversation;
        left out, the conversation keeps what it had.
        """
        if not text.strip():
            raise InvalidRequestError("The question is empty.")
        with self._lock:
            created = conversation_id is None
            if created:
                conversation_id = self.history.create_conversation().id
            try:
                if collections is not _UNSET:
                    self.history.set_collections(conversation_id, collections)
                # Everything that can fail (retrieval above all) happens before the question is
                # saved, so a failed ask never leaves a question without its answer behind.
                retrieval = self._retrieve_for(conversation_id, text)
            except BaseException:
                if created:
                    self.history.delete_conversation(conversation_id)
                raise
            user = self.history.add_message(conversation_id, "user", text)
            return self._answer(conversation_id, user, retrieval, on_event, priority)

    def regenerate(self, conversation_id: int, on_event: Callable[[object], None] | None = None) -> AnswerHandle:
        """Drop the last answer and answer the last question again."""
        with self._lock:
            messages = self.history.messages(conversation_id)
            user = self._last(messages, "user", conversation_id)
            retrieval = self._retrieve_for(conversation_id, user.content)
            self.history.delete_messages_from(conversation_id, user.id + 1)
            return self._answer(conversation_id, user, retrieval, on_event, Priority.INTERACTIVE, new_question=False)

    def resend_edited(self, conversation_id: int, text: str,
                      on_event: Callable[[object], None] | None = None) -> AnswerHandle:
        """Replace the last question (and its answer) with an edited one and answer it."""
        if not text.strip():
            raise InvalidRequestError("The question is empty.")
        with self._lock:
            messages = self.history.messages(conversation_id)
            last_user = self._last(messages, "user", conversation_id)
            retrieval = self._retrieve_for(conversation_id, text)
            self.history.delete_messages_from(conversation_id, last_user.id)
            user = self.history.add_message(conversation_id, "user", text)
            return self._answer(conversation_id, user, retrieval, on_event, Priority.INTERACTIVE)

    def start_task(self, fn: Callable[[TaskContext], str], on_event: Callable[[object], None] | None = None,
                   *, name: str = "task", priority: Priority = Priority.NORMAL) -> TaskHandle:
        """Run a task function (summarize, translate, ...) on its own thread; nothing is saved."""
        if self.templates is None:
            raise InvalidRequestError("No prompt templates are available.")
        return start_task(fn, self.runtime, self.templates, self.settings.sampling, on_event,
                          priority=priority, name=name, token_healing=self.settings.token_healing)

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
        handle = start_task(fn, self.runtime, self.templates, self.settings.sampling, on_event, tap=recorder,
                            priority=priority, name=name, token_healing=self.settings.token_healing)
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

    def context_for(self, conversation_id: int) -> tuple[ChatMessage, ...]:
        """The conversation as the model will see it: system prompt, then saved turns."""
        context = [ChatMessage("system", self.settings.system_prompt)] if self.settings.system_prompt else []
        context.extend(self._turns(self.history.messages(conversation_id)))
        return tuple(context)

    @staticmethod
    def _turns(messages: list[Message]) -> list[ChatMessage]:
        return [ChatMessage(m.role, m.content) for m in messages
                if m.status in CONTEXT_STATUSES and m.content.strip()]

    def _retrieve_for(self, conversation_id: int, question: str) -> Retrieval | None:
        """The question's passages when the conversation answers from documents, else None."""
        conversation = self.history.conversation(conversation_id)
        if not conversation.uses_documents:
            return None
        if self.library is None:
            raise DocumentsUnavailable("The document index is not open yet.",
                                       hint="Wait a moment for it to load, then ask again.")
        info = self.runtime.model_info
        n_ctx = info.n_ctx if info else 4096
        budget = min(SOURCE_BUDGET_TOKENS, int(n_ctx * 0.35))
        # The model's own tokenizer lives on the runtime thread; ~3 characters per token
        # is a safe over-estimate, and the runtime's context fitting is the backstop.
        return self.library.retrieve(question, conversation.collections or None, lambda t: len(t) // 3 + 1, budget)

    def _answer(self, conversation_id: int, user: Message, retrieval: Retrieval | None,
                on_event: Callable[[object], None] | None, priority: Priority,
                new_question: bool = True) -> AnswerHandle:
        try:
            if retrieval is not None:
                earlier = self._turns([m for m in self.history.messages(conversation_id) if m.id < user.id])
                context = doc_qa.build_messages(self.settings.system_prompt, earlier, user.content,
                                                retrieval.passages)
            else:
                context = self.context_for(conversation_id)
            placeholder = self.history.add_message(conversation_id, "assistant", "", status="streaming")
        except BaseException:  # a question just saved goes again, so none is left without its answer
            self.history.delete_messages_from(conversation_id, user.id if new_question else user.id + 1)
            raise
        request_id = next_request_id()
        answer = AnswerHandle(conversation_id, user, placeholder.id, request_id, on_event)
        answer.retrieval = retrieval
        if retrieval is not None:
            collections = self.history.conversation(conversation_id).collections or []
            answer.channel.emit(Retrieved(request_id, retrieval.passages, list(collections)))
        recorder = _AnswerRecorder(self.history, placeholder.id, self.save_interval_s)
        request = GenerationRequest(context, self.settings.sampling, priority=priority, request_id=request_id,
                                    conversation_key=f"conversation:{conversation_id}")
        answer.request = self.runtime.submit(request, lambda event: self._deliver(answer, event), tap=recorder)
        return answer

    def _deliver(self, answer: AnswerHandle, event) -> None:
        """Runtime events to the answer's consumer; an answer from documents gets its citations first."""
        if isinstance(event, Done) and answer.retrieval is not None and answer.retrieval.passages:
            try:
                self._post.submit(self._cite_then_finish, answer, event)
                return
            except RuntimeError:  # shutting down: the answer ends without its sources
                pass
        answer.channel.emit(event)

    def _cite_then_finish(self, answer: AnswerHandle, done: Done) -> None:
        try:
            citations = tuple(self.library.cite(done.text, answer.retrieval)) if done.text.strip() else ()
            answer.citations = citations
            if citations:
                self.history.update_message(answer.assistant_message_id,
                                            sources=[c.to_dict() for c in citations])
            answer.channel.emit(Cited(answer.request_id, citations))
        except Exception:  # noqa: BLE001 - an answer without sources beats a lost answer
            log.exception("citations failed for request %s", answer.request_id)
        finally:
            answer.channel.emit(done)
