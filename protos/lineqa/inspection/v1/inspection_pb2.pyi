import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_ENCODING_UNSPECIFIED: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_JPEG: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_PNG: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_RAW_GRAY8: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_RAW_BGR8: _ClassVar[ImageEncoding]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_PASS: _ClassVar[Verdict]
    VERDICT_FAIL: _ClassVar[Verdict]
    VERDICT_REVIEW: _ClassVar[Verdict]
    VERDICT_ERROR: _ClassVar[Verdict]

class DefectDisposition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEFECT_DISPOSITION_UNSPECIFIED: _ClassVar[DefectDisposition]
    DEFECT_DISPOSITION_DEFECT: _ClassVar[DefectDisposition]
    DEFECT_DISPOSITION_REVIEW: _ClassVar[DefectDisposition]
    DEFECT_DISPOSITION_ANOMALY: _ClassVar[DefectDisposition]

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    ERROR_CODE_INVALID_FRAME: _ClassVar[ErrorCode]
    ERROR_CODE_INVALID_IMAGE: _ClassVar[ErrorCode]
    ERROR_CODE_UNSUPPORTED_ENCODING: _ClassVar[ErrorCode]
    ERROR_CODE_IMAGE_TOO_LARGE: _ClassVar[ErrorCode]
    ERROR_CODE_UNKNOWN_RECIPE: _ClassVar[ErrorCode]
    ERROR_CODE_MODEL_UNAVAILABLE: _ClassVar[ErrorCode]
    ERROR_CODE_MODEL_TIMEOUT: _ClassVar[ErrorCode]
    ERROR_CODE_INVALID_MODEL_OUTPUT: _ClassVar[ErrorCode]
    ERROR_CODE_OVERLOADED: _ClassVar[ErrorCode]
    ERROR_CODE_STORAGE_FAILURE: _ClassVar[ErrorCode]
    ERROR_CODE_INTERNAL: _ClassVar[ErrorCode]
    ERROR_CODE_SEQUENCE_CONFLICT: _ClassVar[ErrorCode]
    ERROR_CODE_REFERENCE_UNAVAILABLE: _ClassVar[ErrorCode]
    ERROR_CODE_REFERENCE_REQUIRED: _ClassVar[ErrorCode]
IMAGE_ENCODING_UNSPECIFIED: ImageEncoding
IMAGE_ENCODING_JPEG: ImageEncoding
IMAGE_ENCODING_PNG: ImageEncoding
IMAGE_ENCODING_RAW_GRAY8: ImageEncoding
IMAGE_ENCODING_RAW_BGR8: ImageEncoding
VERDICT_UNSPECIFIED: Verdict
VERDICT_PASS: Verdict
VERDICT_FAIL: Verdict
VERDICT_REVIEW: Verdict
VERDICT_ERROR: Verdict
DEFECT_DISPOSITION_UNSPECIFIED: DefectDisposition
DEFECT_DISPOSITION_DEFECT: DefectDisposition
DEFECT_DISPOSITION_REVIEW: DefectDisposition
DEFECT_DISPOSITION_ANOMALY: DefectDisposition
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_INVALID_FRAME: ErrorCode
ERROR_CODE_INVALID_IMAGE: ErrorCode
ERROR_CODE_UNSUPPORTED_ENCODING: ErrorCode
ERROR_CODE_IMAGE_TOO_LARGE: ErrorCode
ERROR_CODE_UNKNOWN_RECIPE: ErrorCode
ERROR_CODE_MODEL_UNAVAILABLE: ErrorCode
ERROR_CODE_MODEL_TIMEOUT: ErrorCode
ERROR_CODE_INVALID_MODEL_OUTPUT: ErrorCode
ERROR_CODE_OVERLOADED: ErrorCode
ERROR_CODE_STORAGE_FAILURE: ErrorCode
ERROR_CODE_INTERNAL: ErrorCode
ERROR_CODE_SEQUENCE_CONFLICT: ErrorCode
ERROR_CODE_REFERENCE_UNAVAILABLE: ErrorCode
ERROR_CODE_REFERENCE_REQUIRED: ErrorCode

