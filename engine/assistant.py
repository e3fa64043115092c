"""The engine's front door for chat: conversations in, streamed answers out.

``Assistant`` ties the history to the runtime: it saves the user's message
before anything is generated, streams the answer into a placeholder message
that is saved as it grows, and marks it complete, partial (cancelled) or
failed at the end. The window and the CLI both talk to this class.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from engine.errors import InvalidRequestError, NotFoundError
from engine.history.models import CONTEXT_STATUSES, Message
from engine.history.store import HistoryStore
from engine.runtime.runtime import RequestHandle, Runtime
from engine.runtime.types import (
    ChatMessage,
    Done,
    Failed,
    GenerationEvent,
    GenerationRequest,
    Priority,
    SamplingParams,
    Token,
)


@dataclass(frozen=True)
class ChatSettings:
    """What every chat request gets unless it says otherwise."""

    system_prompt: str = "You are Locus, a helpful assistant running privately on the user's computer."
    sampling: SamplingParams = field(default_factory=SamplingParams)


class AnswerHandle:
    """One answer being generated: which conversation and messages it belongs to, and control."""

    def __init__(self, conversation_id: int, user_message: Message, assistant_message_id: int,
                 request: RequestHandle):
        self.conversation_id = conversation_id
        self.user_message = user_message
        self.assistant_message_id = assistant_message_id
        self.request = request

    @property
    def request_id(self) -> int:
        return self.request.request_id

    def cancel(self) -> None:
        self.request.cancel()

    def events(self) -> Iterator[GenerationEvent]:
        return self.request.events()

    def wait(self, timeout: float | None = None) -> Done | Failed | None:
        return self.request.wait(timeout)


class _AnswerRecorder:
    """Persists a streaming answer: every ``interval`` seconds while it grows, then its final state."""

    def __init__(self, history: HistoryStore, message_id: int, interval: float):
        self.history = history
        self.message_id = message_id
        self.interval = interval
        self.parts: list[str] = []
        self.saved_len = 0
        self.last_save = time.monotonic()

    def __call__(self, event: GenerationEvent) -> None:
        if isinstance(event, Token):
            self.parts.append(event.text)
            now = time.monotonic()
            if now - self.last_save >= self.interval:
                self.history.update_message(self.message_id, content="".join(self.parts))
                self.last_save = now
        elif isinstance(event, Done):
            stats = asdict(event.stats)
            reason = event.stats.finish_reason
            if reason == "cancelled" and not event.text.strip():
                self.history.delete_message(self.message_id)  # stopped before it said anything
                return
            status = "cancelled" if reason == "cancelled" else "complete"
            self.history.update_message(self.message_id, content=event.text, status=status, stats=stats)
        elif isinstance(event, Failed):
            self.history.update_message(self.message_id, content="".join(self.parts), status="failed",
                                        error=event.error.user_text())


class Assistant:
    """Chat over saved conversations, on one runtime and one history store."""

    def __init__(self, runtime: Runtime, history: HistoryStore, settings: ChatSettings | None = None,
                 *, save_interval_s: float = 0.5):
        self.runtime = runtime
        self.history = history
        self.settings = settings or ChatSettings()
        self.save_interval_s = save_interval_s
        self._lock = threading.Lock()

    def ask(
        self,
        text: str,
        conversation_id: int | None = None,
        on_event: Callable[[GenerationEvent], None] | None = None,
        *,
        priority: Priority = Priority.INTERACTIVE,
    ) -> AnswerHandle:
        """Save the question (in a new conversation if none is given) and start answering it."""
        if not text.strip():
            raise InvalidRequestError("The question is empty.")
        with self._lock:
            if conversation_id is None:
                conversation_id = self.history.create_conversation().id
            user = self.history.add_message(conversation_id, "user", text)
            return self._answer(conversation_id, user, on_event, priority)

    def regenerate(self, conversation_id: int,
                   on_event: Callable[[GenerationEvent], None] | None = None) -> AnswerHandle:
        """Drop the last answer and answer the last question again."""
        with self._lock:
            messages = self.history.messages(conversation_id)
            user = self._last(messages, "user", conversation_id)
            self.history.delete_messages_from(conversation_id, user.id + 1)
            return self._answer(conversation_id, user, on_event, Priority.INTERACTIVE)

    def resend_edited(self, conversation_id: int, text: str,
                      on_event: Callable[[GenerationEvent], None] | None = None) -> AnswerHandle:
        """Replace the last question (and its answer) with an edited one and answer it."""
        if not text.strip():
            raise InvalidRequestError("The question is empty.")
        with self._lock:
            messages = self.history.messages(conversation_id)
            last_user = self._last(messages, "user", conversation_id)
            self.history.delete_messages_from(conversation_id, last_user.id)
            user = self.history.add_message(conversation_id, "user", text)
            return self._answer(conversation_id, user, on_event, Priority.INTERACTIVE)

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
        for m in self.history.messages(conversation_id):
            if m.status in CONTEXT_STATUSES and m.content.strip():
                context.append(ChatMessage(m.role, m.content))
        return tuple(context)

    def _answer(self, conversation_id: int, user: Message,
                on_event: Callable[[GenerationEvent], None] | None, priority: Priority) -> AnswerHandle:
        context = self.context_for(conversation_id)
        placeholder = self.history.add_message(conversation_id, "assistant", "", status="streaming")
        recorder = _AnswerRecorder(self.history, placeholder.id, self.save_interval_s)
        request = GenerationRequest(context, self.settings.sampling,
                                    conversation_key=f"conversation:{conversation_id}", priority=priority)
        handle = self.runtime.submit(request, on_event, tap=recorder)
        return AnswerHandle(conversation_id, user, placeholder.id, handle)
