"""Corrections stick: a decided part reopens with its latest decision's boxes and says whose they are; saving
them unchanged appends nothing (on an undecided part it is a confirm, not a correction); every decision shows
in the part's history with what it changed; the notice after a decision names the part, from the database,
never from the URL. On SQLite and on the loopback PostgreSQL."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from fastapi.testclient import TestClient

from lineqa.review import audit, label_diff
from tests.review.conftest import Site, csrf_of


def editor_data(html: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(html.split('id="editor-data">', 1)[1].split("</script>", 1)[0])
    return data


def post(client: TestClient, part: str, kind: str, boxes: object = None, reason: str = "", then: str = "stay") -> str:
    token = csrf_of(client.get(f"/t/acme/parts/{part}").text)
    form = {"kind": kind, "csrf_token": token, "reason": reason, "then": then,
            "boxes": json.dumps(boxes) if boxes is not None else ""}  # fmt: skip
    response = client.post(f"/t/acme/parts/{part}/decisions", data=form)
    assert response.status_code == 303, response.text
    return str(response.headers["location"])


def notice_of(html: str) -> str | None:
    found = re.search(r'<p class="notice" role="status">(.*?)</p>', html, re.S)
    return unescape(found.group(1)) if found else None


def test_a_corrected_part_reopens_with_the_correction_and_unchanged_saves_record_nothing(site: Site) -> None:
    qa = site.client("qa")
    fail = site.parts["acme"][0]
    before = editor_data(qa.get(f"/t/acme/parts/{fail}").text)
    assert before["boxes"] == [{"class": "open", "box": [40.0, 50.0, 120.0, 110.0], "confidence": 0.91,
                                "disposition": "defect"}]  # fmt: skip
    assert before["decided"] is False and str(before["source"]).startswith("the model's boxes (pcb v1)")

    corrected = [{"class": "short", "box": [42.5, 50.0, 122.5, 110.0]}, {"class": "spur", "box": [200, 10, 230, 40]}]
    location = post(qa, fail, "correct", corrected, "reclassed, a spur added")
    page = qa.get(location).text
    assert notice_of(page) == "Correction recorded for part SN-0001 by qa."
    data = editor_data(page)
    assert [(b["class"], b["box"]) for b in data["boxes"]] == [  # type: ignore[attr-defined]
        ("short", [42.5, 50.0, 122.5, 110.0]), ("spur", [200.0, 10.0, 230.0, 40.0])]  # fmt: skip
    assert data["decided"] is True and "qa's correction of" in str(data["source"])

    decisions_before = len(site.app.state.services.queue.decisions("acme", fail))
    entries_before = len(audit.entries(site.app.state.services.engine, "acme"))
    kept = post(site.client("admin"), fail, "correct", list(reversed(corrected)))  # the same boxes, another order
    assert "kept=" in kept and "done=" not in kept
    assert len(site.app.state.services.queue.decisions("acme", fail)) == decisions_before
    assert len(audit.entries(site.app.state.services.engine, "acme")) == entries_before
    said = notice_of(qa.get(kept).text)
    assert said is not None and said.startswith("No box changed on part SN-0001: qa's correction of ")
    assert said.endswith("stays in force; nothing was recorded.")

    review = site.parts["acme"][1]  # undecided: its model boxes saved unchanged are a confirm
    confirmed = post(qa, review, "correct", [{"class": "short", "box": [150.0, 60.0, 210.0, 130.0]}])
    assert notice_of(qa.get(confirmed).text) == "Confirm recorded for part SN-0002 by qa."
    assert [d.kind for d in site.app.state.services.queue.decisions("acme", review)] == ["confirm"]


def test_every_decision_shows_in_the_history_with_what_it_changed(site: Site) -> None:
    qa = site.client("qa")
    fail = site.parts["acme"][0]
    post(qa, fail, "correct", [{"class": "short", "box": [50, 60, 130, 120]}, {"class": "spur", "box": [5, 5, 25, 25]}],
         "moved, reclassed, a spur")  # fmt: skip
    post(site.client("admin"), fail, "false_alarm", reason="a reflection after all")
    page = qa.get(f"/t/acme/parts/{fail}").text
    history = unescape(page.split('id="history">', 1)[1].split("</ol>", 1)[0])
    items = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", item)).strip() for item in history.split("</li></ul></li>")[:2]]
    assert items[0].startswith("admin: False alarm at") and "(was Correction)" in items[0]
    assert "- short [50, 60, 130, 120]" in items[0] and "- spur [5, 5, 25, 25]" in items[0]
    assert items[1].startswith("qa: Correction at") and "(was the model's FAIL)" in items[1]
    assert "~ open → short [40, 50, 120, 110] → [50, 60, 130, 120]" in items[1] and "+ spur [5, 5, 25, 25]" in items[1]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ([], [], [("=", "no boxes before or after")]),
        ([("open", [1, 1, 9, 9])], [("open", [1, 1, 9, 9.004])], [("=", "1 box unchanged")]),
        ([("open", [1, 1, 9, 9])], [("short", [1, 1, 9, 9])], [("~", "open → short")]),
        ([("open", [0, 0, 10, 10])], [("open", [2, 0, 12, 10])], [("~", "open [0, 0, 10, 10] → [2, 0, 12, 10]")]),
        ([("open", [0, 0, 10, 10])], [("open", [50, 50, 60, 60])],
         [("-", "open [0, 0, 10, 10]"), ("+", "open [50, 50, 60, 60]")]),
        ([("a", [0, 0, 10, 10]), ("b", [20, 0, 30, 10])], [("b", [20, 0, 30, 10]), ("c", [1, 0, 11, 10])],
         [("~", "a → c [0, 0, 10, 10] → [1, 0, 11, 10]"), ("=", "1 box unchanged")]),
    ],
)  # fmt: skip
def test_label_diff(old: list[tuple[str, list[float]]], new: list[tuple[str, list[float]]],
                    expected: list[tuple[str, str]]) -> None:  # fmt: skip
    def labels(boxes: list[tuple[str, list[float]]]) -> list[dict[str, object]]:
        return [{"class": c, "box": b} for c, b in boxes]

    assert [(c.sign, c.text) for c in label_diff.diff(labels(old), labels(new))] == expected


def test_notices_come_from_the_database_never_from_the_url(site: Site) -> None:
    qa = site.client("qa")
    fail = site.parts["acme"][0]
    location = post(qa, fail, "confirm", then="next")
    decision_id = int(re.search(r"done=(\d+)", location).group(1))  # type: ignore[union-attr]
    assert notice_of(qa.get(location).text) == "Confirm recorded for part SN-0001 by qa."
    for query in ("done=<b>pwned</b>", "done=Decision+recorded+for+nothing", "kept=-1", f"done={decision_id + 99}"):
        for path in (f"/t/acme/parts/{fail}", "/t/acme/queue"):
            page = qa.get(f"{path}?{query}").text
            assert notice_of(page) is None and "pwned" not in page and "for nothing" not in page, (path, query)
    assert notice_of(qa.get(f"/t/acme/queue?done={decision_id}").text) == "Confirm recorded for part SN-0001 by qa."
    globex = site.client("globex-admin")  # another tenant's decision id says nothing in this tenant
    other = site.parts["globex"][0]
    token = csrf_of(globex.get(f"/t/globex/parts/{other}").text)
    globex.post(f"/t/globex/parts/{other}/decisions", data={"kind": "confirm", "csrf_token": token})
    other_id = decision_id + 1
    assert notice_of(qa.get(f"/t/acme/queue?done={other_id}").text) is None
    assert notice_of(globex.get(f"/t/globex/queue?done={other_id}").text) is not None
