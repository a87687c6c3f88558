"""`make demo`: start the stack, send real held-out digits through the gateway, show the answers.

For each transport (gRPC, then NATS with the server embedded in the gateway),
every held-out digit goes through the Go gateway's OIP REST endpoint, over the
hop to the Python service, to both `digits` (ONNX Runtime) and `digits-torch`
(PyTorch). The script prints a few digits with both models' predictions, the
accuracy of each model and how far the two backends differ; then it traces one
request and prints its waterfall, built from the spans both processes exported
over OTLP to a receiver the demo runs, with the share of time each hop took.
Last, a small semantic search: a handful of sentences are embedded by `minilm`
(all-MiniLM-L6-v2 on ONNX Runtime) through the gateway, a query is embedded the
same way, and the sentences are printed ranked by cosine similarity to it.
"""

from __future__ import annotations

import secrets
import sys
import time

import httpx
import numpy as np
from tandem_inference.train import heldout

from tandem_stack.otlp import Receiver, hop_shares, otel_env, waterfall
from tandem_stack.stack import TRANSPORTS, Stack

MODELS = ("digits", "digits-torch")
SHADES = " .:-=+*#%@"


def ascii_digit(pixels: np.ndarray) -> list[str]:
    """An 8x8 digit (values 0-16) as eight lines of text."""
    img = pixels.reshape(8, 8)
    return ["".join(SHADES[int(v * (len(SHADES) - 1) / 16)] * 2 for v in row) for row in img]


def one_digit(row: np.ndarray) -> dict[str, object]:
    """The OIP v2 JSON infer request for one digit."""
    tensor = {"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": row.tolist()}
    return {"inputs": [tensor]}


def predict(client: httpx.Client, model: str, pixels: np.ndarray) -> np.ndarray:
    """One request per digit, as independent clients would send them."""
    out = []
    for row in pixels:
        r = client.post(f"/v2/models/{model}/infer", json=one_digit(row))
        r.raise_for_status()
        out.append(r.json()["outputs"][0]["data"])
    return np.asarray(out, dtype=np.float32)


def show(transport: str, client: httpx.Client, pixels: np.ndarray, labels: np.ndarray) -> None:
    started = time.perf_counter()
    probs = {m: predict(client, m, pixels) for m in MODELS}
    elapsed = time.perf_counter() - started
    n = len(labels)

    print(f"\n== transport: {transport} ==  ({2 * n} requests in {elapsed:.2f}s)\n")
    picks = list(range(6))
    arts = [ascii_digit(pixels[i]) for i in picks]
    for line in range(8):
        print("   ".join(art[line] for art in arts))
    print("   ".join(f"true {labels[i]:<11d}" for i in picks))
    for m in MODELS:
        row = []
        for i in picks:
            p = probs[m][i]
            row.append(f"{p.argmax()} ({p.max():.0%})".ljust(16))
        print("   ".join(row) + f"  <- {m}")

    print()
    for m in MODELS:
        acc = float((probs[m].argmax(axis=1) == labels).mean())
        print(f"  {m:<13} accuracy on {n} held-out digits: {acc:.2%}")
    diff = float(np.abs(probs["digits"] - probs["digits-torch"]).max())
    print(f"  largest difference between the two backends' probabilities: {diff:.1e}")


def show_trace(transport: str, client: httpx.Client, receiver: Receiver, row: np.ndarray) -> None:
    trace_id = secrets.token_hex(16)
    headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    r = client.post("/v2/models/digits/infer", json=one_digit(row), headers=headers)
    r.raise_for_status()
    spans = receiver.wait_trace(trace_id, {"tandem-gateway", "tandem-inference"})
    print(f"\n  one request over {transport}, trace {trace_id}:\n")
    print("\n".join("  " + line for line in waterfall(spans).splitlines()))
    parts = hop_shares(spans)
    total = sum(us for _, us in parts) or 1.0
    print("\n  where the time went:")
    for name, us in parts:
        print(f"    {name:<36} {us:9.1f} µs  {us / total:6.1%}")
    print(f"\n  Server-Timing: {r.headers.get('server-timing', '(none)')}")


# The semantic search's corpus and queries: the embeddings are unit vectors, so a dot
# product is the cosine similarity. all-MiniLM-L6-v2 was trained on English, so the
# sentences are English; non-ASCII ones (café, Zürich) still cross as UTF-8 BYTES.
CORPUS = [
    "The cat sleeps on the warm windowsill.",
    "Our quarterly revenue grew by twelve percent.",
    "To fix a flat tyre, remove the wheel and patch the inner tube.",
    "The night train to Zürich departs at eight o'clock.",
    "The recipe needs two eggs, flour and a pinch of salt.",
    "A puppy chases a ball across the park.",
    "The café on the corner serves crème brûlée.",
    "The stock market closed lower on Friday.",
]
QUERIES = ["my bike has a puncture", "when does the train leave?", "a dog playing outside"]


def embed(client: httpx.Client, texts: list[str]) -> np.ndarray:
    """Sentence embeddings from `minilm`, one BYTES tensor of UTF-8 strings."""
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}
    r = client.post("/v2/models/minilm/infer", json=body)
    r.raise_for_status()
    (out,) = r.json()["outputs"]
    return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


def semantic_search(transport: str, client: httpx.Client) -> None:
    started = time.perf_counter()
    corpus = embed(client, CORPUS)
    queries = embed(client, QUERIES)
    elapsed = time.perf_counter() - started
    print(
        f"\n  semantic search over {transport}: {len(CORPUS)} sentences and "
        f"{len(QUERIES)} queries embedded by minilm in {elapsed * 1e3:.0f} ms"
    )
    for query, q in zip(QUERIES, queries, strict=True):
        scores = corpus @ q
        print(f"\n    query: {query!r}")
        for rank, i in enumerate(np.argsort(-scores)[:3], start=1):
            print(f"      {rank}. {scores[i]:.3f}  {CORPUS[i]}")


def main() -> int:
    pixels, labels = heldout()
    pixels = np.asarray(pixels, dtype=np.float32)
    for transport in TRANSPORTS:
        with Receiver() as receiver:
            stack = Stack(transport=transport, embedded_nats=True, env=otel_env(receiver.endpoint))
            try:
                stack.start()
                with httpx.Client(base_url=stack.rest_url, timeout=30) as client:
                    show(transport, client, pixels, np.asarray(labels))
                    show_trace(transport, client, receiver, pixels[0])
                    semantic_search(transport, client)
            except (RuntimeError, TimeoutError, httpx.HTTPError) as err:
                print(f"demo failed: {err}\n{stack.logs()}", file=sys.stderr)
                return 1
            finally:
                stack.stop()
    print("\nEverything the demo started has stopped.")
    return 0
