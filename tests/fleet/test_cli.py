"""The hub admin's and the plant admin's commands, as typed: a plant added (its enrolment file owner-only, never
overwritten), listed and revoked; a tenant's data policy set with its audit trail; what a tenant's plants get
now; a plant home joins one hub as one plant."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from lineqa.cli import main
from tests.helpers.fleet import MODEL


def lineqa(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


def test_the_hub_admin_adds_plants_sets_policies_and_sees_bundles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub, plant = str(tmp_path / "hub"), str(tmp_path / "plant")
    lineqa(capsys, "admin", "--home", hub, "pki", "init", "--host", "localhost")
    lineqa(capsys, "admin", "--home", hub, "tenant", "add", "acme")
    lineqa(capsys, "models", "--repo", f"{hub}/models", "add", "acme.metal", str(MODEL))
    shown = json.loads(lineqa(capsys, "hub", "--home", hub, "bundle", "show", "acme"))
    assert shown["number"] == 1 and shown["signed"] is False  # a 'show' signs nothing: a plant asking does
    assert [m["name"] for m in shown["content"]["models"]] == ["acme.metal"]

    out = tmp_path / "press-shop.enrolment"
    said = lineqa(capsys, "hub", "--home", hub, "plant", "add", "press-shop", "--tenant", "acme", "--hub",
                  "localhost:50061", "--out", str(out), "--by", "hub-admin")  # fmt: skip
    assert "carry it like a password" in said and stat.S_IMODE(out.stat().st_mode) == 0o600
    enrolment = json.loads(out.read_text())
    assert enrolment["plant"] == "press-shop" and "PRIVATE KEY" in enrolment["key_pem"]
    assert main(["hub", "--home", hub, "plant", "add", "other", "--tenant", "acme", "--hub", "h:1", "--out",
                 str(out)]) == 2  # fmt: skip
    assert "exists already" in capsys.readouterr().err and json.loads(out.read_text()) == enrolment
    assert main(["hub", "--home", hub, "plant", "add", "x", "--tenant", "nobody", "--hub", "h:1", "--out",
                 str(tmp_path / "x")]) == 2  # fmt: skip
    assert "no tenant 'nobody'" in capsys.readouterr().err

    lineqa(capsys, "plant", "--home", plant, "join", str(out))
    assert stat.S_IMODE((tmp_path / "plant" / "plant" / "plant.key").stat().st_mode) == 0o600
    status = json.loads(lineqa(capsys, "plant", "--home", plant, "status", "--json"))
    assert status == {"hub": "localhost:50061", "plant": "press-shop", "tenant": "acme", "bundle": None,
                      "models": {}, "recipes": {}, "sent": {"parts": 0, "decisions": 0}}  # fmt: skip
    lineqa(capsys, "admin", "--home", hub, "tenant", "add", "globex")
    other = tmp_path / "hinge.enrolment"
    lineqa(capsys, "hub", "--home", hub, "plant", "add", "hinge-works", "--tenant", "globex", "--hub", "h:1",
           "--out", str(other))  # fmt: skip
    assert main(["plant", "--home", plant, "join", str(other)]) == 2
    assert "a plant home joins one hub as one plant" in capsys.readouterr().err

    lineqa(capsys, "hub", "--home", hub, "policy", "set", "acme", "--decisions", "--images", "fail,review",
           "--reason", "8D #112", "--by", "quality-lead")  # fmt: skip
    policy = lineqa(capsys, "hub", "--home", hub, "policy", "show", "acme")
    assert "policy 1: no flagged parts, QA decisions, images of FAIL, REVIEW, into dataset plant-parts" in policy
    assert "by quality-lead" in policy and "(8D #112)" in policy
    assert main(["hub", "--home", hub, "policy", "set", "acme", "--images", "PASSED", "--reason", "x"]) == 2
    assert "not PASSED" in capsys.readouterr().err

    lineqa(capsys, "hub", "--home", hub, "plant", "revoke", "press-shop")
    listed = lineqa(capsys, "hub", "--home", hub, "plant", "list").splitlines()
    assert len(listed) == 2  # the plant refused for its --out was not registered either
    assert listed[0].startswith("press-shop\tacme\trevoked") and listed[1].startswith("hinge-works\tglobex\tactive")
