"""`locus traces`: list, show, export and prune the local traces of requests.

Only the trace store is opened (no model, no runtime), so these answer at once,
also beside a running window. Only this module's parser is imported for every
`locus` command, so it imports nothing heavy at the top.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

STATUSES = ("ok", "error", "cancelled", "running")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_TIME = "%Y-%m-%d %H:%M:%S"


def age(text: str) -> float:
    """'30m', '1h', '24h', '7d' (also s and w) as seconds, for --since."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"'{text}' is not an age such as 30m, 1h, 24h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of at least 1")
    return int(text)


def add_parsers(sub) -> None:
    """Add the `traces` command to the `locus` parser's subparsers."""
    parser = sub.add_parser(
        "traces",
        help="list, show, export or prune the traces of past requests",
        description="Every question, task and indexing job leaves a trace in traces.sqlite3: "
        "its spans with timings and token counts, and the prompt and answer "
        "when content capture is on. Nothing here loads the model.",
    )
    actions = parser.add_subparsers(dest="traces_command", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="recent traces, newest first")
    ls.add_argument("--since", type=age, metavar="AGE", help="only traces of the last AGE: 30m, 1h, 24h, 7d")
    ls.add_argument("--task", help="only this task: chat, doc_qa, summarize, translate, code, extract, index")
    ls.add_argument("--model", help="only traces of this model (its name as 'show' prints it)")
    ls.add_argument("--status", choices=STATUSES)
    ls.add_argument("--search", metavar="TEXT", help="only traces whose question, spans or attributes contain TEXT")
    ls.add_argument("--limit", type=_count, default=50, metavar="N", help="at most N traces (default 50)")
    ls.add_argument("--json", action="store_true", help="print the traces' summaries as a JSON list")
    show = actions.add_parser("show", help="one trace: its span tree with timings and token counts")
    show.add_argument("trace_id", metavar="ID", help="a trace id, or enough of its start to be unique")
    show.add_argument("--attributes", action="store_true", help="print every attribute of every span")
    show.add_argument(
        "--content", action="store_true", help="print the prompt, the retrieved passages and the response in full"
    )
    export = actions.add_parser("export", help="one trace as JSON")
    export.add_argument("trace_id", metavar="ID", help="a trace id, or enough of its start to be unique")
    export.add_argument("-o", "--output", metavar="FILE", help="write it to FILE instead of stdout")
    actions.add_parser("prune", help="delete the traces beyond the configured retention now")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Carry out one `locus traces` action (app.cli reports errors)."""
    from app.paths import resolve_paths

    paths = resolve_paths()
    if not paths.traces_db.is_file():  # opening the store would create it: say so instead
        return _no_store(args, paths)
    from engine.trace.store import TraceStore

    store = TraceStore(paths.traces_db)
    try:
        action = {"list": _list, "show": _show, "export": _export, "prune": _prune}[args.traces_command]
        return action(store, args, paths)
    finally:
        store.close()


def _no_traces(paths) -> str:
    from app import settings

    off = "" if settings.load(paths.config_file)[0].traces.enabled else " Recording is off (setting traces.enabled)."
    return f"No traces yet. Locus keeps one for every question, task and indexing job in {paths.traces_db}.{off}"


def _no_store(args: argparse.Namespace, paths) -> int:
    if args.traces_command in ("show", "export"):
        from engine.errors import NotFoundError

        raise NotFoundError(_no_traces(paths))
    if args.traces_command == "list" and args.json:
        print("[]")
    print(_no_traces(paths) if args.traces_command == "list" else "No traces yet; nothing to prune.", file=sys.stderr)
    return 0


# list -------------------------------------------------------------------------------


def _list(store, args: argparse.Namespace, paths) -> int:
    from dataclasses import asdict

    from engine.trace.store import TraceFilter

    since = time.time() - args.since if args.since is not None else None
    rows = store.list_traces(
        TraceFilter(
            since=since, task=args.task, model=args.model, status=args.status, text=args.search, limit=args.limit
        )
    )
    if args.json:
        print(json.dumps([asdict(r) for r in rows], ensure_ascii=False, indent=2))
    if not rows:
        filtered = any(x is not None for x in (args.since, args.task, args.model, args.status, args.search))
        print(
            f"No traces match these filters. Traces are kept in {paths.traces_db}." if filtered else _no_traces(paths),
            file=sys.stderr,
        )
        return 0
    if not args.json:
        _print_table(rows)
    return 0


def _print_table(rows) -> None:
    columns = [
        ("ID", [r.trace_id[:12] for r in rows], "<"),
        ("STARTED", [time.strftime(_TIME, time.localtime(r.start)) for r in rows], "<"),
        ("TASK", [r.task or r.name for r in rows], "<"),
        ("STATUS", [r.status for r in rows], "<"),
        ("DURATION", [_duration(r.duration_s) for r in rows], ">"),
        ("TTFT", [_duration(r.ttft_s) for r in rows], ">"),
        ("TOK/S", [f"{r.tokens_per_s:.1f}" if r.tokens_per_s else "" for r in rows], ">"),
        (
            "IN/OUT",
            [
                ""
                if r.input_tokens is None and r.output_tokens is None
                else f"{r.input_tokens or 0}/{r.output_tokens or 0}"
                for r in rows
            ],
            ">",
        ),
    ]
    widths = [max(len(head), *(len(v) for v in values)) for head, values, _ in columns]
    used = sum(widths) + 2 * len(widths)
    room = max(20, shutil.get_terminal_size((120, 24)).columns - used - 1)
    print("  ".join(f"{head:{align}{w}}" for (head, _, align), w in zip(columns, widths, strict=True)) + "  SUMMARY")
    for i, r in enumerate(rows):
        cells = "  ".join(f"{values[i]:{align}{w}}" for (_, values, align), w in zip(columns, widths, strict=True))
        print(f"{cells}  {_cut(r.summary, room)}")


def _cut(text: str, room: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= room else text[: room - 1] + "…"


def _duration(seconds: float | None) -> str:
    from engine.trace.reading import format_duration  # the viewer's wording, so that both read alike

    return format_duration(seconds)


# show -------------------------------------------------------------------------------


def _show(store, args: argparse.Namespace, paths) -> int:
    from engine.trace.reading import build_tree

    spans = store.trace(args.trace_id)
    t = store.summary(spans[0].trace_id)
    print(
        f"Trace    {t.trace_id}\nTask     {t.task or t.name}   status {t.status}   {t.n_spans} spans"
        + (f"\nModel    {t.model}" if t.model else "")
        + f"\nStarted  {time.strftime(_TIME, time.localtime(t.start))}   duration {_duration(t.duration_s)}"
        + (f"\nSummary  {_cut(t.summary, 200)}" if t.summary else "")
        + "\n"
    )
    start_ns = min(s.start_ns for s in spans)
    _print_tree(build_tree(spans), start_ns, args, "", top=True)
    if args.content:
        _print_content(spans)
    return 0


def _print_tree(nodes, start_ns: int, args, prefix: str, top: bool = False) -> None:
    from engine.trace.reading import span_state

    for i, node in enumerate(nodes):
        s, last = node.span, i == len(nodes) - 1
        branch = "" if top else ("└─ " if last else "├─ ")
        inner = "" if top else prefix + ("   " if last else "│  ")
        state = {
            "error": f"  ERROR: {s.status_message or s.attributes.get('error.type', '')}",
            "cancelled": "  cancelled",
        }.get(span_state(s), "")
        facts = " · ".join(key_facts(s))
        offset = "+" + _duration((s.start_ns - start_ns) / 1e9)
        print(
            f"{offset:>10} {_duration(s.duration_s):>9}  {prefix}{branch}{s.name}{state}"
            + (f"   {facts}" if facts else "")
        )
        pad = " " * 22 + inner + ("│  " if node.children else "   ")
        for line in _sources(s.attributes):
            print(pad + line)
        if args.attributes:
            limit = None if args.content else 200
            for key in sorted(s.attributes):
                _print_value(pad, key, s.attributes[key], limit)
            for event in s.events:
                print(f"{pad}event {event.get('name')} at +{_duration((event.get('time_ns', 0) - start_ns) / 1e9)}")
        _print_tree(node.children, start_ns, args, inner)


def _print_value(pad: str, key: str, value, limit: int | None) -> None:
    from engine.trace.reading import format_value

    lines = format_value(value, limit).splitlines() or [""]
    print(f"{pad}{key} = {lines[0]}")
    for line in lines[1:]:
        print(f"{pad}    {line}")


def key_facts(span) -> list[str]:
    """What one span says at a glance: tokens, timings, outcome, sources, documents."""
    a = span.attributes
    facts = []
    tokens = [
        f"{a[k]} {word}"
        for k, word in (("gen_ai.usage.input_tokens", "in"), ("gen_ai.usage.output_tokens", "out"))
        if a.get(k) is not None
    ]
    if tokens:
        facts.append("tokens " + " / ".join(tokens))
    if "locus.prompt.evaluated_tokens" in a:
        facts.append(f"{a['locus.prompt.evaluated_tokens']} evaluated")
    reused = a.get("locus.prompt.reused_tokens")
    if reused or (reused is not None and "locus.prompt.evaluated_tokens" in a):  # 0 only beside evaluated
        facts.append(f"{a['locus.prompt.reused_tokens']} reused")
    if a.get("locus.time_to_first_token_s") is not None:
        facts.append(f"TTFT {_duration(a['locus.time_to_first_token_s'])}")
    if a.get("locus.tokens_per_s"):
        facts.append(f"{a['locus.tokens_per_s']:.1f} tok/s")
    if a.get("gen_ai.response.finish_reasons"):
        facts.append("finish " + ",".join(map(str, a["gen_ai.response.finish_reasons"])))
    for key, form in (
        ("locus.generations", "{} generations"),
        ("locus.retrieval.passages_count", "{} passages"),
        ("locus.retrieval.top_similarity", "top similarity {:.2f}"),
        ("locus.index.files", "{} files"),
        ("locus.index.indexed", "{} indexed"),
        ("locus.index.failed", "{} failed"),
        ("locus.document.path", "{}"),
        ("locus.document.status", "{}"),
        ("locus.document.reason", "({})"),
        ("locus.document.chunks", "{} chunks"),
        ("locus.citations.numbers", "cites {}"),
        ("locus.monitor.support", "support {:.2f}"),
    ):
        value = a.get(key)
        if value not in (None, "", []):
            facts.append(form.format(", ".join(map(str, value)) if isinstance(value, list) else value))
    return facts


def _sources(a: dict) -> list[str]:
    """A retrieval's sources with their scores, one line each."""
    sources = a.get("locus.retrieval.sources") or []
    scores, similarities = a.get("locus.retrieval.scores") or [], a.get("locus.retrieval.similarities") or []
    return [
        f"[{n + 1}] {source}"
        + (f"  score {scores[n]:.4f}" if n < len(scores) else "")
        + (f"  similarity {similarities[n]:.2f}" if n < len(similarities) else "")
        for n, source in enumerate(sources)
    ]


