"""Decisions close the loop: confirmed and corrected defects become labels and false alarms background
images in the tenant's working dataset, ready for the next snapshot; every decision is in the append-only
audit trail with who, when, old, new and why; the gateway's record and its original verdict never change.
On SQLite and on the loopback PostgreSQL."""

from __future__ import annotations

import inspect as pyinspect
import json

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from lineqa.content_store import ContentStore
from lineqa.datasets.catalog import Catalog
from lineqa.datasets.model import Annotation, Box
from lineqa.review import audit
from lineqa.review.schema import APPEND_ONLY
from lineqa.serving.schema import inspections
from tests.review.conftest import Site, csrf_of


def decide(site: Site, client_name: str, part: str, kind: str, boxes: str = "", reason: str = "") -> str:
    client = site.client(client_name)
    token = csrf_of(client.get(f"/t/acme/parts/{part}").text)
    form = {"kind": kind, "boxes": boxes, "reason": reason, "csrf_token": token, "then": "stay"}
    response = client.post(f"/t/acme/parts/{part}/decisions", data=form)
    assert response.status_code == 303, response.text
    return response.headers["location"]


def test_decisions_become_labelled_samples_and_audit_entries(site: Site) -> None:
    engine = site.app.state.services.engine
    fail, review, fail2, passed = site.parts["acme"]
    with engine.connect() as conn:
        before = conn.execute(select(inspections).order_by(inspections.c.record_id)).all()
    decide(site, "qa", fail, "confirm", reason="clear open")
    decide(site, "qa", review, "false_alarm", reason="dust")
    corrected = '[{"class": "short", "box": [10, 12, 50, 60]}, {"class": "open", "box": [5000, 5, 5200, 80]}]'
    with pytest.raises(AssertionError):  # a box entirely outside the 320 px image is refused
        decide(site, "qa", fail2, "correct", corrected)
    decide(site, "admin", fail2, "correct", '[{"class": "short", "box": [10, 12, 50, 60.5]}]', "was a short")
    decide(site, "qa", passed, "confirm")  # a sampled PASS part without an image: recorded, no sample

    catalog = Catalog(engine, ContentStore(site.home / "images"), "acme")
    samples = {s.name: s for s in catalog.working_samples("reviewed")}
    assert set(samples) == {f"parts/{fail}.jpg", f"parts/{review}.jpg", f"parts/{fail2}.jpg"}
    assert samples[f"parts/{fail}.jpg"].boxes == (Box("open", 40, 50, 120, 110),)
    assert (
        samples[f"parts/{review}.jpg"].annotation is Annotation.BACKGROUND and not samples[f"parts/{review}.jpg"].boxes
    )
    assert samples[f"parts/{fail2}.jpg"].boxes == (Box("short", 10, 12, 50, 60.5),)
    assert catalog.sources("reviewed")[f"parts/{fail}.jpg"] == f"review:{fail}"
    version = catalog.snapshot("reviewed", "after review")
    assert version.images == 3

    entries = audit.entries(engine, "acme")
    assert [(e.actor, e.object, e.new["decision"]) for e in reversed(entries)] == [
        ("qa", f"part:{fail}", "confirm"), ("qa", f"part:{review}", "false_alarm"),
        ("admin", f"part:{fail2}", "correct"), ("qa", f"part:{passed}", "confirm"),
    ]  # fmt: skip
    corrected_entry = entries[1]
    assert corrected_entry.old == {
        "verdict": "FAIL",
        "labels": [
            {"class": "open", "box": [20.0, 20.0, 60.0, 70.0]},
            {"class": "copper", "box": [200.0, 200.0, 260.0, 250.0]},
        ],
    }
    assert corrected_entry.new["labels"] == [{"class": "short", "box": [10.0, 12.0, 50.0, 60.5]}]
    assert corrected_entry.reason == "was a short" and corrected_entry.at.tzinfo is not None
    assert entries[0].new["sample"] is None  # no image was kept of the PASS part

    with engine.connect() as conn:  # the gateway's records, original verdicts included, are untouched
        assert conn.execute(select(inspections).order_by(inspections.c.record_id)).all() == before


