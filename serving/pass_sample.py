"""The fixed sample of PASS parts that QA looks at to spot escapes (defects the model missed).

One rule, used by the gateway (to keep those parts' images) and by the review app (to list them), so that
every sampled PASS part the queue shows has its image. A frame is in the sample when a mix of its sequence
number falls under the percentage::

    x = sequence mod (2**31 - 1)
    x = (x * 48271 + 11) mod (2**31 - 1)
    x = (x * x + 40503) mod (2**31 - 1)
    x = (x * 16807 + 7) mod (2**31 - 1)
    sampled  <=>  x mod 10000 < round(percent * 100)

Why this rule:
- **Deterministic**: the same frame is sampled on every replica, after a restart and on every page load; an
  auditor can recompute it from the record.
- **Not periodic**: the squaring step breaks the arithmetic pattern, so the sample does not alias with a
  periodic cause on the line (every 4th part from the same mould cavity gets sampled about as often as the
  others); the gaps between sampled parts are spread like random ones.
- **Computable in SQL**: only integer arithmetic with intermediate values under 2**62, identical on SQLite
  and PostgreSQL, so the queue selects the sample in the database and pages it there.
- **Nested in the percentage**: a 5 % sample is part of the 10 % one. A gateway keeping a percentage at
  least the review app's (both default to 5) has kept the image of every PASS part the queue shows.
- **By sequence alone** (not tenant or camera): cameras of one station that number a part alike keep every
  view of a sampled part. Sequences are never negative (uint64 on the wire).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement

from lineqa.serving.errors import ServingError

_PRIME = 2_147_483_647
_BUCKETS = 10_000


def _mix(x: Any) -> Any:
    """The rule's arithmetic on an int or on an SQL integer expression: the same operators on both."""
    x = x % _PRIME
    x = (x * 48_271 + 11) % _PRIME
    x = (x * x + 40_503) % _PRIME
    x = (x * 16_807 + 7) % _PRIME
    return x % _BUCKETS


class PassSampleError(ServingError):
    """A PASS sample that is not a percentage."""


@dataclass(frozen=True)
class PassSample:
    """``percent`` of PASS parts, chosen by their frame's sequence number (see the module docstring)."""

    percent: float = 5.0

    def __post_init__(self) -> None:
        if not 0 <= self.percent <= 100:
            raise PassSampleError(f"the PASS sample is a percentage (0-100), not {self.percent}")

    @property
    def _cut(self) -> int:
        return round(self.percent * _BUCKETS / 100)

    def contains(self, sequence: int) -> bool:
        """Whether the frame with this sequence number is in the sample."""
        return int(_mix(sequence)) < self._cut

    def where(self, sequence: ColumnElement[int]) -> ColumnElement[bool]:
        """The same test as an SQL condition on a sequence column."""
        bucket: ColumnElement[int] = _mix(sequence)
        return bucket < self._cut
