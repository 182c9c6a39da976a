"""The queue's default order is the parts' doubt, with its reason on every row: scores near the recipe's
thresholds, anomaly regions, and model versions that disagree on the same view of a part come first. The
filters and the order travel from the queue to the parts, their previous and next links, and through a run of
decisions. The PASS sample is the gateway's rule. On SQLite and on the loopback PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from lineqa.content_store import ContentStore
from lineqa.db import sqlite_url
from lineqa.review.app import ReviewSettings, create_app
from lineqa.review.queue_filter import QueueFilter
from lineqa.review.uncertainty import ANOMALY, DISAGREEMENT, NEAR, doubt
from lineqa.serving.database import open_database
from lineqa.serving.pass_sample import PassSample
from lineqa.serving.records import RecordStore
from lineqa.serving.schema import inspections
from lineqa.vision.recipe import parse_recipe
from tests.review.conftest import BASE_TIME, RECIPE, Site, csrf_of, part_image, record, seed_parts

# verdict, defects, line, camera; judged by conftest.RECIPE: fail 0.5, review band from 0.3
DOUBTFUL = [
    ("FAIL", [("open", 0.52, (30.0, 30.0, 90.0, 80.0), "defect")], "line-1", "cam-1"),  # 0.02 above fail
    ("REVIEW", [("short", 0.31, (100.0, 40.0, 150.0, 90.0), "review")], "line-2", "cam-3"),  # 0.01 above review
    ("REVIEW", [("anomaly", 0.9, (200.0, 200.0, 240.0, 230.0), "anomaly")], "line-1", "cam-2"),  # anomaly only
]


def rows_of(html: str) -> list[tuple[str, str]]:
    """(record id, why-here text) of each queue row, top to bottom."""
    found = re.findall(r'href="/t/acme/parts/([0-9a-f-]{36})[^"]*".*?<td class="why">(.*?)</td>', html, re.S)
    return [(record_id, unescape(why)) for record_id, why in found]


@pytest.fixture
def ranked(site: Site) -> dict[str, str]:
    """The site's parts plus doubtful ones; names -> record ids."""
    fail, review, fail2, passed = site.parts["acme"]
    near_fail, near_review, anomaly = seed_parts(site.url, site.home / "images", "acme", BASE_TIME + timedelta(days=1),
                                                 DOUBTFUL, first=10)  # fmt: skip
    store, content = RecordStore(open_database(site.url)), ContentStore(site.home / "images")
    image = part_image(50)
    key = content.put("acme", image, "jpg")
    when = BASE_TIME + timedelta(days=2)
    v1 = record("acme", 20, "FAIL", [("open", 0.97, (10.0, 10.0, 60.0, 60.0), "defect")], "line-1", "cam-1", when,
                key, image, part_id="SN-TWICE")  # fmt: skip
    v2 = record("acme", 21, "PASS", [], "line-1", "cam-1", when + timedelta(minutes=1), None, image,
                part_id="SN-TWICE", model_version=2)  # fmt: skip
    other_camera = record("acme", 22, "PASS", [], "line-1", "cam-2", when + timedelta(minutes=2), None, image,
                          part_id="SN-OTHER-SIDE", model_version=2)  # fmt: skip
    first_side = record("acme", 23, "FAIL", [("open", 0.97, (10.0, 10.0, 60.0, 60.0), "defect")], "line-1",
                        "cam-1", when + timedelta(minutes=3), key, image, part_id="SN-OTHER-SIDE")  # fmt: skip
    unknown = record("acme", 24, "REVIEW", [("short", 0.45, (5.0, 5.0, 40.0, 40.0), "review")], "line-1", "cam-1",
                     when + timedelta(minutes=4), key, image, recipe_version="cd" * 32)  # fmt: skip
    for made in (v1, v2, other_camera, first_side, unknown):
        store.commit(made)
    store.close()
    return {"fail": fail, "review": review, "fail2": fail2, "passed": passed, "near_fail": near_fail,
            "near_review": near_review, "anomaly": anomaly, "v1": v1.record_id, "v2": v2.record_id,
            "other_camera": other_camera.record_id, "first_side": first_side.record_id,
            "unknown": unknown.record_id}  # fmt: skip


