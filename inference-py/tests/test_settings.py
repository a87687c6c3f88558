from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tandem_inference.settings import DEFAULT_GRPC_ADDR, Settings, SettingsError


def settings(argv: list[str], environ: dict[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    return Settings.from_args(parser.parse_args(argv), environ or {})


def test_defaults() -> None:
    s = settings([])
    assert s == Settings()
    assert (s.model_repository, s.grpc_addr, s.log_level) == (
        Path("models"),
        "0.0.0.0:50051",
        "info",
    )
    assert DEFAULT_GRPC_ADDR.endswith(":50051")


def test_environment_over_default_and_flag_over_environment() -> None:
    env = {"TANDEM_GRPC_ADDR": "127.0.0.1:1", "TANDEM_LOG_LEVEL": "DEBUG"}
    assert settings([], env).grpc_addr == "127.0.0.1:1"
    assert settings([], env).log_level == "debug"
    assert settings(["--grpc-addr", "127.0.0.1:2"], env).grpc_addr == "127.0.0.1:2"


def test_every_field_has_a_flag_and_an_env_twin() -> None:
    s = settings(
        [
            "--repository",
            "/m",
            "--grpc-addr",
            "h:1",
            "--log-level",
            "error",
            "--shutdown-grace-s",
            "0.5",
            "--max-message-bytes",
            "1024",
            "--serve",
            "nats",
            "--nats-url",
            "nats://n:1",
            "--nats-subject-prefix",
            "a.b",
            "--nats-queue-group",
            "q",
            "--metrics-addr",
            "127.0.0.1:9",
        ]
    )
    assert s == Settings(
        Path("/m"), "h:1", "error", 0.5, 1024, "nats", "nats://n:1", "a.b", "q", "127.0.0.1:9"
    )
    env = {
        Settings.env_name(f): v for f, v in [("model_repository", "/e"), ("max_message_bytes", "7")]
    }
    assert env == {"TANDEM_MODEL_REPOSITORY": "/e", "TANDEM_MAX_MESSAGE_BYTES": "7"}
    assert settings([], env).model_repository == Path("/e")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--log-level", "loud"], {}, "--log-level='loud': 'loud' is not one of debug"),
        ([], {"TANDEM_SHUTDOWN_GRACE_S": "-1"}, "TANDEM_SHUTDOWN_GRACE_S='-1': -1 is negative"),
        ([], {"TANDEM_MAX_MESSAGE_BYTES": "lots"}, "TANDEM_MAX_MESSAGE_BYTES='lots': invalid"),
        (["--serve", "http"], {}, "--serve='http': name one or more of grpc, nats"),
        (["--serve", ","], {}, "--serve=',': name one or more of grpc, nats"),
        (["--nats-subject-prefix", "oip.*"], {}, "--nats-subject-prefix='oip.*': not a NATS"),
        (["--nats-subject-prefix", "oip..v2"], {}, "--nats-subject-prefix='oip..v2': not a"),
        (["--nats-queue-group", "a b"], {}, "--nats-queue-group='a b': use letters"),
        (["--metrics-addr", "9001"], {}, "--metrics-addr='9001': not host:port"),
    ],
)
def test_unusable_values_name_their_source(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        settings(argv, env)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("serve", "doors"),
    [
        ("grpc", ("grpc",)),
        ("nats", ("nats",)),
        ("nats, grpc", ("grpc", "nats")),
        ("NATS", ("nats",)),
    ],
)
def test_front_doors(serve: str, doors: tuple[str, ...]) -> None:
    assert settings(["--serve", serve]).front_doors == doors
    assert Settings().front_doors == ("grpc",)


def test_frozen() -> None:
    with pytest.raises(AttributeError):
        Settings().grpc_addr = "x"  # type: ignore[misc]


def test_an_empty_metrics_addr_turns_metrics_off() -> None:
    assert Settings().metrics_addr == "0.0.0.0:9001"
    assert settings([], {"TANDEM_METRICS_ADDR": ""}).metrics_addr == ""
    assert settings(["--metrics-addr", "[::1]:0"]).metrics_addr == "[::1]:0"
