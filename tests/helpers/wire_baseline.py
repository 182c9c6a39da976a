"""The released wire contract (tests/protos/inspection_v1_baseline.textproto) as descriptors and as an old
client's message classes: what a camera built before a field existed sends and understands."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, timestamp_pb2

BASELINE = Path(__file__).resolve().parent.parent / "protos" / "inspection_v1_baseline.textproto"
PACKAGE = "lineqa.inspection.v1"


def baseline() -> descriptor_pb2.FileDescriptorProto:
    """The released contract's file descriptor."""
    return text_format.Parse(BASELINE.read_text(), descriptor_pb2.FileDescriptorProto())


@cache
def _old_pool() -> descriptor_pool.DescriptorPool:
    """A pool of its own: the released messages live beside today's without clashing names."""
    pool = descriptor_pool.DescriptorPool()
    timestamp = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(timestamp)
    pool.Add(timestamp)
    pool.Add(baseline())
    return pool


def old_message(name: str) -> Any:
    """The released contract's class for message ``name`` (e.g. ``"Frame"``), as an old client has it."""
    return message_factory.GetMessageClass(_old_pool().FindMessageTypeByName(f"{PACKAGE}.{name}"))