def test_most_uncertain_first_with_the_reason(site: Site, ranked: dict[str, str]) -> None:
    page = site.client("operator").get("/t/acme/queue")
    assert page.status_code == 200 and "most uncertain first" in page.text
    order = rows_of(page.text)
    names = {v: k for k, v in ranked.items()}
    # doubt: disagreement 1.0 (both records of SN-TWICE: newer first), 0.01 from a threshold 0.93, 0.02 from one
    # 0.87, anomaly 0.75, REVIEW band under an unknown recipe version 0.5, 0.09 from a threshold 0.4; then the
    # parts without doubt, newest first
    assert [names[r] for r, _ in order] == [
        "v2", "v1", "near_review", "near_fail", "anomaly", "unknown", "review",
        "first_side", "other_camera", "passed", "fail2", "fail",
    ]  # fmt: skip
    why = dict(order)
    assert "model versions disagree on this view: pcb v1 FAIL (this record: pcb v2 PASS)" in why[ranked["v2"]]
    assert "pcb v2 PASS" in why[ranked["v1"]]
    assert why[ranked["near_review"]] == "short 0.31 is 0.01 above the review threshold 0.3"
    assert why[ranked["near_fail"]] == "open 0.52 is 0.02 above the fail threshold 0.5"
    assert why[ranked["anomaly"]] == "1 anomaly region (golden-sample comparison)"
    assert "thresholds unknown: recipe pcb-top@cdcdcdcdcdcd is not in the recipe versions" in why[ranked["unknown"]]
    assert why[ranked["first_side"]].startswith("clear: open 0.97 is 0.47 above")  # another camera: no disagreement
    assert why[ranked["passed"]] == "PASS sample: a spot check for escapes"
    assert "1 anomaly</span>" in page.text

    newest = rows_of(site.client("operator").get("/t/acme/queue?order=newest").text)
    with site.app.state.services.engine.connect() as conn:
        times = dict(conn.execute(select(inspections.c.record_id, inspections.c.receive_time)).all())
    assert [r for r, _ in newest] == sorted((r for r, _ in newest), key=lambda r: times[r], reverse=True)
    assert len(newest) == len(order)


def test_filters_and_order_travel_with_the_reviewer(site: Site, ranked: dict[str, str]) -> None:
    qa = site.client("qa")
    queue = qa.get("/t/acme/queue?line=line-1&status=pending")
    order = [r for r, _ in rows_of(queue.text)]
    assert order[:3] == [ranked["v2"], ranked["v1"], ranked["near_fail"]] and ranked["near_review"] not in order
    links = re.findall(r'class="part-link" href="([^"]+)"', queue.text)
    assert all(parse_qs(urlsplit(unescape(link)).query) == {"line": ["line-1"]} for link in links)

    middle = qa.get(f"/t/acme/parts/{order[1]}?line=line-1")
    previous = unescape(re.search(r'id="previous-link" href="([^"]+)"', middle.text).group(1))  # type: ignore[union-attr]
    following = unescape(re.search(r'id="next-link" href="([^"]+)"', middle.text).group(1))  # type: ignore[union-attr]
    assert previous == f"/t/acme/parts/{order[0]}?line=line-1" and following == f"/t/acme/parts/{order[2]}?line=line-1"
    first = qa.get(f"/t/acme/parts/{order[0]}?line=line-1").text
    assert 'id="previous-link"' not in first and "← Previous" in first

    token = csrf_of(middle.text)

    def decide(record_id: str, kind: str = "confirm") -> Any:
        form = {"kind": kind, "csrf_token": token, "queue": "line=line-1", "then": "next"}
        return qa.post(f"/t/acme/parts/{record_id}/decisions", data=form)

    decided = decide(order[1])
    target = urlsplit(decided.headers["location"])
    assert decided.status_code == 303 and target.path == f"/t/acme/parts/{order[2]}"
    assert parse_qs(target.query)["line"] == ["line-1"] and parse_qs(target.query)["done"][0].isdigit()
    # the part just decided left the pending queue; its neighbours are still found by its place in the order
    following_page = qa.get(target.path + "?line=line-1").text
    assert f'id="previous-link" href="/t/acme/parts/{order[0]}?line=line-1"' in following_page

    last = order[-1]
    wrapped = decide(last)
    assert urlsplit(wrapped.headers["location"]).path == f"/t/acme/parts/{order[0]}"  # back to the top of the order
    for record_id in order:
        decide(record_id)
    done = decide(order[0], "false_alarm")
    assert urlsplit(done.headers["location"]).path == "/t/acme/queue"  # nothing pending on line-1: the queue
    assert "Nothing to review" in qa.get(done.headers["location"]).text


