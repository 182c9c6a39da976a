"""Errors of the hub and plant roles that a user can act on (the ``lineqa`` command prints them as one line)."""

from __future__ import annotations


class FleetError(Exception):
    """Root of the hub and plant roles' errors."""


class BundleRefusedError(FleetError):
    """A bundle failed its checks (signature, tenant, number, a file's hash): nothing of it was installed."""


class HubUnreachableError(FleetError):
    """The hub did not answer (down, cut off, or too slow): the plant keeps what it has and tries again."""


class PlantAccessError(FleetError):
    """A plant is unknown, revoked, or asked for something of another tenant."""


class EnrolmentError(FleetError):
    """A plant cannot be added to the hub, or cannot join it with the enrolment file it was given."""
