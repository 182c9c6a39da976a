"""What the review queue shows and in which order, as the queue's form and URLs carry it.

One filter travels with the reviewer: the queue's links to parts, a part's previous and next links and the
decision form all carry it, so the order and filters stay the same from the queue through a run of decisions.
Every value is checked here, and a bad one names the form field it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlencode

from lineqa.review.errors import BadInputError

VERDICTS = ("FAIL", "REVIEW", "PASS")
STATUSES = ("pending", "reviewed", "all")
ORDERS = ("uncertain", "newest")
ORDER_NAMES = {"uncertain": "most uncertain first", "newest": "newest first"}
# URL parameter -> (attribute, the queue form's label for it)
PARAMETERS = {
    "line": ("line", "Line"),
    "camera": ("camera", "Camera"),
    "class": ("class_name", "Class"),
    "verdict": ("verdict", "Verdict"),
    "model": ("model", "Model"),
    "since": ("since", "From"),
    "until": ("until", "Until"),
    "status": ("status", "Status"),
    "order": ("order", "Order"),
    "page": ("page", "Page"),
}


@dataclass(frozen=True)
class PartScope:
    """The parts an invited expert may see (:mod:`lineqa.review.experts`): the whole queue, or those of these
    lines or judged by these recipes. Never in a URL: the server adds it to the filter of each request."""

    whole: bool = False
    lines: frozenset[str] = frozenset()
    recipes: frozenset[str] = frozenset()

    def allows(self, line_id: str, recipe_id: str) -> bool:
        return self.whole or line_id in self.lines or recipe_id in self.recipes

    @property
    def empty(self) -> bool:
        return not (self.whole or self.lines or self.recipes)


def _label(parameter: str) -> str:
    return f"{PARAMETERS[parameter][1]} ({parameter})"


@dataclass(frozen=True)
class QueueFilter:
    """What the queue shows. ``verdict`` None means FAIL, REVIEW and the PASS sample; ``model`` is
    ``name`` or ``name:version``; ``class_name`` keeps parts with at least one defect of that class;
    ``order`` is ``uncertain`` (most doubtful first, see :mod:`lineqa.review.uncertainty`) or ``newest``.
    ``within`` narrows everything to an expert's parts (None: a member, every part of the tenant)."""

    line: str | None = None
    camera: str | None = None
    class_name: str | None = None
    verdict: str | None = None
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    status: str = "pending"
    order: str = "uncertain"
    page: int = 1
    within: PartScope | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for parameter, value, allowed in (
            ("verdict", self.verdict, VERDICTS),
            ("status", self.status, STATUSES),
            ("order", self.order, ORDERS),
        ):
            if value is not None and value not in allowed:
                raise BadInputError(f"{_label(parameter)} must be one of {', '.join(allowed)}, not {value!r}",
                                    parameter)  # fmt: skip
        if self.page < 1:
            raise BadInputError(f"{_label('page')}: page numbers start at 1", "page")
        if self.model is not None and ":" in self.model and not self.model.rpartition(":")[2].isdigit():
            raise BadInputError(f"{_label('model')}: {self.model!r} is not name or name:version", "model")

    def query(self, page: bool = False) -> dict[str, str]:
        """The URL parameters that give this filter back (defaults left out; the page only when asked)."""
        default = QueueFilter()
        out = {}
        for parameter, (attribute, _) in PARAMETERS.items():
            value = getattr(self, attribute)
            if value == getattr(default, attribute) or (parameter == "page" and not page):
                continue
            out[parameter] = value.isoformat() if isinstance(value, datetime) else str(value)
        return out

    def query_string(self) -> str:
        return urlencode(self.query())


def _time(value: str, parameter: str) -> datetime:
    """A date or date-time (UTC unless it says otherwise)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadInputError(f"{_label(parameter)}: {value!r} is not a date ({exc}); use YYYY-MM-DD or "
                            "YYYY-MM-DDTHH:MM", parameter) from None  # fmt: skip
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def parse_filter(params: Mapping[str, str]) -> QueueFilter:
    """The filter of a queue URL's (or a carried query string's) parameters; unknown parameters are ignored."""

    def text(parameter: str) -> str | None:
        return (params.get(parameter) or "").strip() or None

    since, until, page = text("since"), text("until"), text("page") or "1"
    if not page.isdigit():
        raise BadInputError(f"{_label('page')}: {page!r} is not a page number", "page")
    return QueueFilter(
        line=text("line"),
        camera=text("camera"),
        class_name=text("class"),
        verdict=text("verdict"),
        model=text("model"),
        since=_time(since, "since") if since else None,
        until=_time(until, "until") if until else None,
        status=text("status") or "pending",
        order=text("order") or "uncertain",
        page=int(page),
    )


def parse_query_string(text: str) -> QueueFilter:
    """The filter a form carried as a query string (``QueueFilter.query_string``)."""
    return parse_filter(dict(parse_qsl(text, keep_blank_values=False)))
