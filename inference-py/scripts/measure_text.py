"""Where tokenization should run for a text model, and whether bucketing by length helps.

In process, on models/minilm (ONNX Runtime, one thread), with texts of mixed lengths
(short queries to paragraphs, seeded). Run from the repository root after `make setup`:

    .venv/bin/python inference-py/scripts/measure_text.py [--texts 256] [--repeat 3]

Tokenization: per text with `encode` (what a check before the batcher, or a
per-request step on the model's thread, costs) against one `encode_batch` per batch
(what TextBackend does inside the model call), in µs per text, next to the model's
own time per text at the same batch size.

Bucketing: batches of 32 in arrival order, each padded to its own longest; the same
batches each cut into buckets of similar length and run bucket by bucket (what
TextBackend does, text.buckets); and the texts sorted by length across all of them
before they are cut into batches (what a length-aware batcher could do), in padded
tokens and model ms per text.
Figures compare rows of one run with each other, not with other machines.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from tandem_inference.text import buckets, encode, load_tokenizer, tokenize

ROOT = Path(__file__).resolve().parents[2]
VOCABULARY = (
    "the a model serves text over gRPC and NATS while the gateway speaks REST to many clients "
    "embeddings are unit vectors so a dot product ranks sentences by meaning not by words "
    "der Zug fährt um acht Uhr ab le chat dort sur le canapé 東京は日本の首都です"
)
WORDS = tuple(VOCABULARY.split())
BATCH = 32


def texts(n: int, seed: int = 0) -> list[bytes]:
    """n texts whose lengths spread like real traffic: mostly short, some paragraphs."""
    rng = random.Random(seed)  # noqa: S311  # seeded test data, not secrets
    out = []
    for _ in range(n):
        length = rng.choice((3, 5, 8, 12, 16, 24, 40, 80, 160))
        out.append(" ".join(rng.choice(WORDS) for _ in range(length)).encode())
    return out


def best_us(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of `repeat` runs of fn, µs: the least disturbed by the other tenants."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e6)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "minilm" / "1")
    args = parser.parse_args()
    tokenizer = load_tokenizer(args.model / "tokenizer.json", 256)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(args.model / "model.onnx"), options)
    corpus = texts(args.texts)
    n = len(corpus)

    def model(batch: list[bytes]) -> None:
        session.run(["embedding"], tokenize(tokenizer, np.array(batch, dtype=object)))

    print(f"tokenization, {n} texts of mixed lengths, µs per text (best of {args.repeat})")
    per_text = best_us(lambda: [tokenizer.encode(t.decode()) for t in corpus], args.repeat) / n
    print(f"  encode, one text at a time (per request):        {per_text:8.1f}")
    for size in (1, 8, 32, 64):
        batches = [corpus[i : i + size] for i in range(0, n, size)]

        def encode_all(batches: list[list[bytes]] = batches) -> None:
            for b in batches:
                tokenizer.encode_batch([t.decode() for t in b])

        def run_all(batches: list[list[bytes]] = batches) -> None:
            for b in batches:
                model(b)

        enc = best_us(encode_all, args.repeat) / n
        mod = best_us(run_all, 1) / n
        print(
            f"  encode_batch of {size:>2} (in the model call):        {enc:8.1f}"
            f"   model {mod:8.1f} µs/text, tokenization {enc / mod:5.1%} of it"
        )

    print(f"\nbucketing, batches of {BATCH}")
    arrival = [corpus[i : i + BATCH] for i in range(0, n, BATCH)]
    # TextBackend's own: each arrival batch cut into buckets of similar length.
    within = [
        [batch[i] for i in group]
        for batch in arrival
        for group in buckets([len(e.ids) for e in encode(tokenizer, np.array(batch, dtype=object))])
    ]
    ordered = sorted(corpus, key=len)
    across = [ordered[i : i + BATCH] for i in range(0, n, BATCH)]
    runs = (
        ("arrival order", arrival),
        ("bucketed in each", within),
        ("sorted across all", across),
    )
    for name, batches in runs:
        packed = [tokenize(tokenizer, np.array(b, dtype=object)) for b in batches]
        padded = sum(p["input_ids"].size for p in packed)
        real = sum(int(p["attention_mask"].sum()) for p in packed)

        def run_all(batches: list[list[bytes]] = batches) -> None:
            for b in batches:
                model(b)

        ms = best_us(run_all, args.repeat) / n / 1e3
        print(
            f"  {name:<17} {len(batches):3d} runs, {padded:6d} tokens for {real} real"
            f" ({padded / real - 1:6.1%} padding)   model {ms:6.2f} ms/text"
        )


if __name__ == "__main__":
    main()
