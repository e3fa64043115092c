"""The generator: one loaded model, its context and the sequences running in it.

It turns a GenerationRequest into a Sequence ready to run: render with the model's chat
template (or take a plain completion prompt, token-healed), fit the context window, and
build llama.cpp's native sampler chain (led by a grammar for guided output). The batcher
then runs any number of sequences together; ``generate`` runs one to completion for
callers that drive the generator directly (tests, benchmarks).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Sequence as Seq
from pathlib import Path

import llama_cpp

from engine.errors import EngineError, GenerationError
from engine.models.gguf import check_gguf
from engine.runtime.batcher import Batcher
from engine.runtime.budget import OMISSION, fit_prompt, prompt_budget
from engine.runtime.chat_template import ChatTemplate
from engine.runtime.constrain import PieceIndex, heal
from engine.runtime.context import NativeContext
from engine.runtime.kv_cache import effective_flash_attention
from engine.runtime.kv_states import KvStateStore
from engine.runtime.native import NativeModel, default_threads, llamafile_kernels
from engine.runtime.sampler import SamplerChain
from engine.runtime.sequence import Emit, Prompt, Sequence
from engine.runtime.slots import SlotTable
from engine.runtime.speculative import speculator
from engine.runtime.types import ChatMessage, Done, GenerationRequest, ModelConfig, ModelInfo, SamplingParams
from engine.tools.base import ToolSpec
from engine.tools.grammar import ToolPlan, plan_tools

log = logging.getLogger(__name__)

_MAX_REMEMBERED_CONVERSATIONS = 64
# Sequence ids beyond n_parallel: idle conversations stay in the context (while cells allow)
# in these, so switching between a few of them costs neither a restore nor a recomputation.
_IDLE_SLOTS = 8
_REMEMBERED_PLANS = 64  # tool plans by request id: the grammar check and the sequence share one


class Generator:
    """Owns a NativeModel, its NativeContext and the batcher over it; not thread-safe (one thread drives it)."""

    def __init__(
        self, config: ModelConfig, progress: Callable[[float], bool] | None = None, *, max_active: int | None = None
    ):
        check_gguf(config.path)  # a broken file gets a precise message before llama.cpp sees it
        self.config = config
        self.model = NativeModel(config.path, n_gpu_layers=config.n_gpu_layers, progress=progress)
        n_slots = config.n_parallel + _IDLE_SLOTS
        try:
            n_threads = config.n_threads or default_threads()
            self.ctx = NativeContext(
                self.model,
                n_ctx=config.n_ctx,
                n_threads=n_threads,
                n_batch=config.n_batch,
                n_seq_max=n_slots,
                kv_unified=True,
                kv_cache_type=config.kv_cache_type,
                flash_attention=effective_flash_attention(
                    config.kv_cache_type,
                    config.flash_attention,
                    speculative=config.speculative != "off" and not self.model.one_state_per_sequence,
                    gpu_layers=config.n_gpu_layers,
                ),
                backend_sampling=on_device_sampling(config),
            )
        except BaseException:
            self.model.close()
            raise
        bos = self.model.token_text(self.model.bos) if self.model.bos >= 0 else ""
        eos = self.model.token_text(self.model.eos) if self.model.eos >= 0 else ""
        self.template = ChatTemplate(self.model.chat_template(), bos_token=bos, eos_token=eos)
        self.store = KvStateStore(config.kv_ram_mb << 20, config.kv_spill_dir, config.kv_spill_mb << 20)
        self.slots = SlotTable(
            self.ctx, min(n_slots, self.ctx.n_seq_max), self.store, share_prefixes=not self.model.one_state_per_sequence
        )
        # Prompt chunks of 64 tokens cost a CPU no throughput (it is compute-bound from about 32
        # rows on) and keep steps short; a GPU is faster per token with bigger chunks.
        self.batcher = Batcher(
            self.ctx,
            self.slots,
            max_active=max_active or config.n_parallel,
            prefill_chunk=64 if config.n_gpu_layers == 0 else 256,
        )
        if config.speculative != "off" and not self.model.one_state_per_sequence:  # (a state cannot roll back)
            self.batcher.speculator = speculator(config, self.model, self.ctx, n_threads)
            inexact = [
                why
                for why, present in (
                    (
                        "llama.cpp was built with llamafile's kernels (packaging/setup.sh builds it without)",
                        llamafile_kernels(),
                    ),
                    (f"flash attention is {self.ctx.flash_attention}", self.ctx.flash_attention != "off"),
                )
                if present
            ]
            if config.n_gpu_layers == 0 and inexact:
                log.warning(
                    "a speculative greedy answer can part from plain decoding at a near-tie: %s", "; ".join(inexact)
                )
        self._trim_start: OrderedDict[str, int] = OrderedDict()
        self._pieces: PieceIndex | None = None  # the vocabulary by prefix, for token healing
        self._plans: OrderedDict[int, ToolPlan | None] = OrderedDict()
        self._last: Sequence | None = None
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

    # Tools ---------------------------------------------------------------------------

    def tool_plan(self, request: GenerationRequest) -> ToolPlan | None:
        """How the request's tools are offered to this model (None: no tools); InvalidRequestError when a
        tool's schema cannot be held to by a grammar that the plan needs."""
        if not request.offered_tools:
            return None
        rid = request.request_id
        if rid not in self._plans:
            self._plans[rid] = plan_tools(request.offered_tools, request.tool_choice, self.template.tool_family)
            while len(self._plans) > _REMEMBERED_PLANS:
                self._plans.popitem(last=False)
        return self._plans[rid]

    def grammar_of(self, request: GenerationRequest) -> str | None:
        """The grammar the request's answer is held to: its own, or its tools' (what the grammar check vets)."""
        plan = self.tool_plan(request)
        return plan.grammar if plan is not None else request.grammar

    def _specials(self, plan: ToolPlan | None) -> dict[int, bytes]:
        """The control tokens of the plan's call syntax, by id, with the text they must be shown as."""
        found = {}
        for marker in plan.format.specials if plan is not None else ():
            tokens = self.model.tokenize(marker, add_special=False, parse_special=True)
            if len(tokens) == 1 and not self.model.piece(tokens[0]):
                found[tokens[0]] = marker.encode("utf-8")
        return found

    # Prompt ------------------------------------------------------------------------

    def encode(
        self, messages: Seq[ChatMessage], key: str | None = None, tools: Seq[ToolSpec] = (), tool_choice: str = "auto"
    ) -> list[int]:
        """Render messages with the chat template and tokenize, ready for the answer.

        Where the text extends what a cached sequence spells (the conversation's previous turn),
        that sequence's tokens are kept verbatim: re-tokenizing an answer can split it differently
        from how the model generated it, which would cut the reusable prefix short.
        """
        text = self.template.render(messages, tools=tools, tool_choice=tool_choice)
        best = max(
            ((tokens, cached) for tokens, cached in self.slots.text_caches(key) if text.startswith(cached)),
            key=lambda pair: len(pair[1]),
            default=None,
        )
        if best is not None:
            tokens, cached = best
            return list(tokens) + self.model.tokenize(text[len(cached) :], add_special=False, parse_special=True)
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
            return decode(tokens[: max(0, max_tokens)])
        head = room * 2 // 3
        return decode(tokens[:head]) + OMISSION + decode(tokens[len(tokens) - (room - head) :])

    def prepare(self, request: GenerationRequest) -> Prompt:
        """The request's prompt tokens, fitted to the window (the answer keeps room for max_tokens)."""
        t0 = time.perf_counter()
        budget = prompt_budget(self.ctx.n_ctx, request.sampling.max_tokens)
        healing = None
        if request.prompt is not None:
            tokens, truncated = self._plain_prompt(request.prompt, budget)
            dropped, text = 0, None  # plain prompts are tokenized whole: no text cache to keep
            if request.token_healing and request.grammar is None:  # a grammar already shapes the start
                tokens, healing = heal(tokens, self._piece_index())
        else:
            tools = request.offered_tools
            fitted = self._fit_conversation(request, budget)
            tokens, truncated, dropped = fitted.tokens, fitted.truncated, fitted.dropped
            text = (
                self.template.render(fitted.messages, tools=tools, tool_choice=request.tool_choice)
                if fitted.messages is not None
                else None
            )
        return Prompt(list(tokens), text, truncated, dropped, healing, time.perf_counter() - t0)

    def _fit_conversation(self, request: GenerationRequest, budget: int):
        key = request.conversation_key
        tools, choice = request.offered_tools, request.tool_choice
        fitted = fit_prompt(
            request.messages,
            encode=lambda m: self.encode(m, key, tools, choice),
            shorten=self._shorten,
            budget=budget,
            start=self._trim_start.get(key, 0) if key else 0,
        )
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
        return head + tokens[len(tokens) - (budget - len(head)) :], True

    def _piece_index(self) -> PieceIndex:
        if self._pieces is None:
            self._pieces = PieceIndex(self.model.all_pieces())
        return self._pieces

    # Sequences ---------------------------------------------------------------------

    def sequence(
        self,
        request: GenerationRequest,
        cancel: threading.Event,
        emit: Emit,
        submitted_at: float | None = None,
        on_finish: Callable[[Sequence], None] | None = None,
    ) -> Sequence:
        """A Sequence for the request, prompt built and sampler ready (a bad grammar fails here, at once)."""
        submitted_at = time.perf_counter() if submitted_at is None else submitted_at
        plan = self.tool_plan(request)
        prompt = self.prepare(request)
        sampling = request.sampling
        seed = sampling.seed if sampling.seed >= 0 else secrets.randbits(32)
        grammar = self.grammar_of(request)
        on_device = (  # in llama.cpp's graph; a grammar and token healing work on the logits row, on the CPU
            self.ctx.backend_sampling
            and not self.ctx.backend_sampling_refused  # the device lacked an op for an earlier chain
            and grammar is None
            and prompt.healing is None
            and sampled_briefly(sampling, self.model.n_vocab)
        )
        sampler = SamplerChain(self.model, sampling, seed, grammar=grammar, on_device=on_device)
        seq = Sequence(
            request,
            prompt,
            model=self.model,
            sampler=sampler,
            seed=seed,
            n_ctx=self.ctx.n_ctx,
            model_name=self.info.name,
            cancel=cancel,
            emit=emit,
            submitted_at=submitted_at,
            pieces=self._pieces if prompt.healing else None,
            on_finish=on_finish,
            tools=plan,
            specials=self._specials(plan),
        )
        self._last = seq
        return seq

    def generate(
        self, request: GenerationRequest, cancel: threading.Event, emit: Emit, submitted_at: float | None = None
    ) -> Done:
        """Run one request to completion on the calling thread, emitting Token events; returns Done."""
        seq = self.sequence(request, cancel, emit, submitted_at)
        if not self.batcher.admit(seq):  # only when sequences from elsewhere still run in this context
            raise GenerationError("The generator is busy with other requests.")
        try:
            while self.batcher.busy:
                self.batcher.step()
        except BaseException:
            self.batcher.fail_all(GenerationError("Generation was interrupted."))
            raise
        if seq.error is not None:
            raise seq.error
        assert seq.done is not None  # a sequence that left the batcher has ended one way or the other
        return seq.done

    @property
    def last_prompt(self) -> list[int]:
        """The tokens of the latest request's prompt, as evaluated."""
        return self._last.last_prompt if self._last is not None else []

    @property
    def cached_tokens(self) -> tuple[int, ...]:
        """The tokens the latest request left in the cache: its prompt as evaluated, then what it generated."""
        home = self._last.home if self._last is not None else None
        return tuple(home.tokens) if home is not None else ()

    def forget_cache(self) -> None:
        """Drop every cached sequence and saved state, so the next request evaluates its whole prompt."""
        if self.batcher.busy:
            raise GenerationError("The cache cannot be dropped while requests run.")
        self.slots.clear()

    def close(self) -> None:
        if self.batcher.speculator is not None:
            self.batcher.speculator.close()
        self.store.close()
        self.ctx.close()
        self.model.close()


