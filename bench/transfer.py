"""Import and export of a large history: a ChatGPT-format file of N conversations x M messages (each with one
edited question, so every conversation has a branch) is imported, then exported as Locus JSON and Markdown.

Each figure is also given as a ratio to plain ``json.loads`` of the same bytes, measured in the same run
(interleaved), so the machine's load weighs on both sides alike.

    .venv/bin/python bench/transfer.py [--conversations 1000] [--messages 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.history.export import export_json, export_markdown
from engine.history.imports import import_file
from engine.history.store import HistoryStore

WORDS = "the water boils sooner up high because the air pressure is lower there than at sea level".split()


def chatgpt_file(path: Path, conversations: int, messages: int) -> int:
    """Write a conversations.json; returns how many messages it holds."""
    out, total, t0 = [], 0, 1_718_000_000.0
    for c in range(conversations):
        mapping: dict = {"root": {"id": "root", "message": None, "parent": None, "children": []}}
        parent = "root"
        for i in range(messages):
            key, role = f"n{i}", "user" if i % 2 == 0 else "assistant"
            text = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(40))
            mapping[key] = {
                "id": key,
                "message": {
                    "id": key,
                    "author": {"role": role},
                    "create_time": t0 + c * 1000 + i,
                    "content": {"content_type": "text", "parts": [text]},
                    "status": "finished_successfully",
                    "metadata": {},
                    "recipient": "all",
                },
                "parent": parent,
                "children": [],
            }
            mapping[parent]["children"].append(key)
            parent = key
            total += 1
        # One edited question: a sibling of the second question.
        mapping["edit"] = {
            "id": "edit",
            "message": {
                "id": "edit",
                "author": {"role": "user"},
                "create_time": t0 + c * 1000 + 500,
                "content": {"content_type": "text", "parts": ["an edited question"]},
            },
            "parent": "n1",
            "children": [],
        }
        mapping["n1"]["children"].append("edit")
        total += 1
        out.append(
            {"title": f"Conversation {c}", "create_time": t0 + c * 1000, "mapping": mapping, "current_node": parent}
        )
    path.write_text(json.dumps(out), encoding="utf-8")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "conversations.json"
        total = chatgpt_file(source, args.conversations, args.messages)
        data = source.read_bytes()
        print(f"file: {len(data) / 2**20:.1f} MB, {args.conversations} conversations, {total} messages")
        figures: dict[str, list[float]] = {"json.loads": [], "import": [], "export json": [], "export markdown": []}
        for r in range(args.rounds):
            start = time.perf_counter()
            json.loads(data)
            figures["json.loads"].append(time.perf_counter() - start)
            store = HistoryStore(Path(tmp) / f"h{r}.sqlite3")
            start = time.perf_counter()
            result = import_file(store, source)
            figures["import"].append(time.perf_counter() - start)
            assert result.messages == total
            ids = result.conversation_ids
            start = time.perf_counter()
            json.dumps(export_json(store, ids))
            figures["export json"].append(time.perf_counter() - start)
            start = time.perf_counter()
            for cid in ids:
                export_markdown(store, [cid])
            figures["export markdown"].append(time.perf_counter() - start)
            store.close()
        base = statistics.median(figures["json.loads"])
        for name, values in figures.items():
            median = statistics.median(values)
            print(f"{name:16s} {median:7.2f} s  {total / median:9.0f} messages/s  {median / base:5.1f}x json.loads")


if __name__ == "__main__":
    main()
