"""Bundle signatures: the hub signs every bundle it publishes, a plant checks the signature before it reads
anything else of the bundle.

Ed25519 over the exact manifest bytes; the manifest names the SHA-256 of every file, so one signature covers
the files too. The hub's key is ``<hub home>/hub/bundle-signing.key`` (owner-only): the hub service signs a new
bundle when a plant first asks for it, so the service holds this key, unlike the CA's key, which only issuing
certificates needs and which stays out of the home. A plant pins the public key when it joins (from its
enrolment file) and accepts nothing signed by any other key.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lineqa.fleet.errors import BundleRefusedError, FleetError
from lineqa.home import private_folder


def signing_key(path: Path) -> Ed25519PrivateKey:
    """The key at ``path``, made there (owner-only, never replaced) the first time it is asked for."""
    if not path.exists():
        private_folder(path.parent)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
        staging = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(staging, path)  # whole, and never over a key another command made meanwhile
        except FileExistsError:
            pass
        finally:
            staging.unlink()
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise FleetError(f"{path} is not an Ed25519 key made by lineqa")
    return loaded


def public_pem(key: Ed25519PrivateKey) -> bytes:
    """The public half, as the plants pin it."""
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return key.sign(data)


def verify(trusted_public_pem: bytes, data: bytes, signature: bytes) -> None:
    """Accept ``data`` only with a valid signature by the pinned key; BundleRefusedError otherwise."""
    if not signature:
        raise BundleRefusedError("the bundle is not signed")
    key = serialization.load_pem_public_key(trusted_public_pem)
    if not isinstance(key, Ed25519PublicKey):
        raise BundleRefusedError("the pinned hub key is not an Ed25519 public key")
    try:
        key.verify(signature, data)
    except InvalidSignature:
        raise BundleRefusedError("the bundle's signature is not the hub's (changed on the way, or signed by "
                                 "another key)") from None  # fmt: skip
