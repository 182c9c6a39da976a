"""The training package's exceptions (one root)."""

from __future__ import annotations


class TrainingError(Exception):
    """Root of every error the training package raises."""
