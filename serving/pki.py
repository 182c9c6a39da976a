"""A plant's own certificate authority: TLS for the gateway without a public CA.

``lineqa admin pki init`` makes a CA and a server certificate for the names the gateway is reached by;
cameras trust the CA's certificate. For mutual TLS, ``lineqa admin pki client`` issues client certificates
from the same CA. Keys are ECDSA P-256, written readable by the owner only.

The gateway needs its own certificate and key and the CA's certificate (``<home>/pki``), never the CA's
private key: that lives in a folder of its own (``<home>-ca`` beside the home by default, or ``--ca-dir``, e.g.
on an admin machine), so a container given the home as its volume cannot sign anything.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lineqa.home import private_folder
from lineqa.serving.errors import ServingError

CA_DAYS = 3650
LEAF_DAYS = 825  # the longest leaf lifetime browsers and most TLS stacks still accept


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    key_cert_sign=True,
    crl_sign=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    encipher_only=False,
    decipher_only=False,
)


class PkiError(ServingError):
    """The plant CA is missing, or a certificate would overwrite an existing one."""


@dataclass(frozen=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    encoding, pkcs8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    return key.private_bytes(encoding, pkcs8, serialization.NoEncryption())


def _builder(subject: str, issuer: x509.Name, public: ec.EllipticCurvePublicKey, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock skew between hosts
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def create_ca(name: str) -> KeyPair:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(name, subject, key.public_key(), CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _pem(key))


def issue(ca: KeyPair, common_name: str, hosts: list[str] | None = None, *, client: bool = False) -> KeyPair:
    """A leaf certificate signed by ``ca``: a server certificate valid for ``hosts`` (DNS names or IP
    addresses), or with ``client`` a client certificate for mutual TLS."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise PkiError("the CA key is not an EC key made by 'lineqa admin pki init'")
    key = _key()
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        _builder(common_name, ca_cert.subject, key.public_key(), LEAF_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    names: list[x509.GeneralName] = []
    for host in hosts or ([] if client else ["localhost"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _pem(key))


def default_ca_dir(root: Path) -> Path:
    """Where the CA key of the certificates in ``root`` (``<home>/pki``) lives: ``<home>-ca``, beside the home."""
    home = root.parent
    return home.with_name(f"{home.name}-ca")


class PlantPki:
    """The certificates of one plant in a folder (``<home>/pki`` by default), and its CA in another."""

    def __init__(self, root: Path, ca_dir: Path | None = None) -> None:
        self.root = root
        self.ca_dir = ca_dir or default_ca_dir(root)

    @property
    def ca_key(self) -> Path:
        return self.ca_dir / "ca.key"

    @property
    def stray_ca_key(self) -> Path:
        """Where ``pki init`` once put the CA key, inside the home: it must not stay there."""
        return self.root / "ca.key"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    def ca(self) -> KeyPair:
        if not self.ca_cert.is_file():
            raise PkiError(f"no CA in {self.root}: run 'lineqa admin pki init' first")
        key = next((k for k in (self.ca_key, self.stray_ca_key) if k.is_file()), None)
        if key is None:
            raise PkiError(f"the CA key is not in {self.ca_dir}: run this where the CA is kept (--ca-dir)")
        return KeyPair(self.ca_cert.read_bytes(), key.read_bytes())

    def init(self, hosts: list[str], name: str = "lineqa plant CA") -> None:
        """Create the CA (key in :attr:`ca_dir`) and a server certificate for ``hosts``; never replaces a CA."""
        if self.ca_cert.exists() or self.ca_key.exists():
            raise PkiError(f"{self.root} already has a CA; cameras trust it, so it is not replaced")
        try:
            private_folder(self.root)
            private_folder(self.ca_dir)
        except OSError as exc:
            raise PkiError(
                f"cannot create {exc.filename}: {exc.strerror}; choose the CA's folder with --ca-dir"
            ) from exc
        ca = create_ca(name)
        _write(self.ca_key, ca.key_pem, secret=True)
        _write(self.ca_dir / "ca.pem", ca.cert_pem)
        _write(self.ca_cert, ca.cert_pem)
        self.server(hosts)

    def move_ca_key(self) -> Path | None:
        """Move a CA key found in the home to :attr:`ca_dir` (homes made before it moved out); its new path."""
        if not self.stray_ca_key.is_file():
            return None
        if self.ca_key.exists():
            raise PkiError(f"both {self.stray_ca_key} and {self.ca_key} exist: keep the one that signed ca.pem")
        _write(private_folder(self.ca_dir) / "ca.key", self.stray_ca_key.read_bytes(), secret=True)
        _write(self.ca_dir / "ca.pem", self.ca_cert.read_bytes())
        self.stray_ca_key.unlink()
        return self.ca_key

    def server(self, hosts: list[str]) -> None:
        """(Re)issue the gateway's certificate, e.g. when it is reached by a new name."""
        pair = issue(self.ca(), hosts[0] if hosts else "localhost", hosts)
        _write(self.server_key, pair.key_pem, secret=True)
        _write(self.server_cert, pair.cert_pem)

    def client(self, name: str) -> tuple[Path, Path]:
        """Issue a client certificate for mutual TLS; returns (certificate, key) paths."""
        pair = issue(self.ca(), name, client=True)
        folder = private_folder(self.root / "clients")
        cert, key = folder / f"{name}.pem", folder / f"{name}.key"
        _write(key, pair.key_pem, secret=True)
        _write(cert, pair.cert_pem)
        return cert, key


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    """Write atomically; a key is created owner-only before any byte of it is written."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)
