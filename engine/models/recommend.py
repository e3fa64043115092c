"""Which current instruct models to suggest for this machine, before anything is downloaded.

A short curated list of GGUF repositories (several sizes and families) is planned with the model
manager's own offload planner on a shape estimated from each model's published geometry; the
hub then confirms each pick with its real file size and the verdict from the file's header
(``resolve_on_hub``), within a time limit so an unreachable hub never hangs the caller.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from engine.errors import EngineError
from engine.models.hardware import Hardware
from engine.models.hub import HubUnavailableError, QuantFile
from engine.models.offload import GiB, ModelShape, OffloadPlan, plan_offload

HUB_DEADLINE_S = 20.0  # the whole hub check (listings and headers of every pick)
DISK_MARGIN_BYTES = 2 * GiB  # left free on the disk after a download
CPU_BYTES_PER_CORE = 0.75 * GiB  # weights read per token on the CPU that still answer at reading speed
RAM_SHARE = 0.75  # of the RAM free for models: the rest stays for the other programs


@dataclass(frozen=True)
class Candidate:
    """One model of the curated list, with what the planner needs to judge it before download."""

    name: str
    family: str
    repo_id: str
    filename: str
    quant: str
    size_bytes: int  # of the GGUF file, as published
    params_b: float  # billions of parameters
    n_layers: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_vocab: int
    blurb: str
    active_params_b: float = 0.0  # mixture of experts: the parameters each token reads (0: all of them)

    @property
    def read_fraction(self) -> float:
        """The share of the weights each token reads (1 for dense models)."""
        return self.active_params_b / self.params_b if self.active_params_b else 1.0

    def shape(self) -> ModelShape:
        """An estimated ModelShape: embeddings and output from the vocabulary, the rest in equal blocks."""
        bytes_per_param = self.size_bytes / (self.params_b * 1e9)
        embedding = min(int(self.n_vocab * self.n_embd * bytes_per_param), self.size_bytes // 6)
        block = (self.size_bytes - 2 * embedding) // self.n_layers
        return ModelShape(
            self.name,
            self.n_layers,
            (block,) * self.n_layers,
            embedding,
            embedding,
            embedding,
            self.n_embd,
            self.n_head,
            (self.n_head_kv,) * self.n_layers,
            self.head_dim,
            self.head_dim,
            self.n_vocab,
            self.size_bytes,
        )


def _c(name, family, repo, filename, size_gb, params, geometry, blurb, active=0.0) -> Candidate:
    layers, embd, heads, kv_heads, head_dim, vocab = geometry
    return Candidate(
        name, family, repo, filename, "Q4_K_M", int(size_gb * 1e9), params, layers, embd, heads, kv_heads,
        head_dim, vocab, blurb, active,
    )  # fmt: skip


# Instruct (non-thinking) models in Q4_K_M, the usual balance of size and quality; smallest first.
CANDIDATES: tuple[Candidate, ...] = (
    _c("Llama 3.2 1B Instruct", "Llama", "bartowski/Llama-3.2-1B-Instruct-GGUF",
       "Llama-3.2-1B-Instruct-Q4_K_M.gguf", 0.81, 1.24, (16, 2048, 32, 8, 64, 128256),
       "Meta's smallest: quick everyday answers on any computer."),
    _c("Qwen2.5 1.5B Instruct", "Qwen", "Qwen/Qwen2.5-1.5B-Instruct-GGUF",
       "qwen2.5-1.5b-instruct-q4_k_m.gguf", 1.12, 1.54, (28, 1536, 12, 2, 128, 151936),
       "Small and fast, many languages."),
    _c("Llama 3.2 3B Instruct", "Llama", "bartowski/Llama-3.2-3B-Instruct-GGUF",
       "Llama-3.2-3B-Instruct-Q4_K_M.gguf", 2.02, 3.21, (28, 3072, 24, 8, 128, 128256),
       "Good writing and summaries for its size."),
    _c("Phi-4 mini Instruct", "Phi", "bartowski/microsoft_Phi-4-mini-instruct-GGUF",
       "microsoft_Phi-4-mini-instruct-Q4_K_M.gguf", 2.49, 3.84, (32, 3072, 24, 8, 128, 200064),
       "Microsoft's small model: reasoning and maths."),
    _c("Gemma 3 4B", "Gemma", "bartowski/google_gemma-3-4b-it-GGUF",
       "google_gemma-3-4b-it-Q4_K_M.gguf", 2.49, 3.88, (34, 2560, 8, 4, 256, 262144),
       "Google's small model: fluent in many languages."),
    _c("Qwen3 4B Instruct 2507", "Qwen", "unsloth/Qwen3-4B-Instruct-2507-GGUF",
       "Qwen3-4B-Instruct-2507-Q4_K_M.gguf", 2.50, 4.02, (36, 2560, 32, 8, 128, 151936),
       "The strongest small all-rounder: writing, code, documents."),
    _c("Qwen2.5 7B Instruct", "Qwen", "bartowski/Qwen2.5-7B-Instruct-GGUF",
       "Qwen2.5-7B-Instruct-Q4_K_M.gguf", 4.68, 7.62, (28, 3584, 28, 4, 128, 152064),
       "A solid mid-size all-rounder, good at code."),
    _c("Llama 3.1 8B Instruct", "Llama", "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF",
       "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", 4.92, 8.03, (32, 4096, 32, 8, 128, 128256),
       "Meta's mid-size model: natural conversation."),
    _c("Gemma 3 12B", "Gemma", "bartowski/google_gemma-3-12b-it-GGUF",
       "google_gemma-3-12b-it-Q4_K_M.gguf", 7.30, 12.2, (48, 3840, 16, 8, 256, 262144),
       "Careful, well-written answers in many languages."),
    _c("Phi-4", "Phi", "bartowski/phi-4-GGUF", "phi-4-Q4_K_M.gguf", 9.05, 14.7,
       (40, 5120, 40, 10, 128, 100352), "Strong reasoning and maths."),
    _c("Qwen2.5 14B Instruct", "Qwen", "bartowski/Qwen2.5-14B-Instruct-GGUF",
       "Qwen2.5-14B-Instruct-Q4_K_M.gguf", 8.99, 14.8, (48, 5120, 40, 8, 128, 152064),
       "A large all-rounder: writing, code, long documents."),
    _c("Gemma 3 27B", "Gemma", "bartowski/google_gemma-3-27b-it-GGUF",
       "google_gemma-3-27b-it-Q4_K_M.gguf", 16.5, 27.4, (62, 5376, 32, 16, 128, 262144),
       "Google's largest open model: high-quality answers."),
    _c("Qwen3 30B-A3B Instruct 2507", "Qwen", "unsloth/Qwen3-30B-A3B-Instruct-2507-GGUF",
       "Qwen3-30B-A3B-Instruct-2507-Q4_K_M.gguf", 18.6, 30.5, (48, 2048, 32, 4, 128, 151936),
       "A large model that reads only 3B parameters a token: fast even on a CPU.", active=3.3),
)  # fmt: skip


@dataclass(frozen=True)
class Recommendation:
    """A candidate with its plan on this machine; ``comfortable``: fits with room and answers briskly."""

    candidate: Candidate
    plan: OffloadPlan
    comfortable: bool

    @property
    def fit(self) -> str:
        return fit_words(self.plan)


@dataclass(frozen=True)
class Recommendations:
    """Two or three picks (the default first among them at ``default``), or none with a ``note`` saying why."""

    picks: tuple[Recommendation, ...]
    default: int  # index into picks; -1 when there are none
    note: str = ""


def fit_words(plan: OffloadPlan) -> str:
    """The model manager's verdict in a few words."""
    return {
        "full_gpu": "fits on the GPU",
        "partial": "fits partly on the GPU",
        "cpu_only": "fits (runs on the CPU)",
        "wont_fit": "too large",
    }[plan.verdict]