def test_the_pass_sample_is_the_gateways_rule(site: Site, tmp_path: Path) -> None:
    passed = [("PASS", [], "line-1", "cam-1")] * 120
    ids = seed_parts(site.url, site.home / "images", "acme", BASE_TIME + timedelta(days=3), passed, first=100)
    app = create_app(ReviewSettings(database_url=site.url, images=site.home / "images", pass_sample_percent=5))
    try:
        rows = app.state.services.queue.page("acme", QueueFilter()).rows
    finally:
        app.state.services.engine.dispose()
    shown = {r.record_id for r in rows} & set(ids)
    expected = {record_id for sequence, record_id in enumerate(ids, start=100) if PassSample(5).contains(sequence)}
    assert shown == expected and 0 < len(expected) < 20


def test_doubt_signals_add_up() -> None:
    recipe = parse_recipe(RECIPE).rule_for

    class Found:
        def __init__(self, class_name: str, confidence: float, disposition: str) -> None:
            self.class_name, self.confidence, self.disposition = class_name, confidence, disposition

    on_threshold = doubt("FAIL", [Found("open", 0.5, "defect")], recipe, "r", ("pcb", 1), {})
    assert on_threshold.score == 1.0
    far = doubt("FAIL", [Found("open", 0.5 + NEAR, "defect")], recipe, "r", ("pcb", 1), {})
    assert far.score == 0 and far.text().startswith("clear: ")
    everything = doubt("REVIEW", [Found("open", 0.5, "review"), Found("anomaly", 0.8, "anomaly")], recipe, "r",
                       ("pcb", 1), {("pcb", 2): frozenset({"PASS"}), ("pcb", 1): frozenset({"REVIEW"})})  # fmt: skip
    assert everything.score == 1.0 + ANOMALY + DISAGREEMENT and len(everything.reasons) == 3
    same_verdict = doubt("PASS", [], recipe, "r", ("pcb", 1), {("pcb", 2): frozenset({"PASS"})})
    assert same_verdict.score == 0


def test_the_queue_order_on_an_empty_tenant(tmp_path: Path) -> None:
    app = create_app(ReviewSettings(database_url=sqlite_url(tmp_path / "e.db"), images=tmp_path / "images"))
    try:
        shown = app.state.services.queue.page("nobody", QueueFilter())
        assert shown.rows == [] and shown.total == 0
    finally:
        app.state.services.engine.dispose()


def test_past_the_ranking_limit_the_queue_says_so(site: Site, ranked: dict[str, str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr("lineqa.review.queue.RANK_LIMIT", 3)
    page = site.client("operator").get("/t/acme/queue")
    assert "12 parts, most uncertain first (the order ranks the newest 3;" in page.text
    assert [r for r, _ in rows_of(page.text)] == [ranked["unknown"], ranked["first_side"], ranked["other_camera"]]
    assert len(rows_of(site.client("operator").get("/t/acme/queue?order=newest").text)) == 12
