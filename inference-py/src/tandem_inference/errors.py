"""The one exception hierarchy, and the only place that maps it to status codes.

Every failure a caller can act on is a `TandemError` subclass. Each class carries
its gRPC status code and its numeric code, which is the HTTP status the gateway
answers with and the `Nats-Service-Error-Code` the NATS worker sends, so every
front door reports the same failure the same way (inference-py/README.md, Errors).
Which status codes are the server's fault (an ERROR span) is decided here too.
"""

from __future__ import annotations

from typing import ClassVar

import grpc

# The server's faults among the gRPC codes (OpenTelemetry's RPC conventions for a
# server span): a caller's bad request, or a caller that left, is not one.
SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def is_server_fault(status: grpc.StatusCode) -> bool:
    return status in SERVER_FAULTS


class TandemError(Exception):
    """A failure with a message a person can act on."""

    grpc_status: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    code: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(TandemError):
    """The request is malformed: shape, datatype, size or names do not fit the model."""

    grpc_status = grpc.StatusCode.INVALID_ARGUMENT
    code = 400


class NotFound(TandemError):
    """No such model, or no such version of it."""

    grpc_status = grpc.StatusCode.NOT_FOUND
    code = 404


class TooLarge(TandemError):
    """The request is larger than the service accepts."""

    grpc_status = grpc.StatusCode.RESOURCE_EXHAUSTED
    code = 413


class ResourceExhausted(TandemError):
    """Overloaded: the caller should back off and retry."""

    grpc_status = grpc.StatusCode.RESOURCE_EXHAUSTED
    code = 429


class Unavailable(TandemError):
    """Not able to serve now (still loading, shutting down); retrying elsewhere may work."""

    grpc_status = grpc.StatusCode.UNAVAILABLE
    code = 503


class DeadlineExceeded(TandemError):
    """The caller's deadline passed before the answer was ready."""

    grpc_status = grpc.StatusCode.DEADLINE_EXCEEDED
    code = 504


class Internal(TandemError):
    """A bug or a broken deployment, not something the caller did."""


class ModelConfigError(Internal):
    """A model folder, its config.toml or its artifact is unusable; raised at start-up."""