def is_comfortable(candidate: Candidate, plan: OffloadPlan, hardware: Hardware) -> bool:
    """Fits with RAM to spare, and what the CPU must read per token is within what its cores read briskly."""
    if plan.verdict == "wont_fit" or plan.ram_needed > RAM_SHARE * plan.ram_budget:
        return False
    if plan.verdict == "full_gpu":
        return True
    on_gpu = min(plan.n_gpu_layers, plan.n_layers) / max(plan.n_layers, 1)
    if plan.verdict == "partial" and on_gpu < 0.9:
        return False
    cpu_bytes = candidate.size_bytes * (1 - on_gpu) * candidate.read_fraction
    return cpu_bytes <= CPU_BYTES_PER_CORE * max(hardware.cpu.cores_physical, 1)


def recommend(
    hardware: Hardware,
    disk_free: int,
    n_ctx: int = 4096,
    *,
    candidates: tuple[Candidate, ...] = CANDIDATES,
    count: int = 3,
    **plan_options,
) -> Recommendations:
    """Up to ``count`` picks: the largest comfortable model as the default, then clearly smaller ones of
    other families; models that fit but not comfortably fill in when too few are comfortable.
    ``plan_options``: the planner's kv_type and flash_attention."""
    fitting: list[Recommendation] = []
    no_disk = 0
    for candidate in candidates:
        plan = plan_offload(candidate.shape(), hardware, n_ctx, **plan_options)
        if plan.verdict == "wont_fit":
            continue
        if candidate.size_bytes + DISK_MARGIN_BYTES > disk_free:
            no_disk += 1
            continue
        fitting.append(Recommendation(candidate, plan, is_comfortable(candidate, plan, hardware)))
    disk_note = (
        f" {no_disk} model{'s' if no_disk > 1 else ''} would fit in memory but not on the disk "
        f"({disk_free / 1e9:.1f} GB free)."
        if no_disk
        else ""
    )
    if not fitting:
        return Recommendations(
            (), -1, "None of the suggested models fits this computer; the bundled model stays in use." + disk_note
        )
    largest_first = sorted(fitting, key=lambda r: -r.candidate.params_b)
    comfortable = [r for r in largest_first if r.comfortable]
    picks = [comfortable[0] if comfortable else largest_first[-1]]  # nothing comfortable: the smallest that fits

    def step_down(pool: list[Recommendation], *, new_family: bool) -> None:
        for r in pool:
            if len(picks) >= count:
                return
            last = picks[-1].candidate
            if r in picks or r.candidate.params_b > 0.8 * last.params_b:
                continue
            if new_family and r.candidate.family in {p.candidate.family for p in picks}:
                continue
            picks.append(r)

    step_down(comfortable, new_family=True)
    step_down(comfortable, new_family=False)
    if len(picks) < 2:  # a larger one that fits without room to spare, said as such
        larger = [r for r in reversed(largest_first) if r not in picks]
        picks.extend(larger[: max(0, 2 - len(picks))])
    note = "" if comfortable else "Only small models fit here; expect slower answers than on a larger computer."
    return Recommendations(tuple(picks), 0, (note + disk_note).strip())


