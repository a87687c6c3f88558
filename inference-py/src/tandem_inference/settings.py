"""The service's settings: one frozen object, each field a flag with a `TANDEM_*` twin.

A setting comes from its command-line flag if given, else from its environment
variable, else from the named default below. The flags are generated from the
fields, so the list here is the list in the README and in `--help`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Self

DEFAULT_MODEL_REPOSITORY = Path("models")
# Every interface, as a container needs; the port is DESIGN.md's for the internal hop.
DEFAULT_GRPC_ADDR = "0.0.0.0:50051"
DEFAULT_LOG_LEVEL = "info"
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_SHUTDOWN_GRACE_S = 5.0
# gRPC's own default is 4 MiB; the gateway accepts bodies up to 8 MiB, and a binary
# body that size must still fit into one call after the gateway re-encodes it.
DEFAULT_MAX_MESSAGE_BYTES = 16 << 20
FRONT_DOORS = ("grpc", "nats")
DEFAULT_SERVE = "grpc"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
# proto/README.md, "The NATS mapping": both sides default to these.
DEFAULT_NATS_SUBJECT_PREFIX = "oip.v2"
DEFAULT_NATS_QUEUE_GROUP = "tandem-inference"
# DESIGN.md's port for the service's /metrics; empty turns the endpoint off.
DEFAULT_METRICS_ADDR = "0.0.0.0:9001"


def _positive_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError(f"{text} is negative")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"{text} is not positive")
    return value


def _log_level(text: str) -> str:
    level = text.lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


def _front_doors(text: str) -> str:
    doors = [d.strip().lower() for d in text.split(",") if d.strip()]
    unknown = [d for d in doors if d not in FRONT_DOORS]
    if not doors or unknown:
        raise ValueError(f"name one or more of {', '.join(FRONT_DOORS)}, separated by commas")
    return ",".join(d for d in FRONT_DOORS if d in doors)


def is_subject_token(text: str) -> bool:
    """One token of a NATS subject that can be published to (proto/README.md): not
    empty, without the separator, the wildcards, whitespace or control characters."""
    return bool(text) and not any(c <= " " or c in ".*>\x7f" for c in text)


def _subject_prefix(text: str) -> str:
    if not all(is_subject_token(t) for t in text.split(".")):
        raise ValueError("not a NATS subject: dot-separated tokens without spaces, * or >")
    return text


def _token(text: str) -> str:
    if not text or not all(c.isalnum() or c in "-_" for c in text):
        raise ValueError("use letters, digits, - and _ only")
    return text


def _addr_or_empty(text: str) -> str:
    if text:
        _, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise ValueError("not host:port (empty turns it off)")
    return text


def _setting(
    flag: str, help_text: str, parse: Callable[[str], Any] = str, aliases: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {"flag": flag, "help": help_text, "parse": parse, "aliases": aliases}


class SettingsError(ValueError):
    """A flag or environment variable has a value that cannot be used."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `serve` and `build-models` can be told."""

    model_repository: Path = field(
        default=DEFAULT_MODEL_REPOSITORY,
        metadata=_setting(
            "--model-repository",
            "folder holding one sub-folder per model",
            Path,
            aliases=("--repository",),
        ),
    )
    grpc_addr: str = field(
        default=DEFAULT_GRPC_ADDR,
        metadata=_setting("--grpc-addr", "host:port the OIP gRPC service listens on"),
    )
    log_level: str = field(
        default=DEFAULT_LOG_LEVEL,
        metadata=_setting("--log-level", f"one of {', '.join(LOG_LEVELS)}", _log_level),
    )
    shutdown_grace_s: float = field(
        default=DEFAULT_SHUTDOWN_GRACE_S,
        metadata=_setting(
            "--shutdown-grace-s",
            "seconds in-flight calls get to finish after SIGTERM",
            _positive_float,
        ),
    )
    max_message_bytes: int = field(
        default=DEFAULT_MAX_MESSAGE_BYTES,
        metadata=_setting(
            "--max-message-bytes", "largest gRPC message received or sent", _positive_int
        ),
    )

    serve: str = field(
        default=DEFAULT_SERVE,
        metadata=_setting("--serve", "front doors: grpc, nats, or grpc,nats", _front_doors),
    )
    nats_url: str = field(
        default=DEFAULT_NATS_URL,
        metadata=_setting("--nats-url", "NATS server(s) to serve on, comma-separated"),
    )
    nats_subject_prefix: str = field(
        default=DEFAULT_NATS_SUBJECT_PREFIX,
        metadata=_setting(
            "--nats-subject-prefix", "prefix of the OIP subjects over NATS", _subject_prefix
        ),
    )
    nats_queue_group: str = field(
        default=DEFAULT_NATS_QUEUE_GROUP,
        metadata=_setting(
            "--nats-queue-group", "NATS queue group the workers share the requests in", _token
        ),
    )

    metrics_addr: str = field(
        default=DEFAULT_METRICS_ADDR,
        metadata=_setting(
            "--metrics-addr",
            "host:port of the Prometheus /metrics endpoint (empty: none); "
            "each worker on one machine needs its own",
            _addr_or_empty,
        ),
    )

    @property
    def front_doors(self) -> tuple[str, ...]:
        return tuple(self.serve.split(","))

    @staticmethod
    def env_name(name: str) -> str:
        return "TANDEM_" + name.upper()

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, only: tuple[str, ...] = ()) -> None:
        """Add one flag per setting (or per setting in `only`); defaults stay None here
        so that `from_args` can tell a flag that was given from one that was not."""
        for f in fields(cls):
            if only and f.name not in only:
                continue
            meta = f.metadata
            parser.add_argument(
                meta["flag"],
                *meta["aliases"],
                dest=f.name,
                default=None,
                help=f"{meta['help']} (env {cls.env_name(f.name)}; default {f.default})",
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Self:
        """Flag, else environment variable, else default; raises SettingsError naming the
        flag or variable whose value is unusable."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            env = cls.env_name(f.name)
            flag_value = getattr(args, f.name, None)
            source, text = (
                (f.metadata["flag"], flag_value)
                if flag_value is not None
                else (env, environ.get(env))
            )
            if text is None:
                continue
            try:
                values[f.name] = f.metadata["parse"](text)
            except ValueError as err:
                raise SettingsError(f"{source}={text!r}: {err}") from None
        return cls(**values)
