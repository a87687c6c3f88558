from __future__ import annotations

import grpc
import pytest

from tandem_inference import errors

# inference-py/README.md's Errors table: the one mapping every front door uses.
TABLE = [
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND, 404),
    (errors.TooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE, 503),
    (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    (errors.Internal, grpc.StatusCode.INTERNAL, 500),
    (errors.ModelConfigError, grpc.StatusCode.INTERNAL, 500),
    (errors.TandemError, grpc.StatusCode.INTERNAL, 500),
]


@pytest.mark.parametrize(("cls", "status", "code"), TABLE)
def test_status_codes(cls: type[errors.TandemError], status: grpc.StatusCode, code: int) -> None:
    err = cls("what went wrong")
    assert (err.grpc_status, err.code, err.message, str(err)) == (
        status,
        code,
        "what went wrong",
        "what went wrong",
    )


def test_every_error_class_is_in_the_table() -> None:
    declared = {
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.TandemError)
    }
    assert declared == {row[0] for row in TABLE}


def test_server_faults_are_the_5xx_errors() -> None:
    """What makes a span ERROR agrees with the codes: every 5xx error is a server
    fault, no 4xx one is, and a caller that left is not."""
    for cls, status, code in TABLE:
        assert errors.is_server_fault(status) == (code >= 500), cls
    assert not errors.is_server_fault(grpc.StatusCode.CANCELLED)
    assert not errors.is_server_fault(grpc.StatusCode.OK)