class AddReferenceRequest(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: Image
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class AddReferenceResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class InspectRequest(_message.Message):
    __slots__ = ("frame",)
    FRAME_FIELD_NUMBER: _ClassVar[int]
    frame: Frame
    def __init__(self, frame: _Optional[_Union[Frame, _Mapping]] = ...) -> None: ...

class InspectResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: InspectionResult
    def __init__(self, result: _Optional[_Union[InspectionResult, _Mapping]] = ...) -> None: ...

class StreamInspectRequest(_message.Message):
    __slots__ = ("frame",)
    FRAME_FIELD_NUMBER: _ClassVar[int]
    frame: Frame
    def __init__(self, frame: _Optional[_Union[Frame, _Mapping]] = ...) -> None: ...

class StreamInspectResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: InspectionResult
    def __init__(self, result: _Optional[_Union[InspectionResult, _Mapping]] = ...) -> None: ...

class FrameIdentity(_message.Message):
    __slots__ = ("camera_id", "line_id", "part_id", "sequence", "capture_time")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    PART_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    line_id: str
    part_id: str
    sequence: int
    capture_time: _timestamp_pb2.Timestamp
    def __init__(self, camera_id: _Optional[str] = ..., line_id: _Optional[str] = ..., part_id: _Optional[str] = ..., sequence: _Optional[int] = ..., capture_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("identity", "recipe_id", "image", "reference_image", "reference_id")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    RECIPE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    identity: FrameIdentity
    recipe_id: str
    image: Image
    reference_image: Image
    reference_id: str
    def __init__(self, identity: _Optional[_Union[FrameIdentity, _Mapping]] = ..., recipe_id: _Optional[str] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., reference_image: _Optional[_Union[Image, _Mapping]] = ..., reference_id: _Optional[str] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("encoding", "data", "width", "height", "stride")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    encoding: ImageEncoding
    data: bytes
    width: int
    height: int
    stride: int
    def __init__(self, encoding: _Optional[_Union[ImageEncoding, str]] = ..., data: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., stride: _Optional[int] = ...) -> None: ...

class BoundingBox(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    x1: float
    y1: float
    x2: float
    y2: float
    def __init__(self, x1: _Optional[float] = ..., y1: _Optional[float] = ..., x2: _Optional[float] = ..., y2: _Optional[float] = ...) -> None: ...

class Defect(_message.Message):
    __slots__ = ("class_name", "class_id", "confidence", "box", "area_px", "area_mm2", "disposition")
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    AREA_PX_FIELD_NUMBER: _ClassVar[int]
    AREA_MM2_FIELD_NUMBER: _ClassVar[int]
    DISPOSITION_FIELD_NUMBER: _ClassVar[int]
    class_name: str
    class_id: int
    confidence: float
    box: BoundingBox
    area_px: float
    area_mm2: float
    disposition: DefectDisposition
    def __init__(self, class_name: _Optional[str] = ..., class_id: _Optional[int] = ..., confidence: _Optional[float] = ..., box: _Optional[_Union[BoundingBox, _Mapping]] = ..., area_px: _Optional[float] = ..., area_mm2: _Optional[float] = ..., disposition: _Optional[_Union[DefectDisposition, str]] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class RecipeRef(_message.Message):
    __slots__ = ("id", "version")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: str
    def __init__(self, id: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("decode_ms", "preprocess_ms", "queue_ms", "inference_ms", "postprocess_ms", "decision_ms", "persist_ms", "total_ms", "alignment_ms")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    POSTPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    DECISION_MS_FIELD_NUMBER: _ClassVar[int]
    PERSIST_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_MS_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    preprocess_ms: float
    queue_ms: float
    inference_ms: float
    postprocess_ms: float
    decision_ms: float
    persist_ms: float
    total_ms: float
    alignment_ms: float
    def __init__(self, decode_ms: _Optional[float] = ..., preprocess_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ..., postprocess_ms: _Optional[float] = ..., decision_ms: _Optional[float] = ..., persist_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., alignment_ms: _Optional[float] = ...) -> None: ...

class InspectionError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ...) -> None: ...

class InspectionResult(_message.Message):
    __slots__ = ("frame", "verdict", "defects", "reasons", "model", "recipe", "timings", "record_id", "error", "replay", "receive_time")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    DEFECTS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REPLAY_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    frame: FrameIdentity
    verdict: Verdict
    defects: _containers.RepeatedCompositeFieldContainer[Defect]
    reasons: _containers.RepeatedScalarFieldContainer[str]
    model: ModelRef
    recipe: RecipeRef
    timings: StageTimings
    record_id: str
    error: InspectionError
    replay: bool
    receive_time: _timestamp_pb2.Timestamp
    def __init__(self, frame: _Optional[_Union[FrameIdentity, _Mapping]] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., defects: _Optional[_Iterable[_Union[Defect, _Mapping]]] = ..., reasons: _Optional[_Iterable[str]] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., recipe: _Optional[_Union[RecipeRef, _Mapping]] = ..., timings: _Optional[_Union[StageTimings, _Mapping]] = ..., record_id: _Optional[str] = ..., error: _Optional[_Union[InspectionError, _Mapping]] = ..., replay: _Optional[bool] = ..., receive_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
