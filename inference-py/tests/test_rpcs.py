"""The one table of RPCs and the one policy both front doors answer through."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AbstractContextManager

import grpc
import pytest
from opentelemetry.trace import Span
from prometheus_client import REGISTRY

from tandem_inference import metrics
from tandem_inference.errors import Internal, NotFound, TandemError
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.rpcs import INTERNAL_MESSAGE, RPCS, Rpc, answer
from tandem_inference.tracing import Recorder

BY_NAME = {rpc.name: rpc for rpc in RPCS}
MODELS = {"digits"}


def count(model: str, code: str, transport: str = "grpc") -> float:
    labels = {"model": model, "transport": transport, "code": code}
    return REGISTRY.get_sample_value("tandem_inference_requests_total", labels) or 0.0


def no_span(recorder: Recorder) -> AbstractContextManager[Span]:
    raise AssertionError("tracing is off in these tests")


async def settle(rpc: Rpc, work: object, model: str = "digits") -> object:
    async def run() -> object:
        if isinstance(work, BaseException):
            raise work
        return work

    return await answer(rpc, run, transport="grpc", model=model, models=MODELS, open_span=no_span)


def test_the_table_is_the_proto_service() -> None:
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert [m.name for m in service.methods] == [rpc.name for rpc in RPCS]
    for method in service.methods:
        rpc = BY_NAME[method.name]
        assert rpc.request_type.DESCRIPTOR is method.input_type
    assert {r.name for r in RPCS if not r.traced} == {"ServerLive", "ServerReady", "ModelReady"}
    assert {r.name for r in RPCS if r.counted} == {"ModelInfer"}
    assert {r.name for r in RPCS if r.per_model} == {
        "ModelReady",
        "ModelMetadata",
        "ModelInfer",
        "ModelConfig",
        "ModelStatistics",
    }


def test_the_nats_subjects() -> None:
    """proto/README.md's table of subjects."""
    subjects = {rpc.name: rpc.subject("oip.v2", "<model>" if rpc.per_model else "") for rpc in RPCS}
    assert subjects == {
        "ServerLive": "oip.v2.server.live",
        "ServerReady": "oip.v2.server.ready",
        "ServerMetadata": "oip.v2.server.metadata",
        "ModelReady": "oip.v2.models.<model>.ready",
        "ModelMetadata": "oip.v2.models.<model>.metadata",
        "ModelInfer": "oip.v2.models.<model>.infer",
        "ModelConfig": "oip.v2.models.<model>.config",
        "ModelStatistics": "oip.v2.models.<model>.stats",
        "RepositoryIndex": "oip.v2.repository.index",
        "RepositoryModelLoad": "oip.v2.repository.load",
        "RepositoryModelUnload": "oip.v2.repository.unload",
    }


def test_the_model_a_request_names() -> None:
    assert BY_NAME["ModelInfer"].model(pb.ModelInferRequest(model_name="digits")) == "digits"
    assert BY_NAME["ModelReady"].model(pb.ModelReadyRequest(name="m")) == "m"
    assert BY_NAME["ServerLive"].model(pb.ServerLiveRequest()) == ""


async def test_a_result_is_counted_ok() -> None:
    before = count("digits", "OK")
    assert await settle(BY_NAME["ModelInfer"], "response") == "response"
    assert count("digits", "OK") == before + 1


async def test_a_tandem_error_is_returned_and_counted_with_its_code() -> None:
    before = count(metrics.OTHER_MODEL, "NOT_FOUND")
    error = NotFound('model "x" not found')
    assert await settle(BY_NAME["ModelInfer"], error, model="x") is error
    # A model the repository lacks is not a new series.
    assert count(metrics.OTHER_MODEL, "NOT_FOUND") == before + 1
    assert count("x", "NOT_FOUND") == 0


async def test_a_bug_is_internal_and_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = count("digits", "INTERNAL")
    with caplog.at_level(logging.ERROR):
        outcome = await settle(BY_NAME["ModelInfer"], KeyError("secret detail"))
    assert isinstance(outcome, Internal)
    assert outcome.message == INTERNAL_MESSAGE
    assert "secret detail" not in outcome.message
    assert count("digits", "INTERNAL") == before + 1
    (record,) = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], KeyError)


async def test_a_cancelled_call_is_counted_and_stays_cancelled() -> None:
    before = count("digits", "CANCELLED")
    with pytest.raises(asyncio.CancelledError):
        await settle(BY_NAME["ModelInfer"], asyncio.CancelledError())
    assert count("digits", "CANCELLED") == before + 1


async def test_rpcs_other_than_infer_are_not_counted() -> None:
    before = count("digits", "NOT_FOUND")
    outcome = await settle(BY_NAME["ModelMetadata"], NotFound("no"))
    assert isinstance(outcome, TandemError)
    assert outcome.grpc_status == grpc.StatusCode.NOT_FOUND
    assert count("digits", "NOT_FOUND") == before
