"""Grammars are checked before llama.cpp builds a sampler from them: limits first, then a trial run elsewhere.

llama.cpp's grammar code takes the whole process down on input it did not expect:
a grammar that allows no token aborts on the first token accepted, and deeply
nested groups overflow its parser's stack. So a grammar is first held to limits on
its size, nesting and number of rules (said in words, before llama.cpp sees it),
then tried in a short-lived worker process that loads only the model's vocabulary,
builds the grammar sampler and checks that some token may start the answer. A
crash, a hang or no allowed token there fails the request, never the app. Verdicts
are remembered by grammar and model, so a repeated response_format costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate

from engine.errors import EngineError, GenerationError, InvalidRequestError
from engine.rag.ipc import command_for, spawn

log = logging.getLogger(__name__)

# Limits, each far above what the JSON-schema converter makes for realistic schemas: a 1,000-value
# enum is 25 KB, 200 string fields 29 KB and 600 rules and groups, "maxLength": 60 nests 60 groups.
MAX_GRAMMAR_BYTES = 256 * 1024
# llama.cpp's parser recurses for each group, about 0.5 KB of stack a level (measured: 20,000 levels
# overflow an 8 MB stack). 2,000 is llama.cpp's own cap on one repetition ({0,2000}), which the
# converter writes as that many nested groups; about 1 MB, well inside GRAMMAR_STACK_BYTES.
MAX_NESTING = 2000
# Rules and groups: llama.cpp's left-recursion check recurses along chains of them (about 0.1 KB a
# level; 100,000 overflow 8 MB).
MAX_RULES = 5000
CHECK_TIMEOUT_S = 30.0  # starting Python, loading a vocabulary and one pass over it take about a second
# llama.cpp parses the grammar on the thread that builds the sampler; the runtime's thread and the
# checker's both get this stack, whatever the platform's default for threads.
GRAMMAR_STACK_BYTES = 16 * 1024 * 1024
WORKER_FLAG = "--grammar-check-worker"  # how the frozen app starts itself as the checker (app/cli/__init__.py)
_REMEMBERED = 1024  # verdicts kept

# What llama.cpp reads as text, not structure: comments, "literals" and [classes] (an unterminated one
# runs to the end, as llama.cpp reads it before it fails).
_OPAQUE = re.compile(r'#[^\r\n]*|"(?:\\.|[^"\\])*"?|\[(?:\\.|[^\]\\])*\]?')
_STEP = {"(": 1, ")": -1}


@dataclass(frozen=True)
class GrammarShape:
    """What the limits are about: size in bytes, deepest nesting of groups, rules and groups."""

    size: int
    nesting: int
    rules: int


def measure(grammar: str) -> GrammarShape:
    """The grammar's size, nesting and rule count, read as llama.cpp reads GBNF (parentheses inside
    literals, character classes and comments do not count)."""
    structure = _OPAQUE.sub(" ", grammar)
    parens = re.sub(r"[^()]+", "", structure)
    # (A stray ")" lowers the count after it; llama.cpp stops parsing at it, before any nesting beyond.)
    deepest = max(accumulate(map(_STEP.__getitem__, parens)), default=0)
    return GrammarShape(len(grammar.encode("utf-8")), max(0, deepest), structure.count("::=") + parens.count("("))


def limits_problem(grammar: str) -> str | None:
    """Which limit the grammar passes, in words; None when it is within all of them."""
    size = len(grammar.encode("utf-8"))
    if size > MAX_GRAMMAR_BYTES:  # before scanning it
        return f"it is {size / 1024:,.0f} KB long; at most {MAX_GRAMMAR_BYTES // 1024} KB are allowed"
    shape = measure(grammar)
    if shape.nesting > MAX_NESTING:
        return f"it nests groups {shape.nesting:,} deep; at most {MAX_NESTING:,} levels are allowed"
    if shape.rules > MAX_RULES:
        return f"it has {shape.rules:,} rules and groups; at most {MAX_RULES:,} are allowed"
    return None


def check_limits(grammar: str) -> None:
    """InvalidRequestError naming the limit when the grammar is too large, too deep or has too many rules."""
    problem = limits_problem(grammar)
    if problem:
        raise InvalidRequestError(
            f"The grammar cannot be used: {problem}.",
            hint="Simplify the grammar (or the JSON schema it was made from).",
        )


# Verdicts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check: fine, or the error to fail every request with this grammar and model."""

    message: str | None = None  # None: the grammar is fine
    hint: str | None = None
    detail: str | None = None
    grammar_fault: bool = True  # False: the check itself could not run (not remembered)

    @property
    def ok(self) -> bool:
        return self.message is None

    def error(self) -> EngineError:
        """A fresh error for one request (an exception object must not be raised twice)."""
        kind = InvalidRequestError if self.grammar_fault else GenerationError
        return kind(self.message or "", hint=self.hint, detail=self.detail)

    def raise_if_bad(self) -> None:
        if not self.ok:
            raise self.error()


