"""What QA leads watch: defect rate per line by day (trend) and by shift, the Pareto of defect classes, the
verdict mix per model version, the review backlog and how often reviewers agree with the model.

Computed from the gateway's records and the decisions in a time window (default the last 30 days), in the
plant's time zone, with configurable shifts (default three: 06-14, 14-22, 22-06; a shift that crosses
midnight belongs to the production day it started on). The defect rate is the share of judged parts the
model failed (FAIL / all judged); agreement is the share of reviewed parts whose latest decision confirmed
the model. Charts are PNGs drawn with matplotlib's object API (no global pyplot state: safe across
requests); every table is also a CSV.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from matplotlib.figure import Figure
from sqlalchemy import Engine, func, select

from lineqa.db import tenant_scope
from lineqa.review.clock import as_utc
from lineqa.review.errors import BadInputError, NotFoundError
from lineqa.review.schema import decisions
from lineqa.serving.schema import inspections


@dataclass(frozen=True)
class Shift:
    name: str
    start_hour: int
    end_hour: int  # exclusive; smaller than start_hour for a shift crossing midnight

    def covers(self, hour: int) -> bool:
        if self.start_hour < self.end_hour:
            return self.start_hour <= hour < self.end_hour
        return hour >= self.start_hour or hour < self.end_hour


DEFAULT_SHIFTS = (Shift("early", 6, 14), Shift("late", 14, 22), Shift("night", 22, 6))
_SHIFT = re.compile(r"^([A-Za-z0-9_-]{1,32})=(\d{1,2})-(\d{1,2})$")


def parse_shifts(text: str) -> tuple[Shift, ...]:
    """``early=6-14,late=14-22,night=22-6``: every hour of the day must belong to exactly one shift."""
    shifts = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _SHIFT.match(part)
        if not match or not all(0 <= int(h) < 24 for h in match.group(2, 3)) or match[2] == match[3]:
            raise BadInputError(f"shift {part!r} is not name=START-END with hours 0-23")
        shifts.append(Shift(match[1], int(match[2]), int(match[3])))
    for hour in range(24):
        owners = [s.name for s in shifts if s.covers(hour)]
        if len(owners) != 1:
            raise BadInputError(f"hour {hour:02d} belongs to {len(owners)} shifts ({', '.join(owners) or 'none'})")
    return tuple(shifts)


@dataclass
class Rate:
    failed: int = 0
    judged: int = 0

    @property
    def percent(self) -> float:
        return 100.0 * self.failed / self.judged if self.judged else 0.0


@dataclass
class Dashboard:
    since: datetime
    until: datetime
    by_line_day: dict[str, dict[date, Rate]] = field(default_factory=lambda: defaultdict(dict))
    by_line_shift: dict[tuple[str, date, str], Rate] = field(default_factory=dict)
    pareto: list[tuple[str, int]] = field(default_factory=list)
    verdict_mix: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    backlog: int = 0
    agreement: dict[str, Rate] = field(default_factory=dict)  # per model: failed = confirmed, judged = reviewed

    def tables(self) -> dict[str, tuple[list[str], list[list[object]]]]:
        """Every table of the dashboard as (header, rows): the page shows them, the CSV export writes them."""
        verdicts = sorted({v for mix in self.verdict_mix.values() for v in mix})
        return {
            "defect-rate": (
                ["line", "day", "shift", "failed", "judged", "defect rate %"],
                [
                    [line, day.isoformat(), shift, r.failed, r.judged, round(r.percent, 2)]
                    for (line, day, shift), r in sorted(self.by_line_shift.items())
                ],
            ),
            "pareto": (
                ["class", "defects", "cumulative %"],
                [
                    [name, count, round(cum, 2)]
                    for (name, count), cum in zip(self.pareto, _cumulative(self.pareto), strict=True)
                ],
            ),
            "verdicts": (
                ["model", *verdicts, "total"],
                [
                    [model, *(mix[v] for v in verdicts), sum(mix.values())]
                    for model, mix in sorted(self.verdict_mix.items())
                ],
            ),
            "agreement": (
                ["model", "reviewed", "confirmed", "agreement %"],
                [[model, r.judged, r.failed, round(r.percent, 2)] for model, r in sorted(self.agreement.items())],
            ),
        }


def _cumulative(pareto: list[tuple[str, int]]) -> list[float]:
    total = sum(count for _, count in pareto) or 1
    running, out = 0, []
    for _, count in pareto:
        running += count
        out.append(100.0 * running / total)
    return out


def compute(
    engine: Engine,
    tenant: str,
    since: datetime,
    until: datetime,
    zone: ZoneInfo,
    shifts: tuple[Shift, ...] = DEFAULT_SHIFTS,
) -> Dashboard:
    c, d = inspections.c, decisions.c
    window = (c.tenant == tenant, c.receive_time >= since, c.receive_time < until)
    query = select(
        c.record_id, c.line_id, c.receive_time, c.verdict, c.model_name, c.model_version, c.defects_json
    ).where(*window, c.verdict != "ERROR")
    latest = select(func.max(d.decision_id)).where(d.tenant_id == tenant).group_by(d.record_id)
    board = Dashboard(since, until)
    classes: Counter[str] = Counter()
    with tenant_scope(engine, tenant).connect() as conn:
        decided = {
            rid: kind for rid, kind in conn.execute(select(d.record_id, d.kind).where(d.decision_id.in_(latest)))
        }
        rows = conn.execute(query).all()
    for r in rows:
        local = as_utc(r.receive_time).astimezone(zone)
        shift = next(s for s in shifts if s.covers(local.hour))
        after_midnight = shift.start_hour > shift.end_hour and local.hour < shift.end_hour
        day = (local - timedelta(days=1)).date() if after_midnight else local.date()
        failed = int(r.verdict == "FAIL")
        for rate in (
            board.by_line_day[r.line_id].setdefault(local.date(), Rate()),
            board.by_line_shift.setdefault((r.line_id, day, shift.name), Rate()),
        ):
            rate.failed += failed
            rate.judged += 1
        model = f"{r.model_name}:{r.model_version}"
        board.verdict_mix[model][r.verdict] += 1
        if r.verdict != "PASS":
            classes.update(defect["class"] for defect in json.loads(r.defects_json))
            board.backlog += r.record_id not in decided
        if r.record_id in decided:
            agreed = board.agreement.setdefault(model, Rate())
            agreed.judged += 1
            agreed.failed += decided[r.record_id] == "confirm"
    board.pareto = classes.most_common()
    return board


CHARTS = ("trend", "pareto", "verdicts")


def chart_png(board: Dashboard, chart: str) -> bytes:
    if chart not in CHARTS:
        raise NotFoundError(f"no chart {chart!r}")
    figure = Figure(figsize=(7.5, 3.4), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    if chart == "trend":
        days = sorted({day for per_day in board.by_line_day.values() for day in per_day})
        for line, per_day in sorted(board.by_line_day.items()):
            rates = [per_day[day].percent if day in per_day else math.nan for day in days]
            axes.plot([day.isoformat() for day in days], rates, marker="o", label=line)
        axes.set_ylim(bottom=0)
        axes.set_ylabel("defect rate %")
        axes.set_title("Defect rate per line and day")
        if board.by_line_day:
            axes.legend(loc="upper left", fontsize=8)
        axes.tick_params(axis="x", labelrotation=45)
    elif chart == "pareto":
        names = [name for name, _ in board.pareto]
        axes.bar(names, [count for _, count in board.pareto], color="#c0392b")
        axes.set_ylabel("defects")
        cumulative = axes.twinx()
        cumulative.plot(names, _cumulative(board.pareto), color="#2c3e50", marker="o")
        cumulative.set_ylim(0, 105)
        cumulative.set_ylabel("cumulative %")
        axes.set_title("Pareto of defect classes")
    else:
        models = sorted(board.verdict_mix)
        bottom = [0] * len(models)
        for verdict, colour in (("PASS", "#27ae60"), ("REVIEW", "#f39c12"), ("FAIL", "#c0392b")):
            counts = [board.verdict_mix[m][verdict] for m in models]
            axes.bar(models, counts, bottom=bottom, label=verdict, color=colour)
            bottom = [b + n for b, n in zip(bottom, counts, strict=True)]
        axes.set_ylabel("parts")
        axes.set_title("Verdict mix per model version")
        axes.legend(fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
