"""`make demo`: start the stack, send real held-out digits through the gateway, show the answers.

Every digit goes through the Go gateway's OIP REST endpoint, over the hop to the
Python service, to both `digits` (ONNX Runtime) and `digits-torch` (PyTorch).
The script prints a few digits with both models' predictions, then the accuracy
of each model on the whole held-out set and how far the two backends differ.
"""

from __future__ import annotations

import sys
import time

import httpx
import numpy as np
from tandem_inference.train import heldout

from stack import TRANSPORTS, Stack

MODELS = ("digits", "digits-torch")
SHADES = " .:-=+*#%@"


def ascii_digit(pixels: np.ndarray) -> list[str]:
    """An 8x8 digit (values 0-16) as eight lines of text."""
    img = pixels.reshape(8, 8)
    return ["".join(SHADES[int(v * (len(SHADES) - 1) / 16)] * 2 for v in row) for row in img]


def predict(client: httpx.Client, model: str, pixels: np.ndarray) -> np.ndarray:
    """One request per digit, as independent clients would send them."""
    out = []
    for row in pixels:
        body = {
            "inputs": [
                {"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": row.tolist()}
            ]
        }
        r = client.post(f"/v2/models/{model}/infer", json=body)
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


def main() -> int:
    pixels, labels = heldout()
    pixels = np.asarray(pixels, dtype=np.float32)
    for transport in TRANSPORTS:
        stack = Stack(transport=transport)
        try:
            stack.start()
            with httpx.Client(base_url=stack.rest_url, timeout=30) as client:
                show(transport, client, pixels, np.asarray(labels))
        except (RuntimeError, TimeoutError, httpx.HTTPError) as err:
            print(f"demo failed: {err}\n{stack.logs()}", file=sys.stderr)
            return 1
        finally:
            stack.stop()
    print("\nEverything the demo started has stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