OK = Verdict()


def model_key(model_path: str) -> str:
    """The model file as it is now: another file, or this one changed, gets checked again."""
    try:
        st = os.stat(model_path)
        return f"{os.path.realpath(model_path)}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return model_path


def _key(grammar: str, model_path: str) -> tuple[str, str]:
    return hashlib.sha256(grammar.encode("utf-8")).hexdigest(), model_key(model_path)


class GrammarChecker:
    """Checks grammars against a model's vocabulary in worker processes, one at a time, remembering verdicts.

    ``known`` answers from memory at once; ``submit`` queues a check for the checker's own thread
    (never the caller's, so neither the GUI thread nor the runtime's waits); ``check`` runs one on
    the calling thread.
    """

    def __init__(self, *, timeout_s: float = CHECK_TIMEOUT_S, command: list[str] | None = None):
        self.timeout_s = timeout_s
        self._command = command
        self._verdicts: OrderedDict[tuple[str, str], Verdict] = OrderedDict()
        self._lock = threading.Condition()
        self._queue: list[tuple[str, str, tuple]] = []  # (grammar, model path, key) waiting to be checked
        self._waiters: dict[tuple, list[Callable[[Verdict], None]]] = {}
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen | None = None
        self._closed = False

    def known(self, grammar: str, model_path: str) -> Verdict | None:
        """The remembered verdict for this grammar and model, or the limit it passes; None if unknown."""
        key = _key(grammar, model_path)
        with self._lock:
            verdict = self._verdicts.get(key)
            if verdict is not None:
                self._verdicts.move_to_end(key)
                return verdict
        problem = limits_problem(grammar)
        if problem:
            return self._remember(
                key,
                Verdict(
                    f"The grammar cannot be used: {problem}.",
                    hint="Simplify the grammar (or the JSON schema it was made from).",
                ),
            )
        return None

    def check(self, grammar: str, model_path: str) -> Verdict:
        """The verdict for this grammar and model: remembered, or found now in a worker process (blocks)."""
        verdict = self.known(grammar, model_path)
        if verdict is None:
            verdict = self._remember(_key(grammar, model_path), self._probe(grammar, model_path))
        return verdict

    def submit(self, grammar: str, model_path: str, done: Callable[[Verdict], None]) -> None:
        """Check on the checker's thread and call ``done(verdict)`` there (at once when it is known).

        Requests with the same grammar and model wait for one check. After ``close`` every waiting
        ``done`` is called with a verdict that says the check was stopped.
        """
        verdict = self.known(grammar, model_path)
        if verdict is None:
            key = _key(grammar, model_path)
            with self._lock:
                verdict = self._verdicts.get(key)  # (a check that ended just now)
                if verdict is None and not self._closed:
                    if key not in self._waiters:
                        self._waiters[key] = []
                        self._queue.append((grammar, model_path, key))
                    self._waiters[key].append(done)
                    self._start_thread()
                    self._lock.notify_all()
                    return
            verdict = verdict or _STOPPED
        done(verdict)

    def close(self) -> None:
        """Stop checking: the running worker is ended, and everyone still waiting hears a verdict."""
        with self._lock:
            self._closed = True
            process = self._process
            self._lock.notify_all()
            thread = self._thread
        if process is not None and process.poll() is None:
            process.kill()
        if thread is not None and thread is not threading.current_thread():
            thread.join(10.0)
        with self._lock:
            waiting, self._waiters, self._queue = self._waiters, {}, []
        for callbacks in waiting.values():
            _call_all(callbacks, _STOPPED)

    # The checker's thread -------------------------------------------------------------

    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="locus-grammar-check", daemon=True)
            self._thread.start()

    def _serve(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                grammar, model_path, key = self._queue.pop(0)
            try:
                verdict = self._remember(key, self._probe(grammar, model_path))
            except Exception as exc:
                log.exception("checking a grammar failed")
                verdict = Verdict(
                    "The grammar could not be checked.", detail=f"{type(exc).__name__}: {exc}", grammar_fault=False
                )
            with self._lock:
                callbacks = self._waiters.pop(key, [])
            _call_all(callbacks, verdict)

    def _remember(self, key: tuple, verdict: Verdict) -> Verdict:
        if verdict.grammar_fault:
            with self._lock:
                self._verdicts[key] = verdict
                self._verdicts.move_to_end(key)
                while len(self._verdicts) > _REMEMBERED:
                    self._verdicts.popitem(last=False)
        return verdict

    def _probe(self, grammar: str, model_path: str) -> Verdict:
        """Run one worker process on the grammar and read its verdict."""
        no_gpu = {"CUDA_VISIBLE_DEVICES": "", "HIP_VISIBLE_DEVICES": ""}  # a vocabulary needs no GPU
        payload = json.dumps({"model": model_path, "grammar": grammar, "limit_s": self.timeout_s + 5})
        try:
            process = spawn(self._command or worker_command(), environment=no_gpu, stderr=subprocess.PIPE)
        except OSError as exc:
            return Verdict(
                "The grammar could not be checked: the checking process did not start.",
                detail=str(exc),
                grammar_fault=False,
            )
        with self._lock:
            self._process = process
            stopped = self._closed
        if stopped:
            process.kill()
        timed_out = False
        try:
            out, err = process.communicate(payload.encode("utf-8"), timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            process.kill()
            out, err = process.communicate()
        finally:
            with self._lock:
                self._process = None
        if self._closed:
            return _STOPPED
        return _read_verdict(out, err, process.returncode, timed_out, self.timeout_s)


_STOPPED = Verdict("The grammar was not checked: the engine is shutting down.", grammar_fault=False)


def _call_all(callbacks, verdict: Verdict) -> None:
    for done in callbacks:
        try:
            done(verdict)
        except Exception:
            log.exception("a grammar check's consumer failed")


def start_grammar_thread(target, name: str) -> threading.Thread:
    """A started daemon thread that may build grammar samplers, with GRAMMAR_STACK_BYTES of stack (the
    size applies when a thread starts)."""
    previous: int | None = threading.stack_size()
    try:
        threading.stack_size(GRAMMAR_STACK_BYTES)
    except (ValueError, RuntimeError):  # a platform that cannot set it keeps its default
        previous = None
    try:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
    finally:
        if previous is not None:
            threading.stack_size(previous)
    return thread


_PARSE_ERROR = re.compile(r"error parsing grammar: ([^\n]*)")


def _read_verdict(out: bytes, err: bytes, code: int | None, timed_out: bool, timeout_s: float) -> Verdict:
    lines = [json.loads(line) for line in out.decode("utf-8", "replace").splitlines() if line.startswith("{")]
    stage = lines[-1] if lines else {}
    stderr = err.decode("utf-8", "replace")
    tail = "\n".join(ln for ln in stderr.splitlines()[-8:])[-2000:]
    if not lines or stage.get("stage") == "no_model":  # the worker never got as far as the grammar
        why = "did not finish in time" if timed_out else f"ended with {_exit_status(code)}"
        if stage.get("stage") == "no_model":
            why = "could not read the model's vocabulary"
        return Verdict(
            f"The grammar could not be checked: the checking process {why}.", detail=tail, grammar_fault=False
        )
    if stage.get("stage") == "loaded":  # it started on the grammar and never came back
        if timed_out:
            return Verdict(
                f"The grammar cannot be used: checking it took longer than {timeout_s:.0f} seconds.",
                hint="Simplify the grammar: fewer alternatives and repetitions.",
                detail=tail,
            )
        return Verdict(
            "The grammar cannot be used: llama.cpp fails on it (the process trying it ended with "
            f"{_exit_status(code)}).",
            hint="Simplify the grammar.",
            detail=tail,
        )
    if stage.get("stage") == "unparsable":
        found = _PARSE_ERROR.search(stderr)
        said = re.sub(r"\s+at$", "", found.group(1).strip()) if found else ""  # "at" + the rest of the grammar
        said = said[:120] + "…" if len(said) > 120 else said
        reason = said or (
            "it uses left recursion, which llama.cpp does not support" if "left recursion" in stderr else ""
        )
        return Verdict(
            f"The grammar could not be parsed{': ' + reason if reason else ''}.",
            hint="Check it against llama.cpp's GBNF syntax; it needs a 'root' rule.",
            detail=tail,
        )
    if stage.get("stage") == "checked" and not stage.get("allowed"):
        return Verdict(
            "The grammar allows no output: no token of this model can start an answer it accepts.",
            hint="Check the grammar's 'root' rule: it must match some text.",
        )
    return OK


def _exit_status(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code >= 0:
        return f"exit code {code}"
    import signal

    try:
        return f"signal {-code} ({signal.Signals(-code).name})"
    except ValueError:
        return f"signal {-code}"


def worker_command() -> list[str]:
    """How to start the checker: an isolated interpreter running this module (engine/rag/ipc.py's
    command_for), or the frozen app with its flag."""
    return command_for("engine.runtime.grammar_check", WORKER_FLAG)


# In the worker ---------------------------------------------------------------------------


def worker_main() -> int:
    """The checker process: read {model, grammar, limit_s} on stdin, write its stages as JSON lines.

    ``loaded`` comes before llama.cpp sees the grammar, so a crash after it is the grammar's doing.
    """
    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # native code that prints cannot garble the replies
    guard = threading.Timer(float(request.get("limit_s", CHECK_TIMEOUT_S)), os._exit, (3,))
    guard.daemon = True  # an orphaned checker ends on its own
    guard.start()

    def reply(stage: str, **more) -> None:
        replies.write(json.dumps({"stage": stage, **more}) + "\n")
        replies.flush()

    built: list[bool] = []

    def probe() -> None:
        _try_grammar(request["model"], request["grammar"], reply)
        built.append(True)  # reached only when building the grammar returned

    start_grammar_thread(probe, "grammar-probe").join()
    return 0 if built else 1


def _try_grammar(model_path: str, grammar: str, reply) -> None:
    import ctypes

    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    params.n_gpu_layers = 0
    model = llama_cpp.llama_model_load_from_file(model_path.encode("utf-8"), params)
    if not model:
        reply("no_model")
        return
    vocab = llama_cpp.llama_model_get_vocab(model)
    reply("loaded")
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
    if not sampler:
        reply("unparsable")
        return
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    data = (llama_cpp.llama_token_data * n_vocab)()
    for token in range(n_vocab):
        data[token].id = token
    array = llama_cpp.llama_token_data_array(data=data, size=n_vocab, selected=-1, sorted=False)
    llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
    allowed = sum(1 for token in range(n_vocab) if data[token].logit != float("-inf"))
    reply("checked", allowed=allowed)
    llama_cpp.llama_sampler_free(sampler)
    llama_cpp.llama_model_free(model)


if __name__ == "__main__":
    sys.exit(worker_main())
