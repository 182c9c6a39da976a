"""The serving runtime's exceptions (one root; gRPC and CLI map them, never match on message text)."""

from __future__ import annotations


class ServingError(Exception):
    """Root of every error the serving runtime raises."""


class ModelLoadError(ServingError):
    """A model file is missing, unreadable, or not a detection model this runtime can serve."""


class ModelRepositoryError(ServingError):
    """A model repository is malformed, or a requested model or version is not in it."""
