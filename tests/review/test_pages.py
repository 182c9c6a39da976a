"""The audit CSV carries what its page shows (the same columns, the same JSON); a bad filter value gets a page
that says which field was wrong and how; the favicon is served to anyone; every request and every decision
is one structured log line (who, what, status, time) with no secret in it. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from html import unescape

import pytest

from lineqa.review.app_log import JsonLines
from tests.review.conftest import PASSWORD, Site, csrf_of


def test_the_audit_csv_has_the_pages_columns_and_json(site: Site) -> None:
    qa = site.client("qa")
    fail = site.parts["acme"][0]
    token = csrf_of(qa.get(f"/t/acme/parts/{fail}").text)
    boxes = json.dumps([{"class": "short", "box": [1, 2, 30, 40]}])
    qa.post(f"/t/acme/parts/{fail}/decisions", data={"kind": "correct", "boxes": boxes, "csrf_token": token,
                                                     "reason": "-1 looks like a formula"})  # fmt: skip
    page = qa.get("/t/acme/audit").text
    header = [unescape(h) for h in re.findall(r"<th>(.*?)</th>", page)]
    cells = [unescape(c) for c in re.findall(r"<code>(.*?)</code>", page)]
    exported = qa.get("/t/acme/audit?format=csv")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == header == ["at (UTC)", "who", "action", "object", "old", "new", "reason"]
    assert rows[1][1] == "qa" and rows[1][3] == f"part:{fail}" and rows[1][4:6] == cells[:2]
    old, new = json.loads(rows[1][4]), json.loads(rows[1][5])
    assert old["verdict"] == "FAIL" and new["labels"] == [{"class": "short", "box": [1.0, 2.0, 30.0, 40.0]}]
    assert rows[1][6] == "'-1 looks like a formula"  # quoted so a spreadsheet does not run it


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("since=2026-02-30", "From (since): '2026-02-30' is not a date (day is out of range for month); use YYYY-"),
        ("until=yesterday", "Until (until): 'yesterday' is not a date"),
        ("verdict=MAYBE", "Verdict (verdict) must be one of FAIL, REVIEW, PASS, not 'MAYBE'"),
        ("order=random", "Order (order) must be one of uncertain, newest, not 'random'"),
        ("page=x", "Page (page): 'x' is not a page number"),
    ],
)
def test_a_bad_filter_value_says_what_was_wrong(site: Site, query: str, said: str) -> None:
    page = site.client("operator").get(f"/t/acme/queue?line=line-1&{query}")
    assert page.status_code == 400
    text = unescape(page.text)
    assert "<h1>That input cannot be used</h1>" in text and said in text and "Cannot do that" not in text
    back = unescape(re.search(r'href="([^"]+)" id="error-back"', page.text).group(1))  # type: ignore[union-attr]
    assert back == "/t/acme/queue?line=line-1"  # the same page without the wrong value
    assert site.client("operator").get(back).status_code == 200


def test_the_favicon_is_served_to_anyone(site: Site) -> None:
    icon = site.client().get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00" and b"PNG" in icon.content[:32]
    assert '<link rel="icon" href="/favicon.ico"' in site.client().get("/login").text


def test_requests_and_decisions_are_structured_log_lines_without_secrets(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lineqa.review")
    qa = site.client("qa")
    fail = site.parts["acme"][0]
    token = csrf_of(qa.get(f"/t/acme/parts/{fail}").text)
    qa.post(f"/t/acme/parts/{fail}/decisions", data={"kind": "false_alarm", "csrf_token": token})
    assert site.client("operator").get("/t/globex/queue").status_code == 404
    lines = [JsonLines().format(r) for r in caplog.records if r.name.startswith("lineqa.review")]
    events = [json.loads(line) for line in lines]
    part_view = next(e for e in events if e.get("route") == "part")
    assert part_view["event"] == "request" and part_view["status"] == 200 and part_view["user"] == "qa"
    assert part_view["tenant"] == "acme" and part_view["method"] == "GET"
    assert part_view["path"] == f"/t/acme/parts/{fail}"
    assert part_view["duration_ms"] >= 0 and part_view["time"].endswith("+00:00") and part_view["request_id"]
    decision = next(e for e in events if e.get("event") == "decision")
    assert {k: decision[k] for k in ("tenant", "record_id", "part_id", "user", "kind", "recorded")} == {
        "tenant": "acme", "record_id": fail, "part_id": "SN-0001", "user": "qa", "kind": "false_alarm",
        "recorded": True}  # fmt: skip
    posted = next(e for e in events if e.get("route") == "decide")
    assert posted["status"] == 303 and posted["method"] == "POST"
    refused = next(e for e in events if e.get("path") == "/t/globex/queue")
    assert refused["status"] == 404 and refused["user"] == "operator"
    session = next(c.value for c in qa.cookies.jar if c.name == "lineqa_session")
    everything = "\n".join(lines)
    for secret in (session, token, PASSWORD):
        assert secret not in everything
