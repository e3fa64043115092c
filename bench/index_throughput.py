"""Indexing throughput: the whole pipeline beside encoding the same chunks in-process, on a folder of real PDFs.

Indexes a folder (default: every PDF in ../shared/corpus/pdf-oddities, copied
N times so the run lasts long enough to measure) into a fresh index with the
real pipeline (worker-process parsing, chunking, embedding, LanceDB writes),
then embeds exactly the same chunk texts (a) with sentence-transformers loaded
in this process (SentenceTransformer.encode, the reference: no worker, no
pipeline) and (b) with the app's Embedder alone (its worker process, requests
of the indexer's size), in interleaved rounds so the machine's load weighs on
both alike; between them, the worker's own encoding (embed._encode: on a CPU
sentence-transformers' encode, with --overlap on the GPU loop) runs on the
in-process model, so its cost shows without the worker. It prints the embedder's device, batch size and whether it
overlaps tokenization, and the ratios pipeline/in-process (how busy the
pipeline keeps the device; target on a GPU: at least 0.9) and
embedder/in-process.

--batch-size and --overlap override the embedder's own choice (to measure
them); --reference-batch sets the in-process encode's batch (default: the
embedder's).

With --ocr PAGES it measures OCR instead: a generated corpus of scanned pages
(PDFs of page images without a text layer, 5 pages each, and PNGs; each page a
dozen lines of distinct words, A4 at 150 dpi) is indexed with OCR on, and the
run prints the pages read per second end to end.

    .venv/bin/python bench/index_throughput.py [--folder DIR] [--copies 3] [--rounds 2]
    .venv/bin/python bench/index_throughput.py --batch-size 64 --overlap on
    .venv/bin/python bench/index_throughput.py --encode-pairs 5   # does overlapped tokenization pay here?
    .venv/bin/python bench/index_throughput.py --ocr 20 [--workers N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path
from engine.rag.embed import Embedder
from engine.rag.embed import _encode as worker_loop
from engine.rag.indexer import EMBED_BATCH, embedding_text
from engine.rag.library import DocumentLibrary
from engine.rag.loaders import DocumentError, load

DEFAULT_FOLDER = REPO.parent / "shared" / "corpus" / "pdf-oddities"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--copies", type=int, default=3, help="copies of the folder's PDFs to index")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of in-process and embedder")
    parser.add_argument("--batch-size", type=int, help="the embedder's batch size (default: the device's choice)")
    parser.add_argument("--overlap", choices=("on", "off"), help="tokenize the next batch during the current one")
    parser.add_argument("--reference-batch", type=int, help="in-process encode's batch (default: the embedder's)")
    parser.add_argument(
        "--encode-pairs", type=int, metavar="N", help="only compare encoders in-process: N interleaved rounds"
    )
    parser.add_argument("--ocr", type=int, metavar="PAGES", help="index PAGES generated scanned pages with OCR")
    parser.add_argument("--workers", type=int, help="parse workers (default: the indexer's own choice)")
    args = parser.parse_args()
    if args.ocr:
        ocr_bench(args.ocr, args.workers)
        return
    if args.encode_pairs:
        encode_pairs(args.folder, args.encode_pairs)
        return

    overlap = None if args.overlap is None else args.overlap == "on"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "docs"
        for copy in range(args.copies):
            for pdf in sorted(args.folder.glob("*.pdf")):
                target = folder / f"copy{copy}" / pdf.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(pdf, target)
                with open(target, "ab") as fh:  # a distinct file each copy (a comment after %%EOF)
                    fh.write(f"\n% copy {copy}\n".encode())
        library = DocumentLibrary(Path(tmp) / "index", bundled_embedder_path(), BUNDLED_EMBEDDER_NAME)
        embedder = Embedder(bundled_embedder_path(), BUNDLED_EMBEDDER_NAME, batch_size=args.batch_size, overlap=overlap)
        library.embedder = library.indexer.embedder = embedder
        info = embedder.info  # model load is not indexing
        t = time.perf_counter()
        result = library.index([folder]).wait()
        elapsed = time.perf_counter() - t
        p = result.progress

        texts = []
        for path in sorted(folder.rglob("*.pdf")):
            try:
                document = load(path)
            except DocumentError:
                continue
            texts += [embedding_text(document.title, chunk) for chunk in library.chunker.chunk(document)]
        reference = in_process_model(info)
        reference_batch = args.reference_batch or info.batch_size
        request = max(EMBED_BATCH, embedder.request_size)
        in_process_s, loop_s, embedder_s = [], [], []
        for _ in range(args.rounds):  # interleaved: load on the machine weighs on all alike
            t = time.perf_counter()
            for start in range(0, len(texts), request):
                reference.encode(
                    texts[start : start + request],
                    batch_size=reference_batch,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
            in_process_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            for start in range(0, len(texts), request):
                worker_loop(reference, texts[start : start + request], info)
            loop_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            for start in range(0, len(texts), request):
                embedder.embed(texts[start : start + request])
            embedder_s.append(time.perf_counter() - t)
        library.close()
        embedder.close()

    pipeline_rate = p.chunks_done / elapsed
    in_process_rate = len(texts) / (sum(in_process_s) / len(in_process_s))
    embedder_rate = len(texts) / (sum(embedder_s) / len(embedder_s))
    loop_rate = len(texts) / (sum(loop_s) / len(loop_s))
    print(
        f"folder: {args.folder} x{args.copies}: {result.indexed} files indexed, {result.failed} refused, "
        f"{p.pages_done} pages, {p.chunks_done} chunks; {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    )
    print(
        f"embedder: {info.device} ({info.dtype}), batch size {info.batch_size}, "
        f"tokenization overlapped: {'yes' if info.overlap else 'no'}, requests of {request} chunks; "
        f"in-process reference: sentence-transformers encode, batch {reference_batch}, "
        f"requests of {request}"
    )
    print(f"{'':34} {'seconds':>8} {'pages/s':>8} {'chunks/s':>9}")
    print(f"{'pipeline (end to end)':34} {elapsed:>8.1f} {p.pages_done / elapsed:>8.1f} {pipeline_rate:>9.1f}")
    print(f"{'in-process encode, same chunks':34} {min(in_process_s):>8.1f} {'':>8} {in_process_rate:>9.1f}")
    print(f"{'in-process, the worker loop':34} {min(loop_s):>8.1f} {'':>8} {loop_rate:>9.1f}")
    print(f"{'embedder (worker) alone':34} {min(embedder_s):>8.1f} {'':>8} {embedder_rate:>9.1f}")
    print(
        f"ratio pipeline/in-process: {pipeline_rate / in_process_rate:.2f} (target on a GPU >= 0.9); "
        f"embedder/in-process: {embedder_rate / in_process_rate:.2f}; "
        f"worker loop/in-process: {loop_rate / in_process_rate:.2f}; "
        f"embedder busy {p.embed_busy_s / elapsed:.0%} of the pipeline run"
    )


def encode_pairs(folder: Path, rounds: int) -> None:
    """sentence-transformers' encode (the worker's CPU path) against the worker's GPU loop (length-sorted
    batches, the next one tokenized in a thread) run on the CPU, on one model in this process, in
    interleaved rounds over the folder's chunks in requests of the indexer's size: whether overlapping
    tokenization pays on a CPU."""
    import statistics

    from engine.rag.chunk import Chunker
    from engine.rag.embed_batches import choose_batch_size

    chunker = Chunker(bundled_embedder_path() / "tokenizer.json", max_tokens=200, overlap_tokens=32)
    texts = []
    for path in sorted(folder.glob("*.pdf")):
        try:
            document = load(path)
        except DocumentError:
            continue
        texts += [embedding_text(document.title, chunk) for chunk in chunker.chunk(document)]
    from engine.rag.embed import EmbedderInfo

    size = choose_batch_size("cpu", max_tokens=256, hidden_size=384, n_heads=12)
    info = EmbedderInfo("", 384, "cpu", "float32", 256, size, False)
    model = in_process_model(info)
    ways = {
        "sentence-transformers encode": lambda chunk: model.encode(
            chunk, batch_size=size, normalize_embeddings=True, show_progress_bar=False
        ),
        "worker loop, overlap on": lambda chunk: worker_loop(model, chunk, replace(info, overlap=True)),
    }
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            t = time.perf_counter()
            for start in range(0, len(texts), EMBED_BATCH):
                way(texts[start : start + EMBED_BATCH])
            seconds[name].append(time.perf_counter() - t)
    base = statistics.median(seconds["sentence-transformers encode"])
    print(f"{len(texts)} chunks, batch {size}, {rounds} interleaved rounds, load {os.getloadavg()[0]:.2f}")
    for name, s in seconds.items():
        median = statistics.median(s)
        print(f"{name:32} {len(texts) / median:8.1f} chunks/s (median)  ratio to encode {base / median:.2f}")


def in_process_model(info):
    """The embedding model loaded in this process, on the embedder's device and dtype."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(bundled_embedder_path()), device=info.device, local_files_only=True)
    if info.dtype == "float16":
        model.half()
    return model


