"""The generator: one loaded model and its context, driven by one thread.

It turns a GenerationRequest into streamed text: render with the model's chat
template (or take a plain completion prompt, token-healed), fit the context
window, reuse the KV cache of the prefix shared with the previous request,
evaluate the rest, then sample token by token with llama.cpp's native sampler
chain (led by a grammar for guided output), checking for cancellation at every step.
"""

from __future__ import annotations

import codecs
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.errors import EngineError, GenerationError
from engine.models.gguf import check_gguf
from engine.runtime.budget import OMISSION, fit_prompt
from engine.runtime.chat_template import ChatTemplate
from engine.runtime.constrain import PieceIndex, heal
from engine.runtime.native import NativeContext, NativeModel, SamplerChain, default_threads
from engine.runtime.stops import StopMatcher
from engine.runtime.types import (
    ChatMessage,
    Done,
    GenerationEvent,
    GenerationRequest,
    GenerationStats,
    ModelConfig,
    ModelInfo,
    Token,
)

Emit = Callable[[GenerationEvent], None]

_MAX_REMEMBERED_CONVERSATIONS = 64


class Generator:
    """Owns a NativeModel and NativeContext; not thread-safe (the runtime thread drives it)."""

    def __init__(self, config: ModelConfig, progress: Callable[[float], bool] | None = None):
        check_gguf(config.path)  # a broken file gets a precise message before llama.cpp sees it
        self.config = config
        self.model = NativeModel(config.path, n_gpu_layers=config.n_gpu_layers, progress=progress)
        try:
            n_threads = config.n_threads or default_threads()
            self.ctx = NativeContext(self.model, n_ctx=config.n_ctx, n_threads=n_threads, n_batch=config.n_batch)
        except BaseException:
            self.model.close()
            raise
        bos = self.model.token_text(self.model.bos) if self.model.bos >= 0 else ""
        eos = self.model.token_text(self.model.eos) if self.model.eos >= 0 else ""
        self.template = ChatTemplate(self.model.chat_template(), bos_token=bos, eos_token=eos)
        self._cached: list[int] = []  # tokens whose keys/values are in the KV cache, seq 0
        # The text those tokens spell (prompt text + generated text), or None when unknown.
        # A new prompt that extends it reuses the cached tokens verbatim instead of
        # re-tokenizing the previous answer, which can split differently from how the
        # model generated it and would cut the reusable prefix short.
        self._cached_text: str | None = None
        self._trim_start: OrderedDict[str, int] = OrderedDict()
        self._pieces: PieceIndex | None = None  # the vocabulary by prefix, for token healing
        self.last_prompt: list[int] = []  # the tokens of the latest request's prompt, as evaluated (for traces)
        self.info = ModelInfo(
            path=config.path,
            name=config.display_name or self.model.meta("general.name") or Path(config.path).stem,
            description=self.model.description(),
            n_params=self.model.n_params,
            size_bytes=self.model.size_bytes,
            n_ctx=self.ctx.n_ctx,
            n_ctx_train=self.model.n_ctx_train,
            n_threads=n_threads,
            n_gpu_layers=config.n_gpu_layers,
            chat_template_source=self.template.origin,
        )

    # Prompt ------------------------------------------------------------------------

    def encode(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Render messages with the chat template and tokenize, ready for the answer."""
        text = self.template.render(messages)
        cached_text = self._cached_text
        if cached_text and text.startswith(cached_text):
            rest = self.model.tokenize(text[len(cached_text):], add_special=False, parse_special=True)
            return self._cached + rest
        bos_text = self.template.bos_token
        # Templates that write the BOS token themselves must not get a second one.
        add_special = not (bos_text and text.startswith(bos_text))
        return self.model.tokenize(text, add_special=add_special, parse_special=True)

    def _shorten(self, text: str, max_tokens: int) -> str:
        """At most about max_tokens of text: its start and end, with a marker where the middle was."""
        tokens = self.model.tokenize(text, add_special=False, parse_special=False)
        if len(tokens) <= max_tokens:
            return text
        decode = lambda ts: b"".join(self.model.piece(t) for t in ts).decode("utf-8", "ignore")  # noqa: E731
        marker = len(self.model.tokenize(OMISSION, add_special=False, parse_special=False))
        room = max_tokens - marker
        if room < 8:
            return decode(tokens[:max(0, max_tokens)])
        head = room * 2 // 3
        return decode(tokens[:head]) + OMISSION + decode(tokens[len(tokens) - (room - head):])

    # Generation --------------------------------------------------------------------

    def generate(
        self,
        request: GenerationRequest,
        cancel: threading.Event,
        emit: Emit,
        submitted_at: float | None = None,
    ) -> Done:
        """Run one request to completion, emitting Token events; returns the Done event."""
        t0 = time.perf_counter()
        submitted_at = t0 if submitted_at is None else submitted_at
        sampling = request.sampling
        n_ctx = self.ctx.n_ctx
        budget = n_ctx - max(1, min(sampling.max_tokens, n_ctx // 2))
        healing = None
        if request.prompt is not None:
            prompt, truncated = self._plain_prompt(request.prompt, budget)
            dropped, text = 0, None  # plain prompts are tokenized whole: no text cache to keep
            if request.token_healing and request.grammar is None:  # a grammar already shapes the start
                prompt, healing = heal(prompt, self._piece_index())
        else:
            fitted = self._fit_conversation(request, budget)
            prompt, truncated, dropped = fitted.tokens, fitted.truncated, fitted.dropped
            text = self.template.render(fitted.messages) if fitted.messages is not None else None

        self.last_prompt = prompt
        t_built = time.perf_counter()
        seed = sampling.seed if sampling.seed >= 0 else secrets.randbits(32)
        # Built before the prompt is evaluated so that a grammar that does not parse fails at once.
        sampler = SamplerChain(self.model, sampling, seed, grammar=request.grammar)
        try:
            reused = self._evaluate_prompt(prompt, cancel)
            self._cached_text = text if not cancel.is_set() else None
            t_prompt = time.perf_counter()
            stats = dict(
                prompt_tokens=len(prompt),
                reused_prompt_tokens=reused,
                queue_s=t0 - submitted_at,
                prompt_build_s=t_built - t0,
                prompt_eval_s=t_prompt - t0,
                dropped_messages=dropped,
                truncated_input=truncated,
                healed_text=healing.removed.decode("utf-8", "replace") if healing else "",
                seed=seed,
            )
            if cancel.is_set():
                return self._done(request, "", stats, 0, None, None, t0, submitted_at, "cancelled")
            # The penalties should see the prompt's tail, but a grammar sampler must only see
            # generated tokens, so with a grammar the penalties start empty.
            if request.grammar is None and sampling.repeat_last_n:
                for tok in prompt[-sampling.repeat_last_n:]:
                    sampler.accept(tok)
            return self._sample_loop(request, sampler, cancel, emit, stats, t0, submitted_at, healing)
        except BaseException:
            self._reset_cache()
            raise
        finally:
            sampler.close()

    def _fit_conversation(self, request: GenerationRequest, budget: int):
        key = request.conversation_key
        fitted = fit_prompt(request.messages, encode=self.encode, shorten=self._shorten, budget=budget,
                            start=self._trim_start.get(key, 0) if key else 0)
        if key:
            self._trim_start[key] = fitted.start
            self._trim_start.move_to_end(key)
            while len(self._trim_start) > _MAX_REMEMBERED_CONVERSATIONS:
                self._trim_start.popitem(last=False)
        return fitted

    def _plain_prompt(self, prompt: str, budget: int) -> tuple[list[int], bool]:
        """Tokens of a plain completion prompt (special tokens written in it are parsed, as
        llama.cpp's server does); one too long for the window keeps its BOS and its end."""
        bos_text = self.template.bos_token
        add_special = not (bos_text and prompt.startswith(bos_text))
        tokens = self.model.tokenize(prompt, add_special=add_special, parse_special=True)
        if len(tokens) <= budget:
            return tokens, False
        head = tokens[:1] if tokens[0] == self.model.bos else []
        return head + tokens[len(tokens) - (budget - len(head)):], True

    def _piece_index(self) -> PieceIndex:
        if self._pieces is None:
            self._pieces = PieceIndex(self.model.all_pieces())
        return self._pieces

    @property
    def cached_tokens(self) -> tuple[int, ...]:
        """The tokens now in the KV cache: the last prompt as evaluated, then what was generated."""
        return tuple(self._cached)

    def _sample_loop(self, request, sampler, cancel, emit, stats, t0, submitted_at, healing=None) -> Done:
        model, ctx = self.model, self.ctx
        max_new = min(request.sampling.max_tokens, ctx.n_ctx - len(self._cached))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stopper = StopMatcher(request.sampling.stop)
        pieces: list[str] = []
        n_gen = 0
        t_first = t_last = None
        generated = b""  # bytes of the generated tokens now in the cache
        text_matches_tokens = True
        reason = "length"
        rid = request.request_id
        while n_gen < max_new:
            if cancel.is_set():
                reason = "cancelled"
                break
            healing_now = healing is not None and healing.active
            if healing_now:  # only tokens that spell the taken-back text (or start it) may come next
                ctx.restrict_logits(healing.allowed(self._pieces))
            tok = sampler.sample(ctx)
            if model.is_eog(tok):
                reason = "stop"
                break
            n_gen += 1
            piece = model.piece(tok)
            shown = healing.consume(piece) if healing_now else piece  # the prompt already holds the rest
            text, hit = stopper.feed(decoder.decode(shown))
            t_last = time.perf_counter()
            if t_first is None:
                t_first = t_last
            if text:
                pieces.append(text)
                emit(Token(rid, text, 1))
            if hit:
                reason = "stop"
                break
            ctx.decode((tok,), len(self._cached))
            self._cached.append(tok)
            generated += piece
            if not piece:  # a control token: its text is not in the answer, so text and tokens part ways
                text_matches_tokens = False
        if self._cached_text is not None and text_matches_tokens:
            try:
                self._cached_text += generated.decode("utf-8")
            except UnicodeDecodeError:  # a token split a character: fall back to re-tokenizing
                self._cached_text = None
        else:
            self._cached_text = None
        tail = stopper.flush() + decoder.decode(b"", final=True)  # empty after a stop string
        if tail:
            pieces.append(tail)
            emit(Token(rid, tail, 0))
        return self._done(request, "".join(pieces), stats, n_gen, t_first, t_last, t0, submitted_at, reason)

    def _done(self, request, text, stats, n_gen, t_first, t_last, t0, submitted_at, reason) -> Done:
        end = time.perf_counter()
        gen_s = (t_last - t_first) if (t_first is not None and t_last is not None) else 0.0
        return Done(
            request.request_id,
            text,
            GenerationStats(
                **stats,
                completion_tokens=n_gen,
                time_to_first_token_s=(t_first - submitted_at) if t_first is not None else None,
                generation_s=gen_s,
                tokens_per_s=((n_gen - 1) / gen_s) if n_gen > 1 and gen_s > 0 else None,
                total_s=end - submitted_at,
                finish_reason=reason,
                model=self.info.name,
            ),
        )

    def _evaluate_prompt(self, prompt: list[int], cancel: threading.Event) -> int:
        """Bring the KV cache to hold ``prompt``, reusing the shared prefix; returns tokens reused."""
        cached = self._cached
        n = 0
        limit = min(len(cached), len(prompt) - 1)  # the last prompt token is always evaluated for logits
        while n < limit and cached[n] == prompt[n]:
            n += 1
        if n < len(cached) and not self.ctx.remove_from(n):
            self.ctx.clear()
            n = 0
        del cached[n:]
        reused = n
        step = self.ctx.n_batch
        while n < len(prompt):
            if cancel.is_set():
                break
            chunk = prompt[n : n + step]
            self.ctx.decode(chunk, n)
            cached.extend(chunk)
            n += len(chunk)
        return reused

    def _reset_cache(self) -> None:
        self._cached.clear()
        self._cached_text = None
        try:
            self.ctx.clear()
        except Exception:  # noqa: BLE001 - best effort after a native failure
            pass

    def forget_cache(self) -> None:
        """Drop the KV cache so the next request evaluates its whole prompt (benchmarks, tests)."""
        self._reset_cache()

    def close(self) -> None:
        self.ctx.close()
        self.model.close()


def wrap_unexpected(exc: BaseException) -> EngineError:
    """Turn a non-engine exception from native code into a readable GenerationError."""
    if isinstance(exc, EngineError):
        return exc
    return GenerationError("Generation failed unexpectedly.", detail=f"{type(exc).__name__}: {exc}")