def _print_content(spans) -> None:
    from engine.trace.reading import trace_content

    content = trace_content(spans)
    root = next((s for s in spans if s.parent_id is None), spans[0])
    question = root.attributes.get("locus.question")
    if (
        question is None
        and content.prompt is None
        and content.response is None
        and not any("text" in p for p in content.passages)
    ):
        print(
            "\nNo prompt or response was recorded for this trace: content capture (traces.capture_content) "
            "was off, or the request ended before it had any."
        )
        return
    names = {s.span_id: s.name for s in spans}
    if question is not None:
        _section("Question", question)
    if content.prompt is not None:
        _section(f"Prompt (span '{names.get(content.prompt_span, '?')}')", content.prompt)
    if content.passages:
        print("\n── Retrieved passages ──")
        for p in content.passages:
            where = " · ".join(str(x) for x in (p.get("title") or p.get("path"), p.get("location")) if x)
            scores = "".join(
                f" · {k} {p[k]:.4f}" for k in ("score", "similarity") if isinstance(p.get(k), (int, float))
            )
            print(f"[{p.get('number', '?')}] {where}{scores}")
            for line in str(p.get("text", "(text not captured)")).splitlines():
                print(f"    {line}" if line.strip() else "")
    _section("Response", content.response if content.response is not None else "(no response was recorded)")


