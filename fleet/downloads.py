"""Resumable downloads of a bundle's files on a plant.

A file is downloaded to ``<downloads>/<sha256>.part``, appended to as chunks come, and asked for again from
the size it has when a transfer was cut (a reset, a stall noticed by keepalive, the hub restarting): nothing
already received crosses the network twice. When the size is reached the whole file's SHA-256 is checked
against the signed manifest; a file that does not match is deleted and refused, never installed. Named by
hash, a part survives bundles: a newer bundle that names the same file goes on with it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import grpc

from lineqa.fleet.errors import BundleRefusedError, HubUnreachableError
from lineqa.fleet.files import file_sha256
from lineqa.fleet.manifest import BundleFile
from lineqa.protos.lineqa.fleet.v1 import fleet_pb2 as pb
from lineqa.protos.lineqa.fleet.v1 import fleet_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileWanted:
    bundle_number: int
    model: str
    version: int
    file: BundleFile

    def __str__(self) -> str:
        return f"{self.model} v{self.version} {self.file.path}"


@dataclass(frozen=True)
class Fetched:
    path: Path
    received_bytes: int  # what crossed the network in this call
    resumed_at: int  # the byte it started from (0: from the beginning)


def fetch(stub: pb_grpc.HubServiceStub, folder: Path, wanted: FileWanted, timeout_s: float) -> Fetched:
    """Download ``wanted`` into ``folder`` (resuming a part), check its hash; HubUnreachableError when the
    transfer breaks (what arrived is kept), BundleRefusedError when the file is not what the manifest says."""
    expected = wanted.file
    done = folder / expected.sha256
    if done.is_file() and done.stat().st_size == expected.size and file_sha256(done) == expected.sha256:
        return Fetched(done, 0, expected.size)
    part = folder / f"{expected.sha256}.part"
    offset = part.stat().st_size if part.is_file() else 0
    if offset > expected.size:
        part.unlink()
        offset = 0
    start = offset
    if start:
        logger.warning("resuming %s at byte %d of %d", wanted, start, expected.size)
    request = pb.ReadFileRequest(bundle_number=wanted.bundle_number, model=wanted.model, version=wanted.version,
                                 path=expected.path, offset=offset)  # fmt: skip
    try:
        with part.open("ab") as out:
            try:
                for chunk in stub.ReadFile(request, timeout=timeout_s):
                    if chunk.offset != offset or offset + len(chunk.data) > expected.size:
                        raise BundleRefusedError(f"{wanted}: the hub sent bytes {chunk.offset}.. where {offset} was "
                                                 f"due (size {expected.size})")  # fmt: skip
                    out.write(chunk.data)
                    offset += len(chunk.data)
            finally:
                out.flush()
                os.fsync(out.fileno())
    except grpc.RpcError as exc:
        if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
            raise HubUnreachableError(f"{wanted}: cut at byte {offset} of {expected.size} ({exc.code().name}); "
                                      "it resumes there") from exc  # fmt: skip
        raise BundleRefusedError(f"{wanted}: the hub would not send it ({exc.code().name}: {exc.details()})") from exc
    if offset != expected.size:
        raise HubUnreachableError(f"{wanted}: the transfer ended at byte {offset} of {expected.size}; it resumes there")
    if file_sha256(part) != expected.sha256:
        part.unlink()
        raise BundleRefusedError(f"{wanted}: its SHA-256 is not the one the signed manifest names (changed on the "
                                 "hub or on the way): deleted, not installed")  # fmt: skip
    os.replace(part, done)
    return Fetched(done, offset - start, start)
