"""One turn of a conversation, prepared the same way for every kind of answer (a question, a question
asked again, an edited question, a task).

``prepare`` finds where the turn goes and what answers it (the conversation, created when new, with the
options it was asked with; its backend, resolved once); ``record`` saves the question and the answer's
placeholder, under the conversation's own lock and only around those writes; ``forget`` takes back what
a turn saved when it cannot go on. All of it runs on the answer's thread, never the caller's.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, cast

from engine.compaction import as_chat, context_messages, fold_summary, summary_mark
from engine.errors import InvalidRequestError, NotFoundError
from engine.history.models import Message
from engine.history.store import UNSET, HistoryStore
from engine.rag.retrieve import Retrieval
from engine.runtime.backend import Backend, BackendRegistry
from engine.runtime.types import ChatMessage
from engine.tasks import doc_qa

Replace = Literal["nothing", "answer", "exchange"]


@dataclass(frozen=True)
class TurnRequest:
    """What a caller asked for, as given (nothing looked up yet).

    ``replace``: "nothing" adds a question after the branch shown; "answer" answers a question again (``text``
    None), "exchange" asks ``text`` in place of a question: either adds a new version beside the one it
    replaces (a branch; the earlier versions stay) and the conversation shows it. ``message_id``: the question
    (or, for "answer", the answer) it starts from; None: the last question of the branch shown.
    ``collections``/``backend``/``tools``: saved on the conversation when given (UNSET: it keeps its own).
    """

    kind: str  # "chat", or a task's name
    text: str | None
    conversation_id: int | None
    replace: Replace = "nothing"
    message_id: int | None = None
    collections: object = UNSET
    backend: object = UNSET
    tools: object = UNSET  # the tools its answers may call (names; () for none)
    save: bool = True
    # An answer not saved may bring its own conversation (the local API's client's): the turns before the
    # question, and the system prompt (None: the settings').
    earlier: tuple[ChatMessage, ...] = ()
    system_prompt: str | None = None


@dataclass
class Turn:
    """A prepared turn: where it is saved, what it asks, and the backend that answers it."""

    request: TurnRequest
    conversation_id: int | None
    created: bool  # the conversation was made for this turn
    question: str
    backend_name: str
    backend: Backend
    collections: list[str] | None  # None: not from documents; []: all of them
    tools: list[str] | None = None  # the tools the answer may call (None: none)
    approved_tools: tuple[str, ...] = ()  # tools the user allowed for the conversation
    user_message_id: int | None = None
    assistant_message_id: int | None = None
    earlier: tuple[ChatMessage, ...] = ()  # the saved turns before the question, as the model sees them
    branch: tuple[int, ...] = ()  # the later versions on the answer's path (HistoryStore.versions_chosen)

    @property
    def kind(self) -> str:
        """What the answer is: a task's name, "doc_qa" for a question from documents, else "chat"."""
        if self.request.kind != "chat":
            return self.request.kind
        return "doc_qa" if self.collections is not None else "chat"

    @property
    def conversation_key(self) -> str | None:
        """The runtime's key for the cached prompt of the conversation's branch (None for an answer not saved):
        each branch keeps its own state, so switching back to one reuses what it had."""
        return branch_key(self.conversation_id, self.branch) if self.conversation_id is not None else None

    def context(self, system_prompt: str, retrieval: Retrieval | None) -> tuple[ChatMessage, ...]:
        """The messages the model answers: system prompt, earlier turns, the question (with its sources)."""
        system_prompt, earlier = fold_summary(system_prompt, self.earlier)  # a summary joins the system prompt
        if retrieval is not None:
            return doc_qa.build_messages(system_prompt, earlier, self.question, retrieval.passages)
        system = (ChatMessage("system", system_prompt),) if system_prompt else ()
        return (*system, *earlier, ChatMessage("user", self.question))


def model_turns(messages: Iterable[Message]) -> tuple[ChatMessage, ...]:
    """Saved messages as the model sees them: finished (or partial) ones with text, from the latest summary on
    (engine/compaction.py)."""
    return tuple(as_chat(m) for m in context_messages(list(messages)))


def branch_key(conversation_id: int, branch: Iterable[int] = ()) -> str:
    """``conversation:ID`` for the first versions' branch, ``conversation:ID/HASH`` for another. The runtime
    forgets every key under ``conversation:ID`` at once, and names their spill files after that part."""
    key = f"conversation:{conversation_id}"
    ids = ",".join(str(i) for i in branch)
    return f"{key}/{hashlib.sha256(ids.encode()).hexdigest()[:16]}" if ids else key