def _section(title: str, text: str) -> None:
    print(f"\n── {title} ──\n{text}")


# export and prune -------------------------------------------------------------------


def _export(store, args: argparse.Namespace, paths) -> int:
    document = store.export(args.trace_id)
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if not args.output or args.output == "-":
        sys.stdout.write(text)
        return 0
    target = Path(args.output).expanduser()
    # Written beside the target and renamed over it, so a reader never sees half a file. mkstemp makes
    # it 0600: the export holds prompts, passages and answers, as private as Locus's own files.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"Wrote trace {document['trace_id']} ({len(document['spans'])} spans) to {target}.", file=sys.stderr)
    return 0


def _prune(store, args: argparse.Namespace, paths) -> int:
    from app import settings as settings_mod

    settings, problems = settings_mod.load(paths.config_file)
    for problem in problems:
        print(f"locus: {problem}", file=sys.stderr)
    keep = settings.traces
    deleted = store.apply_retention(max_age_days=keep.retention_days, max_bytes=keep.max_size_mb * 1024 * 1024)
    print(
        f"Deleted {deleted} trace{'' if deleted == 1 else 's'} (kept: the last {keep.retention_days} days, "
        f"at most {keep.max_size_mb} MB); {store.count()} left, {store.size_bytes() / 1e6:.1f} MB."
    )
    return 0