def sampled_briefly(sampling: SamplingParams, n_vocab: int) -> bool:
    """Whether a chain in the graph hands back little: the greedy token, or what follows top-k's few candidates.
    Without top-k, llama.cpp copies the sorted logits, the probabilities and the ids of the whole vocabulary to the
    host for every token, three times the logits row that CPU sampling copies: such chains stay on the CPU (as do
    a grammar and token healing, which work on the logits row). So does a top-k of the whole vocabulary or more,
    which the graph's top-k refuses by aborting the process (the CPU's takes it as no top-k)."""
    return sampling.temperature <= 0.0 or 0 < sampling.top_k < n_vocab


def on_device_sampling(config: ModelConfig) -> bool:
    """Whether sequences' sampler chains run in llama.cpp's graph (backend sampling): with 'auto', when layers are
    offloaded to a GPU (where it spares copying every logits row to the host and sampling it there); never with
    speculative decoding, whose steps check the logits of every guessed token on the CPU."""
    if config.backend_sampling == "off":
        return False
    if config.speculative != "off":
        if config.backend_sampling == "on":
            log.warning("sampling runs on the CPU: speculative decoding checks every guessed token's logits there")
        return False
    if config.backend_sampling == "on":
        return True
    return config.n_gpu_layers != 0 and bool(llama_cpp.llama_supports_gpu_offload())


def wrap_unexpected(exc: BaseException) -> EngineError:
    """Turn a non-engine exception from native code into a readable GenerationError."""
    if isinstance(exc, EngineError):
        return exc
    return GenerationError("Generation failed unexpectedly.", detail=f"{type(exc).__name__}: {exc}")
