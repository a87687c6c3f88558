"""The six RPCs through InferenceService, and every way an infer request can be wrong."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tandem_inference import __version__, codec
from tandem_inference.errors import InvalidArgument, NotFound, TandemError
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.service import SERVER_NAME, InferenceService

from messages import Tensor, probabilities, raw_request

MODELS = ("digits", "digits-torch")


async def test_live_and_ready(service: InferenceService) -> None:
    assert (await service.server_live(pb.ServerLiveRequest())).live
    assert (await service.server_ready(pb.ServerReadyRequest())).ready


async def test_server_metadata(service: InferenceService) -> None:
    meta = await service.server_metadata(pb.ServerMetadataRequest())
    assert (meta.name, meta.version, list(meta.extensions)) == (
        SERVER_NAME,
        __version__,
        ["model_configuration", "model_repository", "statistics"],
    )


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("version", ["", "1"])
async def test_model_metadata(service: InferenceService, model: str, version: str) -> None:
    meta = await service.model_metadata(pb.ModelMetadataRequest(name=model, version=version))
    assert meta.name == model
    assert list(meta.versions) == ["1"]
    assert meta.platform == {"digits": "onnxruntime_onnx", "digits-torch": "pytorch_export"}[model]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("pixels", "FP32", [-1, 64])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("probabilities", "FP32", [-1, 10])
    ]


@pytest.mark.parametrize("model", MODELS)
async def test_model_ready(service: InferenceService, model: str) -> None:
    assert (await service.model_ready(pb.ModelReadyRequest(name=model))).ready
    assert (await service.model_ready(pb.ModelReadyRequest(name=model, version="1"))).ready


@pytest.mark.parametrize(
    ("call", "request_", "words"),
    [
        ("model_ready", pb.ModelReadyRequest(name="nope"), ['model "nope" not found', "digits"]),
        ("model_ready", pb.ModelReadyRequest(name="digits", version="7"), ['no version "7"']),
        ("model_metadata", pb.ModelMetadataRequest(name="nope"), ['model "nope" not found']),
        (
            "model_metadata",
            pb.ModelMetadataRequest(name="digits", version="7"),
            ['model "digits" has no version "7"; versions: 1'],
        ),
        ("model_infer", pb.ModelInferRequest(model_name="nope"), ['model "nope" not found']),
        (
            "model_infer",
            pb.ModelInferRequest(model_name="digits-torch", model_version="9"),
            ['model "digits-torch" has no version "9"'],
        ),
    ],
)
async def test_not_found(
    service: InferenceService, call: str, request_: Any, words: list[str]
) -> None:
    with pytest.raises(NotFound) as caught:
        await getattr(service, call)(request_)
    for word in words:
        assert word in caught.value.message


@pytest.mark.parametrize("model", MODELS)
async def test_infer_raw(service: InferenceService, model: str, digits: Any) -> None:
    pixels, labels = digits
    response = await service.model_infer(raw_request(pixels[:32], model, id="req-7"))
    assert (response.model_name, response.model_version, response.id) == (model, "1", "req-7")
    got = probabilities(response)
    assert got.shape == (32, 10)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    assert (got.argmax(axis=1) == labels[:32]).mean() >= 0.9


async def test_infer_typed_contents_matches_raw(service: InferenceService, digits: Any) -> None:
    pixels = digits[0][:3]
    typed = pb.ModelInferRequest(
        model_name="digits",
        inputs=[
            Tensor(
                name="pixels",
                datatype="FP32",
                shape=pixels.shape,
                contents=codec.encode_contents(pixels),
            )
        ],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="probabilities")],
    )
    want = probabilities(await service.model_infer(raw_request(pixels)))
    np.testing.assert_array_equal(probabilities(await service.model_infer(typed)), want)


def with_input(**changes: Any) -> pb.ModelInferRequest:
    """A valid one-row request with the input tensor's fields changed."""
    request = raw_request(np.zeros((1, 64), dtype=np.float32))
    tensor = request.inputs[0]
    for key, value in changes.items():
        if key == "shape":
            del tensor.shape[:]
            tensor.shape.extend(value)
        else:
            setattr(tensor, key, value)
    return request