def test_a_second_decision_is_appended_and_replaces_the_sample(site: Site) -> None:
    engine = site.app.state.services.engine
    fail = site.parts["acme"][0]
    decide(site, "qa", fail, "confirm")
    decide(site, "admin", fail, "false_alarm", reason="second look: a reflection")
    part = site.app.state.services.queue.part("acme", fail)
    assert [d.kind for d in part.decisions] == ["confirm", "false_alarm"] and part.row.decision == "false_alarm"
    latest = audit.entries(engine, "acme", obj=f"part:{fail}")[0]
    assert latest.old["decision"] == "confirm" and latest.old["labels"] == [
        {"class": "open", "box": [40, 50, 120, 110]}
    ]
    sample = {
        s.name: s for s in Catalog(engine, ContentStore(site.home / "images"), "acme").working_samples("reviewed")
    }
    assert sample[f"parts/{fail}.jpg"].annotation is Annotation.BACKGROUND
    page = site.client("operator").get(f"/t/acme/parts/{fail}").text
    assert "a reflection" in page and "False alarm" in page


def test_the_queue_filters_and_hides_decided_parts(site: Site) -> None:
    client = site.client("operator")
    fail, review, fail2, passed = site.parts["acme"]

    def listed(query: str) -> set[str]:
        page = client.get(f"/t/acme/queue?{query}")
        assert page.status_code == 200, page.text
        return {pid for pid in (fail, review, fail2, passed) if f"/parts/{pid}" in page.text}

    assert listed("") == {fail, review, fail2, passed}  # the PASS sample is 100 % in this site
    assert listed("verdict=REVIEW") == {review}
    assert listed("line=line-2") == {fail2}
    assert listed("camera=cam-1") == {fail, passed}
    assert listed("class=copper") == {fail2}
    assert listed("class=open") == {fail, fail2}
    assert listed("model=pcb:1") == {fail, review, fail2, passed} and listed("model=pcb:2") == set()
    assert listed("since=2026-03-02T08:30:00&until=2026-03-02T10:30") == {review, fail2}
    decide(site, "qa", fail, "confirm")
    assert listed("") == {review, fail2, passed}
    assert listed("status=reviewed") == {fail}
    assert fail not in listed("status=pending") and len(listed("status=all")) == 4
    assert site.client("operator").get("/t/globex/queue").status_code == 404


def test_the_part_page_shows_overlays_scores_reasons_and_trace(site: Site) -> None:
    fail2 = site.parts["acme"][2]
    page = site.client("operator").get(f"/t/acme/parts/{fail2}").text
    data = json.loads(page.split('id="editor-data">', 1)[1].split("</script>", 1)[0])
    assert [b["class"] for b in data["boxes"]] == ["open", "copper"] and data["boxes"][0]["confidence"] == 0.88
    assert data["image"] == f"/t/acme/parts/{fail2}/image" and {"open", "copper"} <= set(data["classes"])
    for shown in ("open 0.88 ≥ threshold", "SN-0003", "line-2 / cam-3", "pcb v1", "pcb-top", "0.880"):
        assert shown in page
    assert "decision-form" not in page  # an operator sees the part but cannot decide
    image = site.client("operator").get(f"/t/acme/parts/{fail2}/image")
    assert (
        image.status_code == 200 and image.headers["content-type"] == "image/jpeg" and image.content[:2] == b"\xff\xd8"
    )


@pytest.mark.parametrize("statement", ["UPDATE {table} SET tenant_id = 'x'", "DELETE FROM {table}"])
def test_the_database_refuses_to_change_decisions_and_the_audit_log(site: Site, statement: str) -> None:
    decide(site, "qa", site.parts["acme"][0], "confirm")
    engine = site.app.state.services.engine
    for table in APPEND_ONLY:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement.format(table=table)))
    assert len(audit.entries(engine, "acme")) == 1


def test_the_audit_module_offers_only_append_and_read() -> None:
    public = {
        name
        for name, value in vars(audit).items()
        if pyinspect.isfunction(value) and value.__module__ == audit.__name__ and not name.startswith("_")
    }
    assert public == {"append", "entries"}
    source = pyinspect.getsource(audit)
    assert "update(" not in source and "delete(" not in source


def test_untrusted_text_is_escaped(site: Site) -> None:
    fail = site.parts["acme"][0]
    decide(site, "qa", fail, "false_alarm", reason='<script>alert("x")</script>')
    page = site.client("qa").get(f"/t/acme/parts/{fail}").text
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    audit_page = site.client("qa").get("/t/acme/audit").text
    assert "<script>alert" not in audit_page
