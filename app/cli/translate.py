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


def add_parsers(sub) -> None:
    """Add the `translate` command to the `locus` parser's subparsers."""
    parser = sub.add_parser(
        "translate",
        help="translate a file or stdin; Markdown, code blocks and URLs are kept",
        description="Translate text with the local model. Code blocks, inline code, URLs and Markdown "
        "structure come through unchanged; the translation streams to stdout paragraph by "
        "paragraph, progress to stderr. Languages: " + ", ".join(LANGUAGES) + ".",
    )
    parser.add_argument("file", metavar="FILE", help="the file to translate; '-' reads stdin")
    parser.add_argument(
        "--to",
        dest="target",
        metavar="LANG",
        help="language to translate into (name or code, e.g. French or fr); default: the tasks.translate_to setting",
    )
    parser.add_argument("--from", dest="source", metavar="LANG", help="the text's language (default: detected)")
    parser.add_argument("--model", metavar="PATH", help="use this GGUF file for this translation only")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Translate what the arguments name, streamed to stdout (app.cli reports errors)."""
    from app.cli.common import load_model, read_file, stream_task
    from app.services import build_services
    from engine.tasks.translate import check_languages, language_name, translate

    source = language_name(args.source) if args.source else None  # refuse a bad name before reading
    services = build_services()
    try:
        text = read_file(args.file, services.settings.documents.parse_timeout_s, ocr=services.settings.documents.ocr)
        # Refuse an empty text, an unknown language or a text already in the target before loading.
        target = check_languages(text, args.target or services.settings.tasks.translate_to, source)[0]
        load_model(services, args.model)
        ended, code = stream_task(
            services, lambda ctx: translate(ctx, text, target, source), "translate", ends_line=text.endswith("\n")
        )
        figures = ended.stats.details  # the task's own: paragraphs, languages, paragraphs kept as written
        if ended.complete and figures.get("units"):
            _report(figures)
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