def zeros_request(rows: int) -> pb.ModelInferRequest:
    return raw_request(np.zeros((rows, 64), dtype=np.float32))


def both_raw_and_typed() -> pb.ModelInferRequest:
    request = zeros_request(1)
    request.inputs[0].contents.fp32_contents.extend([0.0] * 64)
    return request


def no_data() -> pb.ModelInferRequest:
    request = zeros_request(1)
    del request.raw_input_contents[:]
    return request


def duplicate_input() -> pb.ModelInferRequest:
    request = zeros_request(1)
    request.inputs.append(request.inputs[0])
    request.raw_input_contents.append(request.raw_input_contents[0])
    return request


def extra_raw_entry() -> pb.ModelInferRequest:
    request = zeros_request(1)
    request.raw_input_contents.append(b"")
    return request


def with_outputs(*names: str) -> pb.ModelInferRequest:
    request = zeros_request(1)
    for name in names:
        request.outputs.add(name=name)
    return request


INVALID: list[tuple[str, Any, str]] = [
    # id, request, the whole error message
    (
        "no-inputs",
        pb.ModelInferRequest(model_name="digits"),
        'missing input "pixels"; model "digits" takes "pixels"',
    ),
    (
        "unknown-input",
        with_input(name="pixel"),
        'unknown input "pixel"; model "digits" takes "pixels"',
    ),
    (
        "wrong-datatype",
        with_input(datatype="FP64"),
        'input "pixels": datatype FP64 given, the model takes FP32',
    ),
    (
        "unknown-datatype",
        with_input(datatype="FP128"),
        'input "pixels": datatype FP128 given, the model takes FP32',
    ),
    (
        "wrong-rank",
        with_input(shape=[64]),
        'input "pixels": shape [64] does not match the model\'s [-1, 64]',
    ),
    (
        "wrong-width",
        with_input(shape=[1, 63]),
        'input "pixels": shape [1, 63] does not match the model\'s [-1, 64]',
    ),
    (
        "negative-dimension",
        with_input(shape=[-1, 64]),
        'input "pixels": shape [-1, 64] has a negative dimension',
    ),
    (
        "batch-too-large",
        zeros_request(129),
        'input "pixels": batch of 129 exceeds the model\'s max_batch_size 128',
    ),
    (
        "huge-claimed-batch",
        with_input(shape=[10**12, 64]),
        'input "pixels": batch of 1000000000000 exceeds the model\'s max_batch_size 128',
    ),
    ("empty-batch", with_input(shape=[0, 64]), 'input "pixels": batch of 0; send at least one row'),
    (
        "bytes-do-not-match-shape",
        with_input(shape=[2, 64]),
        'input "pixels": shape [2, 64] of FP32 needs 512 bytes, raw contents hold 256',
    ),
    (
        "raw-and-typed",
        both_raw_and_typed(),
        'input "pixels": has typed contents in a request with raw_input_contents; '
        "send all inputs one way",
    ),
    (
        "no-data",
        no_data(),
        'input "pixels" has no data: set contents or raw_input_contents',
    ),
    ("duplicate-input", duplicate_input(), 'input "pixels" appears more than once'),
    (
        "raw-entries-do-not-match-inputs",
        extra_raw_entry(),
        "raw_input_contents has 2 entries for 1 inputs",
    ),
    (
        "unknown-output",
        with_outputs("logits"),
        'unknown output "logits" requested; model "digits" has "probabilities"',
    ),
    (
        "output-twice",
        with_outputs("probabilities", "probabilities"),
        'output "probabilities" requested more than once',
    ),
]


@pytest.mark.parametrize(
    ("request_", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
async def test_invalid_argument(
    service: InferenceService, request_: pb.ModelInferRequest, message: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await service.model_infer(request_)
    assert caught.value.message == message


async def test_errors_carry_their_codes(service: InferenceService) -> None:
    errors: list[TandemError] = []
    for request_ in (pb.ModelInferRequest(model_name="nope"), zeros_request(129)):
        with pytest.raises(TandemError) as caught:
            await service.model_infer(request_)
        errors.append(caught.value)
    assert [(e.grpc_status.name, e.code) for e in errors] == [
        ("NOT_FOUND", 404),
        ("INVALID_ARGUMENT", 400),
    ]
