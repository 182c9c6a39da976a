"""Dashboards: defect rate per line by day and shift (night shifts after midnight belong to the day they
started), the Pareto of defect classes, the verdict mix per model version, the review backlog and reviewer
agreement, as tables, CSV and PNG charts. On SQLite and on the loopback PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from lineqa.review import dashboards
from lineqa.review.errors import BadInputError
from lineqa.serving.database import open_database
from lineqa.serving.records import RecordStore
from tests.review.conftest import Site, csrf_of, part_image, record

UTC = timezone.utc
EXTRA = (  # beyond the site's four parts of 2 March 08:00-11:00 UTC
    (datetime(2026, 3, 2, 23, 30, tzinfo=UTC), "FAIL", [("open", 0.9, (1.0, 1.0, 9.0, 9.0), "defect")], "line-1"),
    (datetime(2026, 3, 3, 2, 0, tzinfo=UTC), "PASS", [], "line-1"),
    (datetime(2026, 3, 3, 15, 0, tzinfo=UTC), "FAIL", [("spur", 0.8, (1.0, 1.0, 9.0, 9.0), "defect")], "line-2"),
)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("early=6-14,late=14-22,night=22-6", None),
        ("day=6-18,night=18-6", None),
        ("a=0-12,b=12-0", None),
        ("early=6-14,late=14-22", "hour 00 belongs to 0 shifts"),
        ("a=0-13,b=12-0", "hour 12 belongs to 2 shifts"),
        ("a=6-6", "not name=START-END"),
        ("a=25-3", "not name=START-END"),
        ("a 6-14", "not name=START-END"),
    ],
)
def test_shifts_must_cover_every_hour_once(text: str, error: str | None) -> None:
    if error is None:
        assert {h for s in dashboards.parse_shifts(text) for h in range(24) if s.covers(h)} == set(range(24))
    else:
        with pytest.raises(BadInputError, match=error):
            dashboards.parse_shifts(text)


def add_extra_parts(site: Site) -> None:
    store = RecordStore(open_database(site.url))
    for sequence, (when, verdict, defects, line) in enumerate(EXTRA, start=10):
        store.commit(record("acme", sequence, verdict, list(defects), line, "cam-1", when, None, part_image(sequence)))
    store.close()


def test_rates_by_day_and_shift_pareto_mix_backlog_and_agreement(site: Site) -> None:
    add_extra_parts(site)
    services = site.app.state.services
    qa = site.client("qa")
    for part, kind in zip(site.parts["acme"][:2], ("confirm", "false_alarm"), strict=True):
        token = csrf_of(qa.get(f"/t/acme/parts/{part}").text)
        qa.post(f"/t/acme/parts/{part}/decisions", data={"kind": kind, "csrf_token": token})
    board = dashboards.compute(services.engine, "acme", datetime(2026, 3, 1, tzinfo=UTC),
                               datetime(2026, 3, 5, tzinfo=UTC), ZoneInfo("UTC"))  # fmt: skip
    rates = {key: (r.failed, r.judged) for key, r in board.by_line_shift.items()}
    assert rates == {
        ("line-1", date(2026, 3, 2), "early"): (1, 3),
        ("line-2", date(2026, 3, 2), "early"): (1, 1),
        ("line-1", date(2026, 3, 2), "night"): (1, 2),  # 23:30 and 02:00 next morning: one night shift
        ("line-2", date(2026, 3, 3), "late"): (1, 1),
    }
    assert {day: (r.failed, r.judged) for day, r in board.by_line_day["line-1"].items()} == {
        date(2026, 3, 2): (2, 4), date(2026, 3, 3): (0, 1)}  # fmt: skip
    assert board.pareto[0] == ("open", 3) and sorted(board.pareto[1:]) == [("copper", 1), ("short", 1), ("spur", 1)]
    assert dict(board.verdict_mix["pcb:1"]) == {"FAIL": 4, "REVIEW": 1, "PASS": 2}
    assert board.backlog == 3
    assert (board.agreement["pcb:1"].failed, board.agreement["pcb:1"].judged) == (1, 2)
    berlin = dashboards.compute(services.engine, "acme", datetime(2026, 3, 1, tzinfo=UTC),
                                datetime(2026, 3, 5, tzinfo=UTC), ZoneInfo("Europe/Berlin"))  # fmt: skip
    assert berlin.by_line_shift[("line-1", date(2026, 3, 2), "night")].judged == 2  # 00:30 and 03:00 local
    assert berlin.by_line_day["line-1"].keys() == {date(2026, 3, 2), date(2026, 3, 3)}


def test_dashboard_page_csv_and_charts(site: Site) -> None:
    add_extra_parts(site)
    client = site.client("operator")
    page = client.get("/t/acme/dashboard?days=366")
    assert page.status_code == 200 and 'id="backlog">5<' in page.text
    exported = client.get("/t/acme/export/defect-rate.csv?days=366")
    assert exported.headers["content-type"].startswith("text/csv")
    assert 'filename="acme-defect-rate.csv"' in exported.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == ["line", "day", "shift", "failed", "judged", "defect rate %"]
    assert ["line-1", "2026-03-02", "night", "1", "2", "50.0"] in rows
    pareto = list(csv.reader(io.StringIO(client.get("/t/acme/export/pareto.csv?days=366").text)))
    assert pareto[1] == ["open", "3", "50.0"] and pareto[-1][2] == "100.0"
    for chart in dashboards.CHARTS:
        png = client.get(f"/t/acme/dashboard/{chart}.png?days=366")
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG") and len(png.content) > 5000
    assert client.get("/t/acme/dashboard/pie.png").status_code == 404
    assert client.get("/t/acme/export/secrets.csv").status_code == 404
    assert client.get("/t/acme/dashboard?days=0").status_code == 400
