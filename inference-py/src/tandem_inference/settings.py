"""The service's settings: one frozen object, each field a flag with a `TANDEM_*` twin.

A setting comes from its command-line flag if given, else from its environment
variable, else from the named default below. The flags are generated from the
fields, so the list here is the list in the README and in `--help`.

Secrets (the NATS password, and whatever `user:pass@` a NATS URL holds) never
show: not as `--help` defaults, not in the settings' repr, not in a log line
(`redacted` below, which logs.py applies to every line).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Self

DEFAULT_MODEL_REPOSITORY = Path("models")
# Loopback unless told otherwise: the service has no authentication of its own, so
# exposing it is a decision (containers pass 0.0.0.0:50051 explicitly).
DEFAULT_GRPC_ADDR = "127.0.0.1:50051"
DEFAULT_LOG_LEVEL = "info"
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_SHUTDOWN_GRACE_S = 5.0
# gRPC's own default is 4 MiB; the gateway accepts bodies up to 8 MiB, and a binary
# body that size must still fit into one call after the gateway re-encodes it.
DEFAULT_MAX_MESSAGE_BYTES = 16 << 20
# Triton's --model-control-mode: none serves the repository as found at start;
# explicit also lets RepositoryModelLoad/Unload change it (loading runs model code).
MODEL_CONTROL_MODES = ("none", "explicit")
DEFAULT_MODEL_CONTROL = "none"
FRONT_DOORS = ("grpc", "nats")
DEFAULT_SERVE = "grpc"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
# proto/README.md, "The NATS mapping": both sides default to these.
DEFAULT_NATS_SUBJECT_PREFIX = "oip.v2"
DEFAULT_NATS_QUEUE_GROUP = "tandem-inference"
# The service's /metrics, on loopback like gRPC; empty turns the endpoint off.
DEFAULT_METRICS_ADDR = "127.0.0.1:9001"
# What a secret is shown as, wherever it would appear.
REDACTED = "xxxxx"
# The userinfo of a URL: `scheme://user:password@` or `scheme://token@`.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s\"',]+)@")


def redacted(text: str) -> str:
    """`text` with the password of every URL in it replaced (`user:xxxxx@`), and a
    lone token (`nats://token@host`, which NATS treats as a secret) too."""

    def hide(match: re.Match[str]) -> str:
        user, sep, _ = match["userinfo"].partition(":")
        return f"{match['scheme']}{user}:{REDACTED}@" if sep else f"{match['scheme']}{REDACTED}@"

    return _USERINFO.sub(hide, text)


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


def _model_control(text: str) -> str:
    mode = text.lower()
    if mode not in MODEL_CONTROL_MODES:
        raise ValueError(f"{text!r} is not one of {', '.join(MODEL_CONTROL_MODES)}")
    return mode


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


def _file(text: str) -> Path | None:
    """A file that must exist; empty: none."""
    if not text:
        return None
    path = Path(text)
    if not path.is_file():
        raise ValueError("no such file")
    return path


def _setting(
    flag: str,
    help_text: str,
    parse: Callable[[str], Any] = str,
    aliases: tuple[str, ...] = (),
    *,
    secret: bool = False,
) -> dict[str, Any]:
    return {"flag": flag, "help": help_text, "parse": parse, "aliases": aliases, "secret": secret}


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
    grpc_tls_cert: Path | None = field(
        default=None,
        metadata=_setting("--grpc-tls-cert", "PEM certificate (chain) of the gRPC server", _file),
    )
    grpc_tls_key: Path | None = field(
        default=None,
        metadata=_setting("--grpc-tls-key", "PEM private key of --grpc-tls-cert", _file),
    )
    grpc_tls_client_ca: Path | None = field(
        default=None,
        metadata=_setting(
            "--grpc-tls-client-ca",
            "PEM CA bundle: gRPC clients must present a certificate it signed (mTLS)",
            _file,
        ),
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
    model_control: str = field(
        default=DEFAULT_MODEL_CONTROL,
        metadata=_setting(
            "--model-control",
            "none, or explicit: RepositoryModelLoad/Unload may load and unload models at "
            "run time (loading runs the model's code)",
            _model_control,
        ),
    )

    serve: str = field(
        default=DEFAULT_SERVE,
        metadata=_setting("--serve", "front doors: grpc, nats, or grpc,nats", _front_doors),
    )
    nats_url: str = field(
        default=DEFAULT_NATS_URL,
        metadata=_setting(
            "--nats-url", "NATS server(s) to serve on, comma-separated; may hold user:pass@"
        ),
    )
    nats_user: str = field(
        default="", metadata=_setting("--nats-user", "NATS user name (with --nats-password)")
    )
    nats_password: str = field(
        default="",
        metadata=_setting("--nats-password", "NATS password; prefer the variable", secret=True),
    )
    nats_creds: Path | None = field(
        default=None,
        metadata=_setting("--nats-creds", "NATS credentials file (.creds: JWT and seed)", _file),
    )
    nats_nkey: Path | None = field(
        default=None, metadata=_setting("--nats-nkey", "file holding an NATS nkey seed", _file)
    )
    nats_tls_ca: Path | None = field(
        default=None,
        metadata=_setting("--nats-tls-ca", "PEM CA bundle to verify the NATS server by", _file),
    )
    nats_tls_cert: Path | None = field(
        default=None,
        metadata=_setting("--nats-tls-cert", "PEM client certificate for NATS (mTLS)", _file),
    )
    nats_tls_key: Path | None = field(
        default=None,
        metadata=_setting("--nats-tls-key", "PEM private key of --nats-tls-cert", _file),
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

    def __post_init__(self) -> None:
        # (given, its flag, what it needs, that flag): a half-configured TLS or login
        # fails at start, not at the first handshake.
        needs = [
            (self.grpc_tls_cert, "--grpc-tls-cert", self.grpc_tls_key, "--grpc-tls-key"),
            (self.grpc_tls_key, "--grpc-tls-key", self.grpc_tls_cert, "--grpc-tls-cert"),
            (
                self.grpc_tls_client_ca,
                "--grpc-tls-client-ca",
                self.grpc_tls_cert,
                "--grpc-tls-cert",
            ),
            (self.nats_tls_cert, "--nats-tls-cert", self.nats_tls_key, "--nats-tls-key"),
            (self.nats_tls_key, "--nats-tls-key", self.nats_tls_cert, "--nats-tls-cert"),
            (self.nats_password, "--nats-password", self.nats_user, "--nats-user"),
        ]
        for given, flag, needed, needed_flag in needs:
            if given and not needed:
                raise SettingsError(f"{flag} needs {needed_flag}")

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata["secret"] and value:
                value = REDACTED
            elif isinstance(value, str):
                value = redacted(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

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
            default = "" if meta["secret"] else f"; default {f.default or 'none'}"
            parser.add_argument(
                meta["flag"],
                *meta["aliases"],
                dest=f.name,
                default=None,
                help=f"{meta['help']} (env {cls.env_name(f.name)}{default})",
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
                shown = REDACTED if f.metadata["secret"] else redacted(text)
                raise SettingsError(f"{source}={shown!r}: {err}") from None
        return cls(**values)
