"""Which golden sample a frame is judged against, and what the model is given to look at.

A frame's reference is, in this order: the frame's own (``Frame.reference_image`` inline, or
``Frame.reference_id`` naming one its tenant stored), else its recipe's golden sample (``reference:``), else
none. The frame's own replaces the recipe's for the comparison too: a camera that sends one knows the part in
front of it better than a recipe shared by every camera of the product (another fixture, another lighting).
An id is only ever looked up under the caller's tenant, so a frame can never be judged against another
tenant's image; an id the tenant does not hold is REFERENCE_UNAVAILABLE, never a frame judged without it.

The frame is aligned with its reference once, on a worker thread, and that one alignment serves both the
recipe's golden-sample rule (:mod:`lineqa.vision.golden`) and, for a model trained on frame+reference pairs
(:attr:`ModelSpec.needs_reference`), the model's input (:func:`~lineqa.vision.reference.reference_input`),
so the model and the anomaly flags can never disagree about where the part sits. An image-only model is given
the frame alone whatever reference came with it.
"""

from __future__ import annotations

import numpy as np

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.errors import ServingError
from lineqa.serving.references import ReferenceStore, ReferenceUnavailableError
from lineqa.vision.detector import ModelSpec
from lineqa.vision.errors import CorruptImageError, UnsupportedEncodingError
from lineqa.vision.image import ImageEncoding, ImageLimits, decode_image, sniff_encoding
from lineqa.vision.recipe import Recipe

_INLINE_ENCODINGS = {pb.IMAGE_ENCODING_JPEG: ImageEncoding.JPEG, pb.IMAGE_ENCODING_PNG: ImageEncoding.PNG}


class ReferenceRequiredError(ServingError):
    """The model was trained on frame+reference pairs and the frame has no golden sample at all."""


def frame_reference(
    tenant: str, frame: pb.Frame, recipe: Recipe, store: ReferenceStore | None, limits: ImageLimits
) -> np.ndarray | None:
    """The decoded golden sample ``frame`` is judged against (see the module's docstring), or None.

    Reads files and decodes images: call it off the event loop. Raises
    :class:`~lineqa.serving.references.ReferenceUnavailableError` for an id or a recipe sample the tenant's
    store does not hold, and the image errors of a frame's image for a bad inline one.
    """
    kind = frame.WhichOneof("reference")
    if kind == "reference_image":
        image = frame.reference_image
        if image.encoding not in _INLINE_ENCODINGS:
            raise UnsupportedEncodingError("a frame's reference image must be JPEG or PNG")
        return decode_image(image.data, _INLINE_ENCODINGS[image.encoding], limits=limits,
                            width=image.width, height=image.height)  # fmt: skip
    wanted = frame.reference_id if kind == "reference_id" else recipe.reference.image if recipe.reference else None
    if wanted is None:
        return None
    if store is None:
        raise ReferenceUnavailableError("this gateway was started without a reference store")
    return store.image(tenant, wanted)


def add_reference(store: ReferenceStore | None, tenant: str, image: pb.Image, limits: ImageLimits) -> str:
    """Store an AddReference call's image for ``tenant`` (JPEG or PNG as declared, within the frame limits);
    its id. Blocking (decodes and writes): call it off the event loop."""
    if store is None:
        raise ReferenceUnavailableError("this gateway was started without a reference store")
    if image.encoding not in _INLINE_ENCODINGS:
        raise UnsupportedEncodingError("a reference image must be JPEG or PNG")
    if sniff_encoding(image.data) is not _INLINE_ENCODINGS[image.encoding]:
        raise CorruptImageError(f"the image is not the {pb.ImageEncoding.Name(image.encoding)} it is declared as")
    return store.add(tenant, image.data, limits)


def require_reference(spec: ModelSpec, reference: np.ndarray | None, recipe: Recipe) -> None:
    """Refuse a frame a reference model cannot look at: without a golden sample its input does not exist."""
    if spec.needs_reference and reference is None:
        raise ReferenceRequiredError(
            f"model {spec.name!r} judges a frame together with a golden sample ({spec.input_encoding}), and "
            f"neither this frame nor recipe {recipe.id!r} has one: send a reference with the frame "
            "(the camera's --reference) or name one in the recipe"
        )
