"""The client side of `make test-compose` (deploy/compose/test-compose.sh): talks to the
stack that compose runs, from the host, through its published loopback ports.

    python tests/compose_client.py --env-file FILE [--workers N]

Checks the demo page, held-out digits through the gateway over REST (JSON) and gRPC
(Triton's client), both models, MiniLM embeddings on both its backends (the image
exports them at build time), and that exactly N NATS workers answer the services
API's STATS, each having served some of a burst of requests. Exits non-zero on the
first failure, saying what failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import tritonclient.grpc as tgrpc
from tandem_inference.dataset import heldout
from tandem_stack.stack import service_replies

MODELS = ("digits", "digits-torch")
ROWS = 32


def env_file(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    return dict(pairs)


def pixels(x: np.ndarray) -> dict[str, Any]:
    """The OIP JSON input tensor of a [n, 64] batch of digits."""
    return {
        "name": "pixels",
        "datatype": "FP32",
        "shape": list(x.shape),
        "data": x.ravel().tolist(),
    }


def check(ok: bool, what: str) -> None:
    if not ok:
        sys.exit(f"FAIL: {what}")
    print(f"ok: {what}")


def rest(base: str, x: np.ndarray, y: np.ndarray) -> None:
    with httpx.Client(base_url=base, timeout=30) as c:
        page = c.get("/")
        check(page.status_code == 200 and "<canvas" in page.text, "GET / is the demo page")
        check(c.get("/v2/health/ready").status_code == 200, "GET /v2/health/ready is 200")
        for model in MODELS:
            body = {"inputs": [pixels(x)]}
            r = c.post(f"/v2/models/{model}/infer", json=body)
            check(r.status_code == 200, f"REST infer {model}: {r.status_code} {r.text[:200]}")
            (out,) = r.json()["outputs"]
            pred = np.asarray(out["data"]).reshape(out["shape"]).argmax(axis=1)
            right = int((pred == y).sum())
            check(right >= ROWS - 2, f"REST {model}: {right}/{ROWS} held-out digits right")
            timing = r.headers.get("Server-Timing", "")
            check("hop;dur=" in timing, f"REST {model}: Server-Timing {timing}")


def embeddings(base: str) -> None:
    """A paraphrase is nearer than an unrelated sentence, on both MiniLM backends."""
    texts = ["A cat sleeps on the sofa.", "The kitten naps on the couch.", "Stocks fell today."]
    body = {"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": texts}]}
    with httpx.Client(base_url=base, timeout=60) as c:
        for model in ("minilm", "minilm-torch"):
            r = c.post(f"/v2/models/{model}/infer", json=body)
            check(r.status_code == 200, f"REST infer {model}: {r.status_code} {r.text[:200]}")
            (out,) = r.json()["outputs"]
            e = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
            near, far = float(e[0] @ e[1]), float(e[0] @ e[2])
            check(near > far, f"REST {model}: paraphrase {near:.3f} > unrelated {far:.3f}")


def grpc(addr: str, x: np.ndarray, y: np.ndarray) -> None:
    client = tgrpc.InferenceServerClient(addr)
    check(client.is_server_ready(), f"gRPC ServerReady at {addr}")
    for model in MODELS:
        inp = tgrpc.InferInput("pixels", [ROWS, 64], "FP32")
        inp.set_data_from_numpy(x)
        result = client.infer(model, [inp])
        pred = result.as_numpy("probabilities").argmax(axis=1)
        right = int((pred == y).sum())
        check(right >= ROWS - 2, f"gRPC {model}: {right}/{ROWS} held-out digits right")


def served(stats: list[dict[str, Any]]) -> dict[str, int]:
    subject = "oip.v2.models.digits.infer"
    return {
        s["id"]: ep["num_requests"]
        for s in stats
        for ep in s["endpoints"]
        if ep["subject"] == subject
    }


def workers(base: str, nats_url: str, password: str, n: int, x: np.ndarray) -> None:
    """Exactly n workers answer; a burst of single-row requests reaches every one (the
    queue group picks at random: 30 per worker leaves one idle with odds of 1e-5)."""
    host = nats_url.removeprefix("nats://")
    observer = [f"nats://observer:{password}@{host}"]
    before = served(service_replies(observer, "STATS"))
    deadline = time.monotonic() + 60
    while len(before) < n and time.monotonic() < deadline:
        time.sleep(1)
        before = served(service_replies(observer, "STATS"))
    check(len(before) == n, f"{len(before)} NATS workers answer $SRV.STATS, want {n}")
    row = {"inputs": [pixels(x[:1])]}
    with httpx.Client(base_url=base, timeout=30) as c:
        for _ in range(30 * n):
            r = c.post("/v2/models/digits/infer", json=row)
            if r.status_code != 200:
                check(False, f"burst request: {r.status_code} {r.text[:200]}")
    after = served(service_replies(observer, "STATS"))
    took = {w: after.get(w, 0) - before.get(w, 0) for w in before}
    print(f"requests per worker: {sorted(took.values())}")
    check(len(took) == n and min(took.values()) > 0, f"all {n} workers served part of the burst")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env-file", type=Path, required=True, help="the .env compose ran with")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rest", default="http://127.0.0.1:8000")
    p.add_argument("--grpc", default="127.0.0.1:8001")
    p.add_argument("--nats", default="nats://127.0.0.1:4222")
    args = p.parse_args()
    x, y = heldout()
    x, y = np.ascontiguousarray(x[:ROWS], dtype=np.float32), np.asarray(y[:ROWS])
    rest(args.rest, x, y)
    embeddings(args.rest)
    grpc(args.grpc, x, y)
    password = env_file(args.env_file)["NATS_OBSERVER_PASSWORD"]
    workers(args.rest, args.nats, password, args.workers, x)


if __name__ == "__main__":
    main()
