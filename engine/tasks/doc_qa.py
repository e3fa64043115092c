"""Questions over documents: the prompt that puts numbered sources before the question."""

from __future__ import annotations

from collections.abc import Sequence

from engine.rag.cite import sources_block
from engine.rag.retrieve import Passage
from engine.runtime.types import ChatMessage

DOC_SYSTEM_PROMPT = (
    "Answer the user's question using only the numbered sources given with it. "
    "After each fact, cite its source by number in square brackets, like [1] or [2]. "
    "If the sources do not contain the answer, say that the documents do not say."
)

NO_SOURCES_NOTE = "(No passage in the selected documents matched this question.)"

# One worked example before the real question: small local models cite far more
# reliably (and copy facts rather than invent them) after seeing one.
EXAMPLE = (
    ChatMessage(
        "user",
        "Sources:\n\n[1] garden.md, lines 4–6\nTomatoes need six hours of sun a day.\n\n"
        "[2] recipes.txt\nBake the bread for forty minutes.\n\nQuestion: How much sun do tomatoes need?",
    ),
    ChatMessage("assistant", "Tomatoes need six hours of sun a day [1]."),
)


def question_with_sources(question: str, passages: Sequence[Passage]) -> str:
    """The user turn as the model sees it: sources first, then the question."""
    block = sources_block(passages) if passages else NO_SOURCES_NOTE
    return f"Sources:\n\n{block}\n\nQuestion: {question}"


def build_messages(
    system_prompt: str, history: Sequence[ChatMessage], question: str, passages: Sequence[Passage]
) -> tuple[ChatMessage, ...]:
    """System prompt (with the citation rules), a worked example, earlier turns, then the question
    with its sources."""
    system = f"{system_prompt}\n\n{DOC_SYSTEM_PROMPT}" if system_prompt else DOC_SYSTEM_PROMPT
    return (
        ChatMessage("system", system),
        *EXAMPLE,
        *history,
        ChatMessage("user", question_with_sources(question, passages)),
    )
