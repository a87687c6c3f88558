"""OIP messages for the digits models, shared by the tests of every front door."""

from __future__ import annotations

from typing import Any

import numpy as np

from tandem_inference import codec
from tandem_inference.pb import grpc_service_pb2 as pb

Tensor = pb.ModelInferRequest.InferInputTensor


def raw_request(pixels: np.ndarray, model: str = "digits", **fields: Any) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[Tensor(name="pixels", datatype="FP32", shape=pixels.shape)],
        raw_input_contents=[codec.encode_raw(pixels)],
        **fields,
    )


def probabilities(response: pb.ModelInferResponse) -> np.ndarray:
    (out,) = response.outputs
    assert (out.name, out.datatype) == ("probabilities", "FP32")
    return codec.decode_raw("output", out.datatype, out.shape, response.raw_output_contents[0])
