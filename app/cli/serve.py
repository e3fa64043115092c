"""`locus serve`: the OpenAI-compatible API over the local model, until Ctrl+C or SIGTERM.

Only this module's parser is imported for every `locus` command; the engine loads in run().
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number (0 to 65535; 0 picks a free one)")
    return int(text)


def add_parsers(sub) -> None:
    """Add the `serve` command to the `locus` parser's subparsers."""
    parser = sub.add_parser(
        "serve",
        help="serve an OpenAI-compatible API (/v1/chat/completions, ...) over the local model",
        description="Answer OpenAI-compatible requests (/v1/models, /v1/chat/completions, /v1/completions, "
        "/v1/embeddings) with the local model, for editors, scripts and agents. It listens on "
        "127.0.0.1 unless told otherwise; any other address needs an API key in the system keyring "
        "('locus secrets set server_api_key'), which clients send as 'Authorization: Bearer KEY'.",
    )
    parser.add_argument("--host", metavar="HOST", help="address to listen on (default: the setting, 127.0.0.1)")
    parser.add_argument("--port", type=_port, metavar="PORT", help="port to listen on (default: the setting, 8765)")
    parser.add_argument("--model", metavar="PATH", help="serve this GGUF file instead of the configured model")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Load the model, serve until a signal, shut down cleanly (app.cli reports EngineErrors)."""
    from app.api_service import embedding_model, open_api, read_api_key
    from app.cli import EXIT_OK
    from app.cli.common import load_model
    from app.services import build_services
    from engine.rag.embed import Embedder

    services = build_services()
    server = embedder = None
    try:
        settings = services.settings.api
        host = args.host or settings.host
        port = settings.port if args.port is None else args.port
        key = read_api_key(services, host)  # before the model loads: a missing key fails at once
        load_model(services, args.model)
        source = embedding_model(services.settings)
        if source is not None:
            embedder = Embedder(*source)  # its worker process starts on the first embeddings request
        server = open_api(services, host=host, port=port, embedder=embedder, api_key=key or "")
        info = services.backends.resolve(None)[1].model_info
        print(
            f"Locus API on {server.url} serving '{info.name}'"
            + (" (API key required)" if key else "")
            + ". Press Ctrl+C to stop.",
            flush=True,
        )
        _wait_for_signal()
        print("Stopping…", file=sys.stderr, flush=True)
        return EXIT_OK
    finally:
        if server is not None:
            server.stop()
        if embedder is not None:
            embedder.close()
        services.close()


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM (the API answers on its own threads meanwhile)."""
    stop = threading.Event()
    handled = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in handled}
    try:
        while not stop.wait(0.5):  # a timed wait, so that Windows delivers Ctrl+C too
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
