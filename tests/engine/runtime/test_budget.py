"""Fitting conversations into the window, with the real tokenizer and chat template."""

from __future__ import annotations

from engine.runtime.budget import DEFAULT_N_CTX, OMISSION, context_window, fit_prompt, prompt_budget
from engine.runtime.types import ChatMessage

SYSTEM = ChatMessage("system", "You are a careful assistant. Keep this instruction.")


def conversation(turns: int, words: int = 40) -> list[ChatMessage]:
    messages = [SYSTEM]
    for i in range(turns):
        messages.append(ChatMessage("user", f"question {i} " + "lorem " * words))
        messages.append(ChatMessage("assistant", f"answer {i} " + "ipsum " * words))
    messages.append(ChatMessage("user", "final question"))
    return messages


def fit(generator, messages, budget, start=0):
    return fit_prompt(messages, encode=generator.encode, shorten=generator._shorten, budget=budget, start=start)


def text_of(generator, tokens) -> str:
    return b"".join(generator.model.piece(t) for t in tokens).decode("utf-8", "replace")


def test_everything_kept_when_it_fits(generator):
    messages = conversation(2)
    fitted = fit(generator, messages, budget=2000)
    assert fitted.dropped == 0 and not fitted.truncated
    assert fitted.tokens == generator.encode(messages)


def test_oldest_exchanges_go_first_and_the_system_prompt_stays(generator):
    messages = conversation(20)
    fitted = fit(generator, messages, budget=400)
    assert 0 < len(fitted.tokens) <= 400
    assert fitted.dropped > 0 and fitted.dropped % 2 == 0  # whole exchanges, starting at a question
    kept = messages[1 + fitted.dropped :]
    assert kept[0].role == "user"
    assert fitted.tokens == generator.encode([SYSTEM, *kept])
    text = text_of(generator, fitted.tokens)
    assert "Keep this instruction." in text and "final question" in text and "question 0 " not in text


def test_trimming_goes_below_the_edge_so_the_next_turns_keep_their_prefix(generator):
    messages = conversation(20)
    first = fit(generator, messages, budget=400)
    assert len(first.tokens) <= 400 * 0.75
    grown = [*messages, ChatMessage("assistant", "short answer"), ChatMessage("user", "next question")]
    second = fit(generator, grown, budget=400, start=first.start)
    assert second.start == first.start
    assert second.tokens[: len(first.tokens) - 8] == first.tokens[: len(first.tokens) - 8]


def test_one_message_longer_than_the_window_is_shortened_in_the_middle(generator):
    messages = [SYSTEM, ChatMessage("user", "BEGINNING " + "filler " * 2000 + " THE END")]
    fitted = fit(generator, messages, budget=300)
    assert fitted.truncated and len(fitted.tokens) <= 300
    text = text_of(generator, fitted.tokens)
    assert "BEGINNING" in text and "THE END" in text and OMISSION.strip() in text
    assert "Keep this instruction." in text


def test_a_huge_system_prompt_is_shortened_too(generator):
    messages = [ChatMessage("system", "rule " * 3000), ChatMessage("user", "hi")]
    fitted = fit(generator, messages, budget=200)
    assert fitted.truncated and len(fitted.tokens) <= 200
    assert text_of(generator, fitted.tokens).rstrip().endswith("assistant")


def test_one_prompt_budget_for_every_backend_and_task(generator):
    """The window a prompt may fill keeps room for the answer, at most half the window; an unknown window is
    DEFAULT_N_CTX (for the generator, the Assistant's sources and the tasks alike)."""
    assert prompt_budget(4096, 512) == 3584 and prompt_budget(1000, 900) == 500 and prompt_budget(100, 0) == 99
    assert context_window(None) == DEFAULT_N_CTX == 4096
    assert context_window(generator.info) == generator.ctx.n_ctx == 2048
