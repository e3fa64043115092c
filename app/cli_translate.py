"""`locus translate`: a file or stdin translated with Markdown, code and URLs kept, streamed to stdout.

Paragraphs stream to stdout in order as they are translated; progress goes to
stderr, and Ctrl-C stops the translation (what was translated so far stays
printed). Only this module's parser is imported for every `locus` command, so
it imports nothing heavy at the top.
"""

from __future__ import annotations

import argparse
import sys

from engine.tasks.translate import LANGUAGES


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the `translate` subcommand to the `locus` parser's subparsers."""
    parser = sub.add_parser(
        "translate", help="translate a file or stdin; Markdown, code blocks and URLs are kept",
        description="Translate text with the local model. Code blocks, inline code, URLs and Markdown "
                    "structure come through unchanged; the translation streams to stdout paragraph by "
                    "paragraph, progress to stderr. Languages: " + ", ".join(LANGUAGES) + ".")
    parser.add_argument("file", metavar="FILE", help="the file to translate; '-' reads stdin")
    parser.add_argument("--to", dest="target", metavar="LANG",
                        help="language to translate into (name or code, e.g. French or fr); default: the "
                             "tasks.translate_to setting")
    parser.add_argument("--from", dest="source", metavar="LANG", help="the text's language (default: detected)")
    parser.add_argument("--model", metavar="PATH", help="use this GGUF file for this translation only")
    return parser


def run(args: argparse.Namespace) -> int:
    """Translate what the arguments name,, streamed to stdout (app.cli reports errors)."""
    from app.cli_summarize import read_file
    from app.services import build_services
    from app.terminal import _load
    from engine.tasks.translate import check_languages, language_name, translate

    source = language_name(args.source) if args.source else None  # refuse a bad name before reading
    services = build_services()
    try:
        text = read_file(args.file, services.settings.documents.parse_timeout_s)
        # Refuse an empty text, an unknown language or a text already in the target before loading.
        target = check_languages(text, args.target or services.settings.tasks.translate_to, source)[0]
        _load(services, args.model)
        result, code = stream_task(services, lambda ctx: translate(ctx, text, target, source), "translate",
                                   ends_line=text.endswith("\n"))
        if result is not None and not result.cancelled and result.stats.get("units"):
            _report(result.stats)
        return code
    finally:
        services.close()


def _report(stats: dict) -> None:
    """One line on stderr: what was translated, and what had to be kept as it was."""
    source = stats.get("source_language") or "its language"
    if stats.get("source_language") and stats.get("source_detected"):
        source += " (detected)"
    kept = stats.get("kept_original", 0)
    line = f"Translated {stats['units']} paragraph(s) from {source} to {stats['target_language']}"
    if kept:
        line += f"; {kept} kept as written because the model lost code or links in them"
    print(line + ".", file=sys.stderr)


def stream_task(services, task, name: str, *, ends_line: bool = False):
    """Run ``task`` with output to stdout and progress to stderr until it ends; Ctrl-C cancels.

    Returns (TaskDone or None, exit code). ``ends_line``: the output already ends its last line.
    """
    from app.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
    from app.terminal import _ctrl_c_cancels
    from engine.tasks.base import TaskDone, TaskFailed, TaskProgress, TaskText, start_task

    handle = start_task(task, services.runtime, services.templates, services.assistant.settings.sampling,
                        name=name)
    tty = sys.stderr.isatty()
    drawn = False
    result = None
    with _ctrl_c_cancels(handle.cancel):
        for event in handle.events():
            if isinstance(event, TaskProgress) and (tty or event.done):
                line = f"{event.stage} {event.done}/{event.total}"
                print(f"\r\033[K{line}…" if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
                drawn = tty
            elif isinstance(event, TaskText):
                if drawn:
                    print("\r\033[K", end="", file=sys.stderr, flush=True)
                    drawn = False
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif isinstance(event, (TaskDone, TaskFailed)):
                result = event
    if drawn:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    if not (ends_line and isinstance(result, TaskDone) and result.text.endswith("\n")):
        sys.stdout.write("\n")
    sys.stdout.flush()
    if isinstance(result, TaskFailed):
        print(f"locus: {result.error.user_text()}", file=sys.stderr)
        return None, EXIT_ERROR
    if result is not None and result.cancelled:
        print("[stopped]", file=sys.stderr)
        return result, EXIT_INTERRUPTED
    return result, EXIT_OK
