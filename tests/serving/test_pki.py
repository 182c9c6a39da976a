"""The plant CA: certificates chain to it, carry the right names and usages, keys are owner-only, and a
real TLS handshake with them works (with and without client certificates)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from lineqa.serving.pki import PkiError, PlantPki


def test_init_makes_a_ca_and_a_server_certificate_for_the_hosts(tmp_path: Path) -> None:
    pki = PlantPki(tmp_path / "home" / "pki")
    pki.init(["gateway.plant.local", "10.0.0.5"])
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["gateway.plant.local"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for key in (pki.ca_key, pki.server_key):
        assert key.stat().st_mode & 0o777 == 0o600
    assert pki.ca_key == tmp_path / "home-ca" / "ca.key" and not pki.stray_ca_key.exists()  # not in the home


def test_init_never_replaces_a_ca(tmp_path: Path) -> None:
    pki = PlantPki(tmp_path / "pki")
    pki.init(["localhost"])
    before = pki.ca_cert.read_bytes()
    with pytest.raises(PkiError, match="already has a CA"):
        pki.init(["localhost"])
    assert pki.ca_cert.read_bytes() == before
    with pytest.raises(PkiError, match="pki init"):
        PlantPki(tmp_path / "empty").client("cam-1")


def test_a_tls_handshake_with_the_plant_certificates(tmp_path: Path) -> None:
    """Python's ssl (OpenSSL) as an independent TLS peer: it verifies our chain, name and client cert."""
    pki = PlantPki(tmp_path / "pki")
    pki.init(["localhost", "127.0.0.1"])
    client_cert, client_key = pki.client("cam-1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca_cert))
    server_ctx.load_cert_chain(pki.server_cert, pki.server_key)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            subject = dict(item[0] for item in tls.getpeercert()["subject"])  # type: ignore[index]
            seen.append(str(subject["commonName"]))
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    client_ctx.load_cert_chain(client_cert, client_key)
    raw = socket.create_connection(("127.0.0.1", port))
    with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.recv(2) == b"ok"
    thread.join()
    listener.close()
    assert seen == ["cam-1"]


def test_serve_without_certificates_says_how_to_make_them(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "lineqa.cli", "serve", "--home", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "lineqa admin pki init" in done.stderr and "Traceback" not in done.stderr
