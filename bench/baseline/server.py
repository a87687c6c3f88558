"""The all-Python alternative Tandem is measured against.

What a team would write without Tandem: FastAPI with pydantic request models on
uvicorn (uvloop, httptools, one worker), calling ONNX Runtime in the handler, at the
OIP v2 REST path with the OIP JSON request and response shape. It is deliberately
ordinary, not tuned, because that is the comparison the benchmark makes.

    python bench/baseline/server.py --port 8080 --model models/digits/1/model.onnx
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

MODEL_NAME = "digits"
INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"
FEATURES = 64


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


def create_app(model: Path) -> FastAPI:
    session = load_session(model)
    app = FastAPI(title="Tandem bench baseline")

    @app.exception_handler(BadRequestError)
    async def bad_request(_: Request, err: BadRequestError) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=400)

    @app.get("/v2/health/live")
    @app.get("/v2/health/ready")
    async def health() -> dict[str, bool]:
        return {"ready": True}

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
