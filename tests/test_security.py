"""Only the right callers get in, nothing secret leaks, and hostile input costs a 4xx.

Every test starts the real gateway and Python service, with real certificates
made for the run (certs.py) and a real nats-server with an auth configuration.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import nats
import numpy as np
import psutil
import pytest
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.pb import grpc_service_pb2_grpc as pb_grpc
from tandem_stack.stack import GATEWAY, Stack

from conftest import infer_body, probabilities

from certs import Authority, Pair

Digits = tuple[np.ndarray, np.ndarray]
INFER = "/v2/models/digits/infer"
ZEROS = np.zeros((1, 64), dtype=np.float32)


def full_logs(stack: Stack) -> str:
    """Every line every process wrote, not only the tails."""
    return "\n".join(p.log_path.read_text(errors="replace") for p in stack.processes)


def server_live(addr: str, creds: grpc.ChannelCredentials | None = None) -> bool:
    """ServerLive over a plain channel, or over TLS with `creds`; raises grpc.RpcError."""
    channel = grpc.insecure_channel(addr) if creds is None else grpc.secure_channel(addr, creds)
    with channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        return bool(stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live)


# --- API keys at the edge ---------------------------------------------------------------


def test_api_keys(tmp_path: Path, digits: Digits, reference: np.ndarray) -> None:
    """Without a key or with a wrong one: 401; a key scoped to another model: 403;
    the right key: served. Health stays open, and no key reaches a log."""
    key, scoped = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    keys = tmp_path / "api-keys"
    keys.write_text(f"# the team's key\n{key}\n\n{scoped} digits-torch\n")
    with (
        Stack(gateway_args=["--api-keys-file", str(keys)]) as s,
        httpx.Client(base_url=s.rest_url, timeout=30) as c,
    ):
        body = infer_body(digits[0][0])
        r = c.post(INFER, json=body)
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"].lower().startswith("bearer")
        assert r.json()["error"]

        r = c.post(INFER, json=body, headers={"Authorization": "Bearer not-a-key"})
        assert r.status_code == 401, r.text
        r = c.post(INFER, json=body, headers={"Authorization": f"Basic {key}"})
        assert r.status_code == 401, r.text
        r = c.get("/v2/models/digits", headers={"Authorization": "Bearer not-a-key"})
        assert r.status_code == 401, r.text

        ok = c.post(INFER, json=body, headers={"Authorization": f"Bearer {key}"})
        np.testing.assert_allclose(probabilities(ok), reference[:1], atol=1e-5)

        r = c.post(INFER, json=body, headers={"Authorization": f"Bearer {scoped}"})
        assert r.status_code == 403, r.text
        r = c.post(
            "/v2/models/digits-torch/infer",
            json=body,
            headers={"Authorization": f"Bearer {scoped}"},
        )
        assert r.status_code == 200, r.text

        for path in ("/v2/health/live", "/v2/health/ready"):
            assert c.get(path).status_code == 200

        with grpc.insecure_channel(s.edge_grpc_addr) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
            request = pb.ModelMetadataRequest(name="digits")
            with pytest.raises(grpc.RpcError) as denied:
                stub.ModelMetadata(request, timeout=10)
            assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as wrong:
                stub.ModelMetadata(request, timeout=10, metadata=[("authorization", "Bearer x")])
            assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
            meta = stub.ModelMetadata(
                request, timeout=10, metadata=[("authorization", f"Bearer {key}")]
            )
            assert meta.name == "digits"

    logs = full_logs(s)
    assert key not in logs
    assert scoped not in logs


# --- TLS at the edge and mTLS on the hop ---------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("pki")
    ca = Authority.create(folder)
    other = Authority.create(folder, "stranger")
    return {
        "ca": ca,
        "server": ca.issue("server", server=True),
        "client": ca.issue("client", server=False),
        "stranger": other.issue("client", server=False),
    }


def client_context(ca: Authority, pair: Pair | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.ca_file))
    if pair is not None:
        context.load_cert_chain(str(pair.cert), str(pair.key))
    return context


def test_edge_tls_and_client_certificates(pki: dict[str, object], reference: np.ndarray) -> None:
    """REST and edge gRPC over TLS with client certificates required: the right client
    certificate is served; none, or one from another CA, fails the handshake."""
    ca, server, client, stranger = (pki[k] for k in ("ca", "server", "client", "stranger"))
    assert isinstance(ca, Authority)
    assert isinstance(server, Pair)
    assert isinstance(client, Pair)
    assert isinstance(stranger, Pair)
    args = ["--tls-cert", str(server.cert), "--tls-key", str(server.key)]
    args += ["--tls-client-ca", str(ca.ca_file)]
    with Stack(gateway_args=args, ssl_context=client_context(ca, client)) as s:
        pixels = np.asarray(ZEROS)
        with httpx.Client(base_url=s.rest_url, verify=client_context(ca, client)) as c:
            assert c.post(INFER, json=infer_body(pixels)).status_code == 200
        for who in (None, stranger):
            with (
                httpx.Client(base_url=s.rest_url, verify=client_context(ca, who)) as c,
                pytest.raises(httpx.HTTPError),
            ):
                c.post(INFER, json=infer_body(pixels))
        plain = f"http://127.0.0.1:{s.ports.http}"
        with httpx.Client(base_url=plain) as c:
            assert c.get("/v2/health/live").status_code == 400  # HTTP to a TLS port

        root = ca.ca_file.read_bytes()
        good = grpc.ssl_channel_credentials(
            root_certificates=root,
            private_key=client.key.read_bytes(),
            certificate_chain=client.cert.read_bytes(),
        )
        assert server_live(s.edge_grpc_addr, good)
        bare = grpc.ssl_channel_credentials(root_certificates=root)
        with pytest.raises(grpc.RpcError) as refused:
            server_live(s.edge_grpc_addr, bare)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_on_the_grpc_hop(
    pki: dict[str, object], digits: Digits, reference: np.ndarray
) -> None:
    """The gateway and Python authenticate each other; a caller without the right
    client certificate cannot reach Python at all."""
    ca, server, client, stranger = (pki[k] for k in ("ca", "server", "client", "stranger"))
    assert isinstance(ca, Authority)
    assert isinstance(server, Pair)
    assert isinstance(client, Pair)
    assert isinstance(stranger, Pair)
    python_args = ["--grpc-tls-cert", str(server.cert), "--grpc-tls-key", str(server.key)]
    python_args += ["--grpc-tls-client-ca", str(ca.ca_file)]
    gateway_args = ["--inference-tls-ca", str(ca.ca_file)]
    gateway_args += [
        "--inference-tls-cert",
        str(client.cert),
        "--inference-tls-key",
        str(client.key),
    ]
    with (
        Stack(python_args=python_args, gateway_args=gateway_args) as s,
        httpx.Client(base_url=s.rest_url, timeout=30) as c,
    ):
        ok = c.post(INFER, json=infer_body(digits[0][:4]))
        np.testing.assert_allclose(probabilities(ok), reference[:4], atol=1e-5)

        root = ca.ca_file.read_bytes()
        for pair in (None, stranger):
            creds = grpc.ssl_channel_credentials(
                root_certificates=root,
                private_key=None if pair is None else pair.key.read_bytes(),
                certificate_chain=None if pair is None else pair.cert.read_bytes(),
            )
            with pytest.raises(grpc.RpcError) as refused:
                server_live(s.python_grpc_addr, creds)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError):
            server_live(s.python_grpc_addr)


# --- NATS: credentials, permissions, secrets ---------------------------------------------------


def test_rogue_nats_client_is_refused(digits: Digits, reference: np.ndarray) -> None:
    """An anonymous client cannot connect; a client with another role's credentials can
    neither read requests nor answer them; every real request gets the real answer.
    The gateway takes its password in the URL, and no password reaches a log."""
    s = Stack(transport="nats", nats_auth=True, routing=None)
    gateway_url = s.nats_client_url("gateway")
    s.gateway_args = ["--nats-url", gateway_url]
    with s, httpx.Client(base_url=s.rest_url, timeout=30) as c:

        async def rogue() -> list[str]:
            with pytest.raises(nats.errors.Error, match="Authorization Violation"):
                await nats.connect(
                    s.nats_client_url(None), allow_reconnect=False, max_reconnect_attempts=0
                )
            errors: list[str] = []

            async def heard(err: Exception) -> None:
                errors.append(str(err))

            for user in ("gateway", "observer"):
                nc = await nats.connect(s.nats_client_url(user), error_cb=heard)
                await nc.subscribe("oip.v2.models.>")
                await nc.subscribe("oip.v2.models.digits.infer", queue="tandem-inference")
                await nc.flush()
                await asyncio.sleep(0.2)
                await nc.close()
            return errors

        errors = asyncio.run(rogue())
        assert sum("permissions violation" in e for e in errors) == 4, errors

        rows = digits[0][:40]
        for i, row in enumerate(rows):
            r = c.post(INFER, json=infer_body(row))
            np.testing.assert_allclose(probabilities(r), reference[i : i + 1], atol=1e-5)

        admin = f"http://{s.admin_addr}"
        assert httpx.get(f"{admin}/debug/pprof/cmdline", timeout=10).status_code == 404
        assert httpx.get(f"{admin}/metrics", timeout=10).status_code == 200

    logs = full_logs(s)
    for password in s.nats_passwords.values():
        assert password not in logs


def test_secure_defaults_in_help() -> None:
    """Listeners default to loopback, pprof is off, and no secret has a shown default."""
    out = subprocess.run([str(GATEWAY), "--help"], capture_output=True, text=True, check=False)
    lines = (out.stdout + out.stderr).splitlines()

    def usage(flag: str) -> str:
        """A flag's help: its own line and the indented text under it (Go's flag format)."""
        (at,) = [i for i, ln in enumerate(lines) if ln.strip().split(" ")[0] == f"-{flag}"]
        return lines[at + 1]

    for flag in ("http-addr", "grpc-addr", "admin-addr"):
        assert '(default "127.0.0.1:' in usage(flag), usage(flag)
    assert "(default" not in usage("pprof")  # a bool flag shows a default only when true
    for secret in ("api-keys", "nats-password"):
        assert "(default" not in usage(secret), usage(secret)


# --- hostile input ---


@pytest.fixture(scope="module")
def plain() -> Iterator[Stack]:
    """One stack with the shipped settings for the hostile-input tests."""
    with Stack() as s:
        yield s


def test_claimed_content_length_costs_no_memory(plain: Stack, digits: Digits) -> None:
    """60 connections that each claim an 8 MB body and send one byte: the gateway's memory
    stays put (it reads what arrives, not what is claimed) and it keeps serving."""
    s = plain
    with httpx.Client(base_url=s.rest_url, timeout=30) as c:
        for _ in range(20):  # warm up: pools and buffers a normal load needs
            assert c.post(INFER, json=infer_body(digits[0][:8])).status_code == 200
        gateway = s.process("gateway").popen
        assert gateway is not None
        rss = psutil.Process(gateway.pid).memory_info().rss
        head = (
            f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {8 * 1024 * 1024 - 1}\r\n\r\n{{"
        ).encode()
        attackers = []
        try:
            for _ in range(60):
                sock = socket.create_connection(("127.0.0.1", s.ports.http))
                sock.sendall(head)
                attackers.append(sock)
            # Served while they hold their connections open.
            assert c.post(INFER, json=infer_body(digits[0][:1])).status_code == 200
            grown = psutil.Process(gateway.pid).memory_info().rss - rss
        finally:
            for sock in attackers:
                sock.close()
        print(
            f"claimed Content-Length: 60 connections, gateway RSS {rss / 2**20:.0f} MiB, "
            f"grew {grown / 2**20:.1f} MiB"
        )
        # Before the fix, 60 such connections took the gateway past 400 MB.
        assert grown < 48 * 1024 * 1024, f"RSS grew {grown / 2**20:.0f} MiB"


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/%ff%fe/infer",
        "/v2/models/digits/versions/%ff/infer",
        "/v2/models/%c3%28",
        "/v2/models/digits/versions/%ed%a0%80/ready",
    ],
)
def test_invalid_utf8_in_the_url_is_400(plain: Stack, path: str) -> None:
    with httpx.Client(base_url=plain.rest_url, timeout=30) as c:
        r = c.post(path, json=infer_body(ZEROS)) if path.endswith("infer") else c.get(path)
        assert r.status_code == 400, r.text
        assert "UTF-8" in r.json()["error"]
        assert c.post(INFER, json=infer_body(ZEROS)).status_code == 200


def test_oversized_headers_are_refused(plain: Stack) -> None:
    """Headers past --max-header-bytes (64 KiB) are not read: 431, or the connection
    closed under a client still sending (the kernel may reset it before the 431 is
    read). Either way the gateway serves the next caller."""
    with httpx.Client(base_url=plain.rest_url, timeout=30) as c:
        try:
            r = c.get("/v2/health/live", headers={"X-Filler": "a" * (96 * 1024)})
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError):
            pass
        else:
            assert r.status_code == 431, r.text
    with httpx.Client(base_url=plain.rest_url, timeout=30) as c:
        assert c.get("/v2/health/live").status_code == 200
