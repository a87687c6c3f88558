"""The all-Python alternative Tandem is measured against.

What a team would write without Tandem: FastAPI with pydantic request models on
uvicorn (uvloop, httptools, one worker), calling ONNX Runtime in the handler, at the
OIP v2 REST path with the OIP JSON request and response shape. It is deliberately
ordinary, not tuned, because that is the comparison the benchmark makes.

Two apps, one per model the benchmark serves:
- digits (`create_app`): FP32 pixels in, probabilities out, the model run inline;
- MiniLM (`create_text_app`, `--text`): the same ONNX file and tokenizer.json as Tandem's
  `minilm`, the `tokenizers` library truncating at 256 tokens and padding to the
  request's longest text, as Tandem's text models do. No batching across requests:
  each request is its own model call, as an ordinary service does.

    python bench/baseline/server.py --port 8080 --model models/digits/1/model.onnx
    python bench/baseline/server.py --port 8081 --text --model models/minilm/1/model.onnx
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from tokenizers import Tokenizer

MODEL_NAME = "digits"
INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"
FEATURES = 64
TEXT_MODEL_NAME = "minilm"
MAX_TOKENS = 256


class InferInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[float] | list[list[float]]


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferInput]


class InferOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[InferOutput]


class TextInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[str]


class EmbedRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[TextInput]


class BadRequestError(Exception):
    """The request does not fit the model; the message says how."""


def load_session(model: Path) -> ort.InferenceSession:
    # One intra-op thread, as Tandem's ONNX backend runs: the figures compare
    # serving stacks, not thread pools.
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def pixels_of(request: InferRequest) -> np.ndarray:
    if len(request.inputs) != 1 or request.inputs[0].name != INPUT_NAME:
        raise BadRequestError(f"expected one input named {INPUT_NAME!r}")
    tensor = request.inputs[0]
    if tensor.datatype != "FP32":
        raise BadRequestError(f"input {INPUT_NAME!r} must be FP32, not {tensor.datatype}")
    if len(tensor.shape) != 2 or tensor.shape[1] != FEATURES:
        raise BadRequestError(f"input {INPUT_NAME!r} must have shape [-1, {FEATURES}]")
    data = np.asarray(tensor.data, dtype=np.float32)
    if data.size != tensor.shape[0] * FEATURES:
        raise BadRequestError(f"input {INPUT_NAME!r} has {data.size} values for {tensor.shape}")
    return data.reshape(tensor.shape)


def base_app(title: str) -> FastAPI:
    """An app with the OIP health endpoints and the bad-request policy."""
    app = FastAPI(title=title)

    @app.exception_handler(BadRequestError)
    async def bad_request(_: Request, err: BadRequestError) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=400)

    @app.get("/v2/health/live")
    @app.get("/v2/health/ready")
    async def health() -> dict[str, bool]:
        return {"ready": True}

    return app


def create_app(model: Path) -> FastAPI:
    session = load_session(model)
    app = base_app("Tandem bench baseline")

    # async def, calling the model inline: a batch-1 run takes microseconds, far
    # less than a hop to the thread pool that a plain def would cost.
    @app.post(
        "/v2/models/{model_name}/infer",
        response_model=InferResponse,
        response_model_exclude_none=True,
    )
    async def infer(model_name: str, request: InferRequest) -> InferResponse | JSONResponse:
        if model_name != MODEL_NAME:
            return JSONResponse({"error": f"unknown model {model_name!r}"}, status_code=404)
        (probabilities,) = session.run([OUTPUT_NAME], {INPUT_NAME: pixels_of(request)})
        return InferResponse(
            model_name=MODEL_NAME,
            model_version="1",
            id=request.id,
            outputs=[
                InferOutput(
                    name=OUTPUT_NAME,
                    shape=list(probabilities.shape),
                    datatype="FP32",
                    data=probabilities.ravel().tolist(),
                )
            ],
        )

    return app


def texts_of(request: EmbedRequest) -> list[str]:
    if len(request.inputs) != 1 or request.inputs[0].name != "text":
        raise BadRequestError("expected one input named 'text'")
    texts = request.inputs[0].data
    if not texts:
        raise BadRequestError("input 'text' is empty")
    return texts


def create_text_app(model: Path) -> FastAPI:
    session = load_session(model)
    tokenizer = Tokenizer.from_file(str(model.parent / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.enable_padding()
    app = base_app("Tandem bench MiniLM baseline")

    # A plain def: FastAPI runs the tokenizer and ONNX Runtime (milliseconds of native
    # work) on its thread pool instead of blocking the event loop.
    @app.post(
        "/v2/models/{model_name}/infer",
        response_model=InferResponse,
        response_model_exclude_none=True,
    )
    def infer(model_name: str, request: EmbedRequest) -> InferResponse | JSONResponse:
        if model_name != TEXT_MODEL_NAME:
            return JSONResponse({"error": f"unknown model {model_name!r}"}, status_code=404)
        encodings = tokenizer.encode_batch(texts_of(request))
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }
        (embedding,) = session.run(["embedding"], feeds)
        return InferResponse(
            model_name=TEXT_MODEL_NAME,
            model_version="1",
            id=request.id,
            outputs=[
                InferOutput(
                    name="embedding",
                    shape=list(embedding.shape),
                    datatype="FP32",
                    data=embedding.ravel().tolist(),
                )
            ],
        )

    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("TANDEM_BASELINE_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("TANDEM_BASELINE_PORT", "8080"))
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=Path(os.environ.get("TANDEM_BASELINE_MODEL", "models/digits/1/model.onnx")),
    )
    parser.add_argument("--text", action="store_true", help="serve MiniLM, not digits")
    args = parser.parse_args(argv)
    uvicorn.run(
        (create_text_app if args.text else create_app)(args.model),
        host=args.host,
        port=args.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
