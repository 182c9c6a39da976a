"""The wire contract only ever grows: every message, field, enum value and method of the released contract
(the baseline file, compiled from the proto as it was released) is still there with the same number, name,
type and shape, and a frame an old client serializes reads back the same. A check in the spirit of ``buf
breaking`` (FILE rules), written over the descriptors so it needs no tool beyond protobuf itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from google.protobuf import descriptor_pb2

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from tests.helpers.wire_baseline import PACKAGE, baseline, old_message

Message = descriptor_pb2.DescriptorProto


def current() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(proto)
    return proto


def _messages(messages: list[Message], prefix: str) -> Iterator[tuple[str, Message]]:
    for message in messages:
        name = f"{prefix}.{message.name}"
        yield name, message
        yield from _messages(list(message.nested_type), name)


def _enums(file: descriptor_pb2.FileDescriptorProto) -> dict[str, dict[str, int]]:
    enums = {f"{PACKAGE}.{e.name}": e for e in file.enum_type}
    for name, message in _messages(list(file.message_type), PACKAGE):
        enums |= {f"{name}.{e.name}": e for e in message.enum_type}
    return {name: {v.name: v.number for v in enum.value} for name, enum in enums.items()}


def _field_shape(message: Message, field: descriptor_pb2.FieldDescriptorProto) -> tuple[object, ...]:
    """What a field is on the wire and in generated code: name, type, label, message type and its oneof."""
    oneof = message.oneof_decl[field.oneof_index].name if field.HasField("oneof_index") else None
    return field.name, field.type, field.label, field.type_name, oneof, field.proto3_optional


def breaking_changes(old: descriptor_pb2.FileDescriptorProto, new: descriptor_pb2.FileDescriptorProto) -> list[str]:
    """Every way ``new`` breaks a client or a stored message written for ``old``; empty when it only adds."""
    problems = []
    if (old.package, old.syntax) != (new.package, new.syntax):
        problems.append(f"package/syntax {old.package}/{old.syntax} became {new.package}/{new.syntax}")
    new_messages = dict(_messages(list(new.message_type), new.package))
    for name, message in _messages(list(old.message_type), old.package):
        if name not in new_messages:
            problems.append(f"message {name} removed")
            continue
        now = {f.number: f for f in new_messages[name].field}
        for field in message.field:
            if field.number not in now:
                problems.append(f"{name}.{field.name} ({field.number}) removed")
            elif _field_shape(message, field) != _field_shape(new_messages[name], now[field.number]):
                problems.append(f"{name} field {field.number}: {_field_shape(message, field)} became "
                                f"{_field_shape(new_messages[name], now[field.number])}")  # fmt: skip
    new_enums = _enums(new)
    for name, values in _enums(old).items():
        kept = new_enums.get(name, {})
        problems += [f"{name}.{value} = {number} removed or renumbered"
                     for value, number in values.items() if kept.get(value) != number]  # fmt: skip
    new_services = {s.name: {m.name: m for m in s.method} for s in new.service}
    for service in old.service:
        methods = new_services.get(service.name, {})
        for method in service.method:
            if method != methods.get(method.name):
                problems.append(f"rpc {service.name}.{method.name} removed or changed")
    return problems


def test_the_contract_only_adds_to_the_released_one() -> None:
    assert breaking_changes(baseline(), current()) == []


def _frame(file: descriptor_pb2.FileDescriptorProto) -> Message:
    return next(m for m in file.message_type if m.name == "Frame")


def _renumber(file: descriptor_pb2.FileDescriptorProto) -> None:
    _frame(file).field[2].number = 9


def _rename(file: descriptor_pb2.FileDescriptorProto) -> None:
    _frame(file).field[1].name = "recipe"


def _retype(file: descriptor_pb2.FileDescriptorProto) -> None:
    _frame(file).field[1].type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES


def _into_a_oneof(file: descriptor_pb2.FileDescriptorProto) -> None:
    _frame(file).field[2].oneof_index = 0


def _drop_enum_value(file: descriptor_pb2.FileDescriptorProto) -> None:
    codes = next(e for e in file.enum_type if e.name == "ErrorCode")
    del codes.value[-3]


def _unstream(file: descriptor_pb2.FileDescriptorProto) -> None:
    file.service[0].method[1].client_streaming = False


@pytest.mark.parametrize("change", [_renumber, _rename, _retype, _into_a_oneof, _drop_enum_value, _unstream])
def test_the_check_catches_each_kind_of_break(change: Callable[[descriptor_pb2.FileDescriptorProto], None]) -> None:
    """The check must be able to fail: each edit an author might make to an existing field or method."""
    broken = current()
    change(broken)
    assert breaking_changes(baseline(), broken) != []


def test_an_old_clients_frame_reads_back_the_same_and_without_a_reference() -> None:
    old_frame = old_message("Frame")
    assert {f.name for f in old_frame.DESCRIPTOR.fields} == {"identity", "recipe_id", "image"}  # truly the old one
    sent = old_frame(recipe_id="pcb", image={"encoding": pb.IMAGE_ENCODING_PNG, "data": b"\x89PNG"})
    sent.identity.camera_id, sent.identity.sequence = "cam-1", 7
    frame = pb.Frame.FromString(sent.SerializeToString())
    assert frame.WhichOneof("reference") is None
    assert (frame.recipe_id, frame.image.data, frame.identity.sequence) == ("pcb", b"\x89PNG", 7)
    assert frame.SerializeToString() == sent.SerializeToString()


def test_an_old_client_reads_a_new_result_and_keeps_what_it_does_not_know() -> None:
    """An old agent gets results with new error codes: it reads the rest, and the code survives a re-send."""
    result = pb.InspectionResult(verdict=pb.VERDICT_ERROR)
    result.error.code = pb.ERROR_CODE_REFERENCE_REQUIRED
    result.frame.sequence = 3
    old = old_message("InspectionResult").FromString(result.SerializeToString())
    assert old.verdict == pb.VERDICT_ERROR and old.frame.sequence == 3
    assert pb.InspectionResult.FromString(old.SerializeToString()).error.code == pb.ERROR_CODE_REFERENCE_REQUIRED
