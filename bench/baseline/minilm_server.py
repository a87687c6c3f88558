"""The all-Python alternative for MiniLM: the same ONNX model and tokenizer, in FastAPI.

What a team would write to serve sentence embeddings without Tandem: FastAPI with
pydantic request models on uvicorn (uvloop, httptools, one worker); a plain `def`
handler, so that FastAPI runs the tokenizer and ONNX Runtime (milliseconds of
native work) on its thread pool instead of blocking the event loop; the
`tokenizers` library with the model's tokenizer.json, truncating at 256 tokens and
padding to the request's longest text, as Tandem's text models do. No batching
across requests: each request is its own model call, as an ordinary service does.

    python bench/baseline/minilm_server.py --port 8081 --model models/minilm/1/model.onnx
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from tokenizers import Tokenizer

MODEL_NAME = "minilm"
MAX_TOKENS = 256


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


class EmbeddingOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class EmbedResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[EmbeddingOutput]


def create_app(model: Path) -> FastAPI:
    options = ort.SessionOptions()
    # One intra-op thread, as Tandem's ONNX backend runs (models/minilm/config.toml).
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(model.parent / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.enable_padding()
    app = FastAPI(title="Tandem bench MiniLM baseline")

    @app.get("/v2/health/live")
    @app.get("/v2/health/ready")
    async def health() -> dict[str, bool]:
        return {"ready": True}

    @app.post(
        "/v2/models/{model_name}/infer",
        response_model=EmbedResponse,
        response_model_exclude_none=True,
    )
    def infer(model_name: str, request: EmbedRequest) -> EmbedResponse | JSONResponse:
        if model_name != MODEL_NAME:
            return JSONResponse({"error": f"unknown model {model_name!r}"}, status_code=404)
        if len(request.inputs) != 1 or request.inputs[0].name != "text":
            return JSONResponse({"error": "expected one input named 'text'"}, status_code=400)
        texts = request.inputs[0].data
        if not texts:
            return JSONResponse({"error": "input 'text' is empty"}, status_code=400)
        encodings = tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }
        (embedding,) = session.run(["embedding"], feeds)
        return EmbedResponse(
            model_name=MODEL_NAME,
            model_version="1",
            id=request.id,
            outputs=[
                EmbeddingOutput(
                    name="embedding",
                    shape=list(embedding.shape),
                    datatype="FP32",
                    data=embedding.ravel().tolist(),
                )
            ],
        )

    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--model", type=Path, default=Path("models/minilm/1/model.onnx"))
    args = parser.parse_args(argv)
    uvicorn.run(
        create_app(args.model),
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
