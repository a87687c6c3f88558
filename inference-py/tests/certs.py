"""Real X.509 certificates for the TLS tests, made with `cryptography`: a CA, a
server certificate for 127.0.0.1/localhost and a client certificate it signed,
and a second CA that signed nothing of ours."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certs:
    ca: Path
    server: Pem
    client: Pem
    other_ca: Path
    # Signed by other_ca: a client the server's CA does not know.
    stranger: Pem


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(
    subject: str, key: Key, issuer: tuple[x509.Name, Key] | None, *, ca: bool, server: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(folder: Path, name: str, cert: x509.Certificate, key: Key) -> Pem:
    pem = Pem(folder / f"{name}.crt", folder / f"{name}.key")
    pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pem


def make_certs(folder: Path) -> Certs:
    written: dict[str, Pem] = {}
    for ca_name in ("ca", "other-ca"):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _cert(ca_name, ca_key, None, ca=True, server=False)
        written[ca_name] = _write(folder, ca_name, ca_cert, ca_key)
        issuer = (ca_cert.subject, ca_key)
        leaves = [("server", True), ("client", False)] if ca_name == "ca" else [("stranger", False)]
        for leaf, server in leaves:
            key = ec.generate_private_key(ec.SECP256R1())
            written[leaf] = _write(
                folder, leaf, _cert(leaf, key, issuer, ca=False, server=server), key
            )
    return Certs(
        ca=written["ca"].cert,
        server=written["server"],
        client=written["client"],
        other_ca=written["other-ca"].cert,
        stranger=written["stranger"],
    )
