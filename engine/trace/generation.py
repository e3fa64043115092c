"""The span of one generation, in OpenTelemetry's GenAI conventions plus Locus's own figures.

Created when the runtime takes a request off its queue (its start is the time the
request was submitted, so the wait shows), and finished from the request's stats:
its children (queue, build_prompt, prompt_eval, decode) are laid out from the
generator's own timings afterwards, so nothing runs per token.
"""

from __future__ import annotations

import time

from engine.runtime.types import Done, GenerationStats, ModelInfo
from engine.trace.tracing import Tracing, fail, set_attributes

PROVIDER = "llama.cpp"


class GenerationSpan:
    """The span of one request's generation, started when it leaves the queue."""

    def __init__(self, tracing: Tracing, handle, info: ModelInfo | None):
        tracing = self.tracing = tracing.for_request(handle.trace_parent)  # an unsaved answer's: no text
        self.handle = handle
        self.started_ns = time.time_ns()
        request = handle.request
        self.operation = "text_completion" if request.prompt is not None else "chat"
        model = info.name if info else ""
        s = request.sampling
        self.span = tracing.start(
            f"{self.operation} {model}".strip(),
            handle.trace_parent,
            {
                "gen_ai.operation.name": self.operation,
                "gen_ai.provider.name": PROVIDER,
                "gen_ai.request.model": model or None,
                "gen_ai.request.temperature": s.temperature,
                "gen_ai.request.top_p": s.top_p,
                "gen_ai.request.top_k": s.top_k,
                "gen_ai.request.max_tokens": s.max_tokens,
                "gen_ai.request.stop_sequences": list(s.stop) or None,
                "locus.request.min_p": s.min_p,
                "locus.request.repeat_penalty": s.repeat_penalty,
                "locus.request.grammar": request.grammar is not None,
                # Asked for; applied to plain prompts only (a chat template or a grammar already shapes the start).
                "locus.request.token_healing": request.token_healing,
                "locus.request_id": request.request_id,
                "locus.priority": request.priority.name.lower(),
                "locus.model.path": info.path if info else None,
                "locus.model.n_ctx": info.n_ctx if info else None,
                "locus.model.n_gpu_layers": info.n_gpu_layers if info else None,
            },
            start_time_ns=handle.submitted_ns,
        )
        if self.span.is_recording() and tracing.capture_content:
            if request.prompt is not None:
                tracing.content(self.span, "gen_ai.input.messages", [{"role": "user", "content": request.prompt}])
            else:
                tracing.content(
                    self.span,
                    "gen_ai.input.messages",
                    [{"role": m.role, "content": m.content} for m in request.messages],
                )

    def finish(self, done: Done, generator) -> None:
        """End the span with the request's outcome, token counts and timings (and its children)."""
        span = self.span
        if not span.is_recording():
            return
        st = done.stats
        cancelled = st.finish_reason == "cancelled"
        set_attributes(
            span,
            {
                "gen_ai.response.model": st.model or None,
                "gen_ai.response.finish_reasons": [st.finish_reason],
                "gen_ai.usage.input_tokens": st.prompt_tokens,
                "gen_ai.usage.output_tokens": st.completion_tokens,
                "gen_ai.request.seed": st.seed,
                "locus.time_to_first_token_s": st.time_to_first_token_s,
                "locus.tokens_per_s": st.tokens_per_s,
                "locus.queue_s": st.queue_s,
                "locus.prompt_eval_s": st.prompt_eval_s,
                "locus.prompt.reused_tokens": st.reused_prompt_tokens,
                "locus.prompt.evaluated_tokens": max(0, st.prompt_tokens - st.reused_prompt_tokens),
                "locus.prompt.dropped_messages": st.dropped_messages,
                "locus.prompt.truncated": st.truncated_input,
                "locus.healed_text": st.healed_text or None,
                "locus.sampled_on": st.sampled_on or None,
                "locus.cancelled": cancelled,
            },
        )
        if self.tracing.capture_content:
            if generator is not None and generator.last_prompt and st.prompt_tokens:
                self.tracing.content(span, "locus.prompt", generator.model.detokenize(generator.last_prompt))
            self.tracing.content(span, "locus.response", done.text)
            self.tracing.content(
                span,
                "gen_ai.output.messages",
                [{"role": "assistant", "content": done.text, "finish_reason": st.finish_reason}],
            )
        end_ns = time.time_ns()
        self._children(st, end_ns)
        span.end(end_time=end_ns)

    def fail(self, error: BaseException) -> None:
        fail(self.span, error)
        self.span.end()

    def _children(self, st: GenerationStats, end_ns: int) -> None:
        """queue, build_prompt, prompt_eval and decode, placed from the generator's timings."""
        start = self.started_ns
        points = [("queue", self.handle.submitted_ns, start)]
        if st.prompt_tokens:
            built = start + int(st.prompt_build_s * 1e9)
            evaluated = max(built, start + int(st.prompt_eval_s * 1e9))
            points += [("build_prompt", start, built), ("prompt_eval", built, evaluated), ("decode", evaluated, end_ns)]
        for name, a, b in points:
            child = self.tracing.start(name, self.span, start_time_ns=a)
            if name == "prompt_eval":
                set_attributes(
                    child,
                    {
                        "locus.prompt.evaluated_tokens": st.prompt_tokens - st.reused_prompt_tokens,
                        "locus.prompt.reused_tokens": st.reused_prompt_tokens,
                    },
                )
            elif name == "decode":
                set_attributes(
                    child, {"gen_ai.usage.output_tokens": st.completion_tokens, "locus.tokens_per_s": st.tokens_per_s}
                )
                if st.time_to_first_token_s is not None:
                    child.add_event(
                        "first_token", timestamp=self.handle.submitted_ns + int(st.time_to_first_token_s * 1e9)
                    )
            child.end(end_time=max(a, b))
