"""The vision core's exceptions: one root, one subclass per kind of problem a caller handles differently."""

from __future__ import annotations


class VisionError(Exception):
    """Root of every error the vision core raises on bad input."""


class ImageError(VisionError):
    """An image could not be accepted."""


class UnsupportedEncodingError(ImageError):
    """The bytes are not one of the allowed encodings (JPEG, PNG, raw 8-bit gray or BGR)."""


class CorruptImageError(ImageError):
    """The bytes claim an allowed encoding but are truncated, damaged, or disagree with their header."""


class ImageTooLargeError(ImageError):
    """The image is over the configured byte or pixel limit (checked before decoding)."""


class ModelOutputError(VisionError):
    """A model returned an output of the wrong shape, or with NaN or infinite values."""


class RecipeError(VisionError):
    """A recipe is invalid, or does not fit the model it names."""