def last_of(messages: list[Message], role: str, conversation_id: int) -> Message:
    for message in reversed(messages):
        if message.role == role:
            return message
    raise NotFoundError(f"Conversation {conversation_id} has no {role} message to work from.")


class Turns:
    """Prepares and records turns over one history store and one backend registry."""

    def __init__(self, history: HistoryStore, backends: BackendRegistry):
        self.history = history
        self.backends = backends
        self._locks: dict[int, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def lock(self, conversation_id: int) -> threading.Lock:
        """The lock held around one conversation's turn writes."""
        with self._locks_guard:
            return self._locks.setdefault(conversation_id, threading.Lock())

    def prepare(self, request: TurnRequest) -> Turn:
        """Where the turn goes and what answers it; a conversation made for it goes again if this fails."""
        history, conversation_id = self.history, request.conversation_id
        created = request.save and conversation_id is None
        if created:
            conversation_id = history.create_conversation().id
        try:
            approved: tuple[str, ...] = ()
            collections: list[str] | None
            chosen: str | None
            tools: list[str] | None
            if conversation_id is None:  # an answer that is not saved
                collections = None if request.collections is UNSET else cast("list[str] | None", request.collections)
                chosen = None if request.backend is UNSET else cast("str | None", request.backend)
                given_tools = () if request.tools is UNSET else cast("Iterable[str] | None", request.tools) or ()
                tools = list(dict.fromkeys(given_tools)) or None
            else:
                given = {
                    k: v
                    for k, v in (
                        ("collections", request.collections),
                        ("backend", request.backend),
                        ("tools", request.tools),
                    )
                    if v is not UNSET
                }
                conversation = (
                    history.set_options(conversation_id, **given) if given else history.conversation(conversation_id)
                )
                collections, chosen = conversation.collections, conversation.backend
                tools, approved = conversation.tools, conversation.approved_tools
            name, backend = self.backends.resolve(chosen)
            question = request.text or ""
            if request.replace != "nothing":
                if conversation_id is None:
                    raise InvalidRequestError("Only a saved conversation has a question to ask again.")
                replaced = self.question_of(conversation_id, request)
                question = question if request.replace == "exchange" else replaced.content
        except BaseException:
            if created and conversation_id is not None:
                history.delete_conversation(conversation_id)
            raise
        return Turn(
            request,
            conversation_id,
            created,
            question,
            name,
            backend,
            list(collections) if collections is not None else None,
            tools or None,
            approved,
            earlier=request.earlier if conversation_id is None else (),
        )

    def question_of(self, conversation_id: int, request: TurnRequest) -> Message:
        """The question a request asks again or replaces: ``request.message_id`` (an answer: its question),
        or the last question of the branch shown."""
        history = self.history
        if request.message_id is None:
            return last_of(history.messages(conversation_id), "user", conversation_id)
        message = history.message(request.message_id)
        if message.conversation_id != conversation_id:
            raise NotFoundError(f"Message {message.id} is not in conversation {conversation_id}.")
        if request.replace == "answer" and message.role == "assistant" and message.parent_id is not None:
            message = history.message(message.parent_id)
        if message.role != "user":
            raise InvalidRequestError("Only a question can be edited, and only an answer asked again.")
        return message

    def record(self, turn: Turn) -> None:
        """Save the question and the answer's placeholder (an answer not saved: nothing). A question asked
        again or edited goes beside the one it replaces, as a new branch the conversation then shows."""
        if turn.conversation_id is None:
            return
        history, conversation_id, replace = self.history, turn.conversation_id, turn.request.replace
        with self.lock(conversation_id):
            if replace == "nothing":
                earlier = history.messages(conversation_id)
                parent = earlier[-1].id if earlier else None
            else:
                replaced = self.question_of(conversation_id, turn.request)
                earlier, parent = history.path_to(replaced.parent_id), replaced.parent_id
                if replace == "answer":
                    turn.user_message_id = replaced.id
            if turn.user_message_id is None:
                turn.user_message_id = history.add_message(conversation_id, "user", turn.question, parent_id=parent).id
            try:
                turn.assistant_message_id = history.add_message(
                    conversation_id, "assistant", "", status="streaming", parent_id=turn.user_message_id
                ).id
            except BaseException:
                if replace != "answer":  # a question is never left without its answer
                    history.delete_message(turn.user_message_id)
                raise
            turn.branch = tuple(history.versions_chosen(turn.assistant_message_id))
            turn.branch += summary_mark(earlier)  # after a compaction the prompt starts anew: a key of its own
        turn.earlier = model_turns(earlier)

    def forget(self, turn: Turn) -> None:
        """Take back a conversation made for a turn that could not go on."""
        if turn.created and turn.conversation_id is not None:
            self.history.delete_conversation(turn.conversation_id)