@dataclass(frozen=True)
class HubPick:
    """A recommendation as the hub has it: the file to download and its verdict from the real header."""

    recommendation: Recommendation
    quant: QuantFile | None
    plan: OffloadPlan | None  # None when the header could not be read (the estimate stands)
    problem: str | None = None  # why it cannot be downloaded (not on the hub, no such file)


def choose_file(quants: list[QuantFile], candidate: Candidate) -> QuantFile | None:
    """The candidate's file in a repository's listing: by name, else the same quantization in one file."""
    for q in quants:
        if PurePosixPath(q.filename).name == candidate.filename:
            return q
    same = [q for q in quants if q.quant == candidate.quant and not q.split]
    return same[0] if same else None


def resolve_on_hub(
    picks: tuple[Recommendation, ...],
    quantizations: Callable[[str], list[QuantFile]],
    verdicts: Callable[[list[QuantFile]], dict[str, OffloadPlan]],
    *,
    deadline_s: float | None = None,
) -> list[HubPick]:
    """Each pick's file and verdict from the hub, within ``deadline_s`` in all (None: HUB_DEADLINE_S).

    The hub unreachable (or silent past the deadline) raises HubUnavailableError; a pick the hub lacks
    comes back with a ``problem`` and the others are kept.
    """
    done = threading.Event()
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            outcome["picks"] = [_resolve_one(r, quantizations, verdicts) for r in picks]
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = exc
        finally:
            done.set()

    # A daemon thread: a hub that never answers must not keep Locus from quitting.
    threading.Thread(target=work, name="hub-recommend", daemon=True).start()
    deadline_s = HUB_DEADLINE_S if deadline_s is None else deadline_s
    if not done.wait(deadline_s):
        raise HubUnavailableError(
            f"The Hugging Face hub did not answer within {deadline_s:.0f} seconds (offline or a slow network?)."
        )
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["picks"]  # type: ignore[return-value]


def _resolve_one(recommendation: Recommendation, quantizations, verdicts) -> HubPick:
    candidate = recommendation.candidate
    try:
        quants = quantizations(candidate.repo_id)
    except HubUnavailableError:
        raise
    except EngineError as exc:
        return HubPick(recommendation, None, None, exc.user_text())
    quant = choose_file(quants, candidate)
    if quant is None:
        return HubPick(recommendation, None, None, f"{candidate.repo_id} has no {candidate.quant} file any more.")
    try:
        plan = verdicts([quant]).get(quant.filename)
    except HubUnavailableError:
        raise
    except EngineError:
        plan = None  # the estimate stands; the file can still be downloaded
    return HubPick(recommendation, quant, plan)