def scanned_page(number: int):
    """A page image: a dozen lines of words, black on white, A4 at 150 dpi."""
    from PIL import Image, ImageDraw, ImageFont

    words = "river lantern copper meadow harbour violin orchard glacier saddle pepper quartz willow".split()
    image = Image.new("L", (1240, 1754), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=34)
    for line in range(12):
        picked = " ".join(words[(number * 7 + line * 5 + k) % len(words)] for k in range(6))
        draw.text((100, 140 + line * 110), f"Page {number}, line {line + 1}: {picked}.", fill=0, font=font)
    return image


def ocr_bench(pages: int, workers: int | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "scans"
        folder.mkdir()
        made = 0
        while made < pages:
            if made % 10 == 5 or pages - made < 5:  # some single-page images among the PDFs
                scanned_page(made + 1).save(folder / f"scan{made:04}.png")
                made += 1
                continue
            images = [scanned_page(made + k + 1) for k in range(5)]
            images[0].save(folder / f"scan{made:04}.pdf", save_all=True, append_images=images[1:], resolution=150)
            made += 5
        library = DocumentLibrary(
            Path(tmp) / "index",
            bundled_embedder_path(),
            BUNDLED_EMBEDDER_NAME,
            parse_workers=workers,
            parse_timeout_s=120,
            ocr=True,
        )
        library.embedder.embed(["warm up"])  # model load is not indexing
        t = time.perf_counter()
        result = library.index([folder]).wait()
        elapsed = time.perf_counter() - t
        ocr_pages = sum(int(r.reason.split()[1]) for r in library.documents() if r.reason.startswith("OCR "))
        p = result.progress
        library.close()
    print(
        f"OCR: {made} scanned pages in {result.indexed} files ({result.failed} failed), {ocr_pages} pages read "
        f"by OCR, {p.chunks_done} chunks; {library.indexer.parse_workers} parse worker(s), {os.cpu_count()} cores"
    )
    print(f"{elapsed:.1f} s end to end: {ocr_pages / elapsed:.2f} pages/s ({elapsed / max(ocr_pages, 1):.1f} s a page)")


if __name__ == "__main__":
    main()
