from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tandem_inference.settings import DEFAULT_GRPC_ADDR, Settings, SettingsError, redacted


def settings(argv: list[str], environ: dict[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    return Settings.from_args(parser.parse_args(argv), environ or {})


def test_defaults() -> None:
    s = settings([])
    assert s == Settings()
    assert (s.model_repository, s.grpc_addr, s.log_level) == (
        Path("models"),
        "127.0.0.1:50051",
        "info",
    )
    # Loopback by default: exposing the service is a decision (CONTRACT, issue 8).
    assert s.metrics_addr == "127.0.0.1:9001"
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
        model_repository=Path("/m"),
        grpc_addr="h:1",
        log_level="error",
        shutdown_grace_s=0.5,
        max_message_bytes=1024,
        serve="nats",
        nats_url="nats://n:1",
        nats_subject_prefix="a.b",
        nats_queue_group="q",
        metrics_addr="127.0.0.1:9",
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
    assert Settings().metrics_addr == "127.0.0.1:9001"
    assert settings([], {"TANDEM_METRICS_ADDR": ""}).metrics_addr == ""
    assert settings(["--metrics-addr", "[::1]:0"]).metrics_addr == "[::1]:0"


def test_tls_and_credential_files(tmp_path: Path) -> None:
    files = {name: tmp_path / name for name in ("crt", "key", "ca", "creds", "seed")}
    for path in files.values():
        path.write_text("x")
    s = settings(
        [
            *("--grpc-tls-cert", str(files["crt"]), "--grpc-tls-key", str(files["key"])),
            *("--grpc-tls-client-ca", str(files["ca"])),
            *("--nats-tls-ca", str(files["ca"]), "--nats-tls-cert", str(files["crt"])),
            *("--nats-tls-key", str(files["key"]), "--nats-creds", str(files["creds"])),
            *("--nats-nkey", str(files["seed"]), "--nats-user", "worker"),
        ],
        {"TANDEM_NATS_PASSWORD": "hunter2"},
    )
    assert (s.grpc_tls_cert, s.grpc_tls_key, s.grpc_tls_client_ca) == (
        files["crt"],
        files["key"],
        files["ca"],
    )
    assert (s.nats_tls_ca, s.nats_tls_cert, s.nats_tls_key) == (
        files["ca"],
        files["crt"],
        files["key"],
    )
    assert (s.nats_creds, s.nats_nkey) == (files["creds"], files["seed"])
    assert (s.nats_user, s.nats_password) == ("worker", "hunter2")
    assert Settings().grpc_tls_cert is None
    with pytest.raises(SettingsError, match="--grpc-tls-cert='/nowhere': no such file"):
        settings(["--grpc-tls-cert", "/nowhere"])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"grpc_tls_cert": Path("c")}, "--grpc-tls-cert needs --grpc-tls-key"),
        ({"grpc_tls_key": Path("k")}, "--grpc-tls-key needs --grpc-tls-cert"),
        ({"grpc_tls_client_ca": Path("a")}, "--grpc-tls-client-ca needs --grpc-tls-cert"),
        ({"nats_tls_cert": Path("c")}, "--nats-tls-cert needs --nats-tls-key"),
        ({"nats_password": "p"}, "--nats-password needs --nats-user"),
    ],
)
def test_half_a_tls_or_login_setting_is_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("nats://worker:hunter2@127.0.0.1:4222", "nats://worker:xxxxx@127.0.0.1:4222"),
        ("nats://s3cret@h:1,tls://u:p%40ss@h:2", "nats://xxxxx@h:1,tls://u:xxxxx@h:2"),
        ('{"url": "nats://u:pw@h:1"}', '{"url": "nats://u:xxxxx@h:1"}'),
        ("nats://127.0.0.1:4222 and a@b.c", "nats://127.0.0.1:4222 and a@b.c"),
    ],
)
def test_redacted(text: str, shown: str) -> None:
    assert redacted(text) == shown


def test_secrets_show_nowhere() -> None:
    s = Settings(nats_url="nats://w:in-url-secret@h:1", nats_user="w", nats_password="hunter2")
    text = repr(s)
    assert "hunter2" not in text
    assert "in-url-secret" not in text
    assert "nats_password='xxxxx'" in text
    assert "nats_url='nats://w:xxxxx@h:1'" in text
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    help_text = " ".join(parser.format_help().split())
    assert "TANDEM_NATS_PASSWORD)" in help_text  # no default shown after it
    with pytest.raises(SettingsError) as caught:
        settings(["--nats-url", "nats://w:in-url-secret@h:1", "--nats-password", "hunter2"])
    assert "hunter2" not in str(caught.value)
