import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetBundleRequest(_message.Message):
    __slots__ = ("known_number", "wait_s")
    KNOWN_NUMBER_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    known_number: int
    wait_s: float
    def __init__(self, known_number: _Optional[int] = ..., wait_s: _Optional[float] = ...) -> None: ...

class SignedBundle(_message.Message):
    __slots__ = ("number", "manifest", "signature")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    number: int
    manifest: bytes
    signature: bytes
    def __init__(self, number: _Optional[int] = ..., manifest: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class ReadFileRequest(_message.Message):
    __slots__ = ("bundle_number", "model", "version", "path", "offset")
    BUNDLE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    bundle_number: int
    model: str
    version: int
    path: str
    offset: int
    def __init__(self, bundle_number: _Optional[int] = ..., model: _Optional[str] = ..., version: _Optional[int] = ..., path: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ("offset", "data")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class GetDataPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DataPolicy(_message.Message):
    __slots__ = ("version", "flagged_parts", "image_verdicts", "decisions", "dataset")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_PARTS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_VERDICTS_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    version: int
    flagged_parts: bool
    image_verdicts: _containers.RepeatedScalarFieldContainer[str]
    decisions: bool
    dataset: str
    def __init__(self, version: _Optional[int] = ..., flagged_parts: _Optional[bool] = ..., image_verdicts: _Optional[_Iterable[str]] = ..., decisions: _Optional[bool] = ..., dataset: _Optional[str] = ...) -> None: ...

class Part(_message.Message):
    __slots__ = ("record_id", "line_id", "camera_id", "sequence", "part_id", "capture_time", "receive_time", "model_name", "model_version", "recipe_id", "recipe_version", "verdict", "defects_json", "image_sha256", "image_ext")
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PART_ID_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECIPE_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPE_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    DEFECTS_JSON_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SHA256_FIELD_NUMBER: _ClassVar[int]
    IMAGE_EXT_FIELD_NUMBER: _ClassVar[int]
    record_id: str
    line_id: str
    camera_id: str
    sequence: int
    part_id: str
    capture_time: _timestamp_pb2.Timestamp
    receive_time: _timestamp_pb2.Timestamp
    model_name: str
    model_version: int
    recipe_id: str
    recipe_version: str
    verdict: str
    defects_json: str
    image_sha256: str
    image_ext: str
    def __init__(self, record_id: _Optional[str] = ..., line_id: _Optional[str] = ..., camera_id: _Optional[str] = ..., sequence: _Optional[int] = ..., part_id: _Optional[str] = ..., capture_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., receive_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., recipe_id: _Optional[str] = ..., recipe_version: _Optional[str] = ..., verdict: _Optional[str] = ..., defects_json: _Optional[str] = ..., image_sha256: _Optional[str] = ..., image_ext: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("decision_id", "record_id", "kind", "boxes_json", "reviewer", "decided_at", "reason")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BOXES_JSON_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    decision_id: int
    record_id: str
    kind: str
    boxes_json: str
    reviewer: str
    decided_at: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, decision_id: _Optional[int] = ..., record_id: _Optional[str] = ..., kind: _Optional[str] = ..., boxes_json: _Optional[str] = ..., reviewer: _Optional[str] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class PushPartsRequest(_message.Message):
    __slots__ = ("parts", "decisions")
    PARTS_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    parts: _containers.RepeatedCompositeFieldContainer[Part]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    def __init__(self, parts: _Optional[_Iterable[_Union[Part, _Mapping]]] = ..., decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ...) -> None: ...

class Refused(_message.Message):
    __slots__ = ("item", "reason")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    item: str
    reason: str
    def __init__(self, item: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PushPartsResponse(_message.Message):
    __slots__ = ("new_parts", "new_decisions", "known", "wanted_images", "refused")
    NEW_PARTS_FIELD_NUMBER: _ClassVar[int]
    NEW_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    WANTED_IMAGES_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    new_parts: int
    new_decisions: int
    known: int
    wanted_images: _containers.RepeatedScalarFieldContainer[str]
    refused: _containers.RepeatedCompositeFieldContainer[Refused]
    def __init__(self, new_parts: _Optional[int] = ..., new_decisions: _Optional[int] = ..., known: _Optional[int] = ..., wanted_images: _Optional[_Iterable[str]] = ..., refused: _Optional[_Iterable[_Union[Refused, _Mapping]]] = ...) -> None: ...

class PutImageRequest(_message.Message):
    __slots__ = ("sha256", "ext", "data")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    EXT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    ext: str
    data: bytes
    def __init__(self, sha256: _Optional[str] = ..., ext: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class PutImageResponse(_message.Message):
    __slots__ = ("samples",)
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    samples: int
    def __init__(self, samples: _Optional[int] = ...) -> None: ...
