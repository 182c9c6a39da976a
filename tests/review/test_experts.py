"""Invited experts, over HTTP with the app's test client, on SQLite and on PostgreSQL with the app logged in as
the application role (row-level security): an expert of acme sees exactly what acme granted (parts of a line, a
dataset) and nothing of globex; everything outside the grant, an expired grant and a revoked one are 404, the
revoked one from the very next request of a signed-in session; every request of an expert is in acme's audit
trail with the expert's id. A ``run:NAME`` grant opens that training run of acme's and nothing else (not another
run of acme, nothing of globex's); a pool's run cannot be granted. The ``lineqa review expert`` commands invite,
list and revoke."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

from lineqa.db import sqlite_url
from lineqa.review import audit
from lineqa.review.auth import Role, UserStore
from lineqa.review.database import open_review_database
from lineqa.review.errors import BadInputError, NotFoundError
from lineqa.review.experts import ExpertGrants, ScopeKind
from lineqa.review.schema import expert_grants
from tests.review.conftest import PASSWORD, Site, csrf_of, site_on
from tests.review.test_cli import lineqa

NEXT_YEAR = datetime.now(timezone.utc) + timedelta(days=365)


class Setup:
    def __init__(self, site: Site, platform: Engine) -> None:
        self.site = site
        self.platform = platform  # the owner's engine: sees every row, stands in for time passing
        self.grants: ExpertGrants = site.app.state.services.experts  # the app's: it knows the training runs
        admin = site.client("admin")
        first = site.parts["acme"][0]
        page = admin.get(f"/t/acme/parts/{first}")
        assert admin.post(f"/t/acme/parts/{first}/decisions",
                          data={"kind": "confirm", "csrf_token": csrf_of(page.text)}).status_code == 303  # fmt: skip
        assert (
            admin.post("/t/acme/datasets/reviewed/snapshot", data={"csrf_token": csrf_of(page.text)}).status_code == 303
        )
        self.admin = admin

    def expert(self, name: str, role: Role, *scope: tuple[ScopeKind, str], tenant: str = "acme") -> int:
        """A new user invited into ``tenant`` with ``scope``; their user id."""
        self.site.users.add_user(name, PASSWORD)
        self.grants.invite(tenant, name, role, list(scope), NEXT_YEAR, "admin")
        return self.site.users.user_id(name)


@pytest.fixture(scope="module", params=["sqlite", "postgresql-application-role"])
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with site_on(request.param, tmp_path_factory.mktemp("experts")) as (site, platform):
        yield Setup(site, platform)


def test_an_expert_sees_exactly_what_was_granted_and_nothing_of_another_tenant(setup: Setup) -> None:
    acme, globex = setup.site.parts["acme"], setup.site.parts["globex"]  # acme: line-1, line-1, line-2, line-1
    setup.expert("uni-researcher", Role.QA, (ScopeKind.LINE, "line-2"), (ScopeKind.DATASET, "reviewed"))
    client = setup.site.client("uni-researcher")
    home = client.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/t/acme/queue"

    queue = client.get("/t/acme/queue?status=all")
    assert queue.status_code == 200
    assert [p for p in acme if p in queue.text] == [acme[2]]  # the line-2 part only
    assert "line-1" not in queue.text  # not even the other line's name in the filter's choices
    assert "Dashboard" not in queue.text and "Audit trail" not in queue.text and "Users" not in queue.text
    part = client.get(f"/t/acme/parts/{acme[2]}")
    assert part.status_code == 200 and not any(p in part.text for p in acme if p != acme[2])
    assert client.get(f"/t/acme/parts/{acme[2]}/image").status_code == 200
    token = csrf_of(part.text)
    decided = client.post(f"/t/acme/parts/{acme[2]}/decisions", data={"kind": "false_alarm", "csrf_token": token})
    assert decided.status_code == 303, decided.text
    assert client.get("/t/acme/datasets").status_code == 200
    assert client.get("/t/acme/datasets/reviewed/v/1").status_code == 200

    outside = [
        f"/t/acme/parts/{acme[0]}", f"/t/acme/parts/{acme[0]}/image", f"/t/acme/parts/{acme[3]}",
        "/t/acme/dashboard", "/t/acme/export/pareto.csv", "/t/acme/audit", "/t/acme/users", "/t/acme/experts",
        "/t/acme/datasets/other/v/1", "/t/globex/queue", f"/t/globex/parts/{globex[0]}",
        f"/t/globex/parts/{globex[0]}/image", "/t/globex/datasets", "/t/globex/datasets/reviewed/v/1",
    ]  # fmt: skip
    assert {path: client.get(path).status_code for path in outside} == {path: 404 for path in outside}
    refused = client.post(f"/t/acme/parts/{acme[0]}/decisions", data={"kind": "confirm", "csrf_token": token})
    assert refused.status_code == 404
    assert client.post("/t/globex/datasets/reviewed/snapshot", data={"csrf_token": token}).status_code == 404


def test_a_line_grant_opens_no_dataset_and_a_viewer_cannot_decide(setup: Setup) -> None:
    acme = setup.site.parts["acme"]
    setup.expert("consultant", Role.OPERATOR, (ScopeKind.LINE, "line-1"))
    client = setup.site.client("consultant")
    queue = client.get("/t/acme/queue?status=all")
    assert sorted(p for p in acme if p in queue.text) == sorted([acme[0], acme[1], acme[3]])
    assert client.get("/t/acme/datasets").status_code == 404
    assert client.get("/t/acme/datasets/reviewed/v/1").status_code == 404  # exists, but not granted
    page = client.get(f"/t/acme/parts/{acme[1]}")
    assert page.status_code == 200 and f"/t/acme/parts/{acme[1]}/decisions" not in page.text  # no decision bar
    token = csrf_of(client.get("/t/acme/queue").text)
    decided = client.post(f"/t/acme/parts/{acme[1]}/decisions", data={"kind": "confirm", "csrf_token": token})
    assert decided.status_code == 404  # no grant with a role that decides


def test_an_expired_grant_is_404(setup: Setup) -> None:
    acme = setup.site.parts["acme"]
    user_id = setup.expert("visiting-prof", Role.QA, (ScopeKind.QUEUE, "*"))
    client = setup.site.client("visiting-prof")
    assert client.get(f"/t/acme/parts/{acme[0]}").status_code == 200
    assert client.get("/t/acme/dashboard").status_code == 200  # the whole queue: the tenant's figures too
    with setup.platform.begin() as conn:  # time passes: the grant's expiry is behind us
        conn.execute(update(expert_grants).where(expert_grants.c.user_id == user_id)
                     .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))  # fmt: skip
    assert client.get(f"/t/acme/parts/{acme[0]}").status_code == 404
    assert client.get("/t/acme/queue").status_code == 404
    assert "no role in any tenant" in client.get("/").text
    assert [g.status(datetime.now(timezone.utc)).value for g in setup.grants.grants("acme")
            if g.username == "visiting-prof"] == ["expired"]  # fmt: skip


def test_a_revoked_grant_is_404_on_the_next_request_and_every_access_is_audited(setup: Setup) -> None:
    acme = setup.site.parts["acme"]
    user_id = setup.expert("auditor-x", Role.LABELLER, (ScopeKind.RECIPE, "pcb-top"), (ScopeKind.DATASET, "reviewed"))
    client = setup.site.client("auditor-x")
    assert client.get(f"/t/acme/parts/{acme[2]}").status_code == 200
    assert client.get("/t/acme/datasets/reviewed/v/1").status_code == 200
    assert client.get("/t/acme/audit").status_code == 404

    experts_page = setup.admin.get("/t/acme/experts")
    assert experts_page.status_code == 200 and "auditor-x" in experts_page.text
    revoked = setup.admin.post("/t/acme/experts", data={"action": "revoke", "username": "auditor-x",
                                                        "csrf_token": csrf_of(experts_page.text)})  # fmt: skip
    assert revoked.status_code == 303, revoked.text
    assert client.get(f"/t/acme/parts/{acme[2]}").status_code == 404  # the same session, the very next request
    assert client.get("/t/acme/datasets/reviewed/v/1").status_code == 404
    with pytest.raises(NotFoundError):
        setup.grants.revoke("acme", "admin", username="auditor-x")  # nothing live is left to revoke

    trail = audit.entries(setup.site.app.state.services.engine, "acme")
    mine = [e for e in trail if e.actor == "auditor-x"]
    assert [(e.action, e.object, e.new["status"]) for e in reversed(mine)] == [
        (audit.AuditAction.EXPERT_ACCESS, f"GET /t/acme/parts/{acme[2]}", 200),
        (audit.AuditAction.EXPERT_ACCESS, "GET /t/acme/datasets/reviewed/v/1", 200),
        (audit.AuditAction.EXPERT_ACCESS, "GET /t/acme/audit", 404),
    ]  # after the revocation the user is nobody's expert: a stranger's requests are in no tenant's trail
    assert all(e.new["user_id"] == user_id and e.new["grants"] for e in mine)
    changes = [(e.action, e.actor) for e in trail if e.object == "expert:auditor-x"]
    assert changes == [(audit.AuditAction.EXPERT_REVOKE, "admin"), (audit.AuditAction.EXPERT_INVITE, "admin")]
    assert not [e for e in audit.entries(setup.site.app.state.services.engine, "globex") if e.actor == "auditor-x"]


def test_a_decision_of_an_expert_is_in_the_trail_with_their_id(setup: Setup) -> None:
    acme = setup.site.parts["acme"]
    user_id = setup.expert("qa-consultant", Role.QA, (ScopeKind.LINE, "line-1"))
    client = setup.site.client("qa-consultant")
    page = client.get(f"/t/acme/parts/{acme[1]}")
    client.post(f"/t/acme/parts/{acme[1]}/decisions", data={"kind": "confirm", "csrf_token": csrf_of(page.text)})
    trail = [e for e in audit.entries(setup.site.app.state.services.engine, "acme") if e.actor == "qa-consultant"]
    kinds = [(e.action, e.object) for e in reversed(trail)]
    assert (audit.AuditAction.DECISION, f"part:{acme[1]}") in kinds
    assert (audit.AuditAction.EXPERT_ACCESS, f"POST /t/acme/parts/{acme[1]}/decisions") in kinds
    assert all(e.new["user_id"] == user_id for e in trail if e.action is audit.AuditAction.EXPERT_ACCESS)


def test_invitations_are_checked(setup: Setup) -> None:
    setup.site.users.add_user("someone", PASSWORD)
    for role, scope, expires, message in (
        (Role.ADMIN, [(ScopeKind.QUEUE, "*")], NEXT_YEAR, "expert's role"),
        (Role.QA, [], NEXT_YEAR, "name what"),
        (Role.QA, [(ScopeKind.QUEUE, "*")], datetime.now(timezone.utc) - timedelta(days=1), "future"),
    ):
        with pytest.raises(BadInputError, match=message):
            setup.grants.invite("acme", "someone", role, scope, expires, "admin")
    with pytest.raises(BadInputError, match="holds roles"):
        setup.grants.invite("acme", "qa", Role.QA, [(ScopeKind.QUEUE, "*")], NEXT_YEAR, "admin")


def test_experts_from_the_command_line(tmp_path: Path) -> None:
    invited = lineqa(tmp_path, "expert", "invite", "carol", "acme", "--role", "qa", "--scope", "line:press-3",
                     "--scope", "dataset:reviewed", "--expires", "2099-12-31", "--new-user", "--password-stdin",
                     stdin="a long enough password\n")  # fmt: skip
    assert invited.returncode == 0, invited.stderr
    grants = json.loads(invited.stdout)
    assert sorted(g["scope"] for g in grants) == ["dataset:reviewed", "line:press-3"]
    assert all(g["expires_at"] == "2100-01-01T00:00:00+00:00" and g["user"] == "carol" for g in grants)
    listed = json.loads(lineqa(tmp_path, "expert", "list", "acme").stdout)
    assert {g["status"] for g in listed} == {"active"}
    one = lineqa(tmp_path, "expert", "revoke", "acme", "--grant", str(grants[0]["grant"]))
    assert one.returncode == 0, one.stderr
    statuses = {g["grant"]: g["status"] for g in json.loads(lineqa(tmp_path, "expert", "list", "acme").stdout)}
    assert statuses == {grants[0]["grant"]: "revoked", grants[1]["grant"]: "active"}
    assert lineqa(tmp_path, "expert", "revoke", "acme", "--user", "carol").returncode == 0
    again = lineqa(tmp_path, "expert", "revoke", "acme", "--user", "carol")
    assert again.returncode == 2 and "no live grant" in again.stderr
    assert lineqa(tmp_path, "expert", "list", "globex").stdout.strip() == "[]"
    bad = lineqa(tmp_path, "expert", "invite", "carol", "acme", "--role", "qa", "--scope", "site:x", "--expires",
                 "2099-01-01")  # fmt: skip
    assert bad.returncode == 2 and "expected queue" in bad.stderr
    past = lineqa(tmp_path, "expert", "invite", "dave", "acme", "--role", "qa", "--scope", "queue", "--expires",
                  "2001-01-01", "--new-user", "--password-stdin", stdin="a long enough password\n")  # fmt: skip
    assert past.returncode == 2 and "future" in past.stderr
    engine = open_review_database(sqlite_url(tmp_path / "lineqa.db"))
    with pytest.raises(NotFoundError):
        UserStore(engine).user_id("dave")  # a refused invitation makes no account
    engine.dispose()


def test_an_admin_invites_on_the_experts_page_and_bad_input_is_named(setup: Setup) -> None:
    setup.site.users.add_user("postdoc", PASSWORD)
    token = csrf_of(setup.admin.get("/t/acme/experts").text)
    form = {"action": "invite", "username": "postdoc", "role": "labeller", "expires": "2099-06-30",
            "csrf_token": token}  # fmt: skip
    bad = setup.admin.post("/t/acme/experts", data={**form, "scope": "plant:all"})
    assert bad.status_code == 400 and "expected queue, line:ID, recipe:ID, dataset:NAME or run:NAME" in bad.text
    assert setup.admin.post("/t/acme/experts", data={**form, "scope": "dataset:reviewed"}).status_code == 303
    listed = setup.admin.get("/t/acme/experts").text
    assert "postdoc" in listed and "dataset: reviewed" in listed and "2099-07-01 00:00:00 UTC" in listed
    client = setup.site.client("postdoc")
    home = client.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/t/acme/datasets"
    assert client.get("/t/acme/queue").status_code == 404


def test_a_run_grant_opens_that_run_only_until_revoked(setup: Setup) -> None:
    setup.expert("ml-reviewer", Role.QA, (ScopeKind.RUN, "a"))  # acme's runs: a and b; globex's: g
    client = setup.site.client("ml-reviewer")
    home = client.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/t/acme/runs"
    listed = client.get("/t/acme/runs")
    assert listed.status_code == 200 and "/t/acme/runs/a" in listed.text and "/t/acme/runs/b" not in listed.text
    assert [r["run"] for r in client.get("/t/acme/runs?format=json").json()] == ["a"]
    page = client.get("/t/acme/runs/a")
    assert page.status_code == 200 and "acme/reviewed@1" in page.text and "/eval/test/pr_curves.png" in page.text
    shown = client.get("/t/acme/runs/a?format=json").json()
    assert shown["record"]["dataset"]["ref"] == "acme/reviewed@1" and "ultralytics_settings" not in shown["record"]
    assert shown["evaluations"][0]["metrics"]["mAP50"] == 0.79 and shown["parity"]["ok"] is True
    picture = client.get("/t/acme/runs/a/eval/test/confusion_matrix.png")
    assert picture.status_code == 200 and picture.content[:4] == b"\x89PNG"

    outside = ["/t/acme/runs/b", "/t/acme/runs/b/eval/test/pr_curves.png", "/t/acme/runs/g", "/t/acme/runs/pool-base",
               "/t/acme/runs/a/eval/test/metrics.json", "/t/acme/runs/a/eval/..%2F..%2Fb/pr_curves.png",
               "/t/acme/queue", "/t/acme/datasets", "/t/globex/runs", "/t/globex/runs/g",
               "/t/globex/runs/g/eval/test/pr_curves.png"]  # fmt: skip
    assert {path: client.get(path).status_code for path in outside} == {path: 404 for path in outside}

    setup.grants.revoke("acme", "admin", username="ml-reviewer")
    assert client.get("/t/acme/runs/a").status_code == 404
    assert client.get("/t/acme/runs/a/eval/test/pr_curves.png").status_code == 404
    trail = [e for e in audit.entries(setup.site.app.state.services.engine, "acme") if e.actor == "ml-reviewer"]
    assert (audit.AuditAction.EXPERT_ACCESS, "GET /t/acme/runs/a", 200) in [(e.action, e.object, e.new["status"])
                                                                         for e in trail]  # fmt: skip


def test_members_see_their_tenants_runs_and_run_grants_are_checked(setup: Setup) -> None:
    qa = setup.site.client("qa")
    assert [r["run"] for r in qa.get("/t/acme/runs?format=json").json()] == ["b", "a"]  # newest first
    assert qa.get("/t/acme/runs/g").status_code == 404 and qa.get("/t/acme/runs/pool-base").status_code == 404
    assert setup.site.client("operator").get("/t/acme/runs").status_code == 403  # qa and admin only

    setup.site.users.add_user("run-guest", PASSWORD)
    for role, name, message in (
        (Role.QA, "pool-base", "belongs to no single tenant"),
        (Role.QA, "g", "acme has no training run 'g'"),  # globex's: said as of a missing one
        (Role.QA, "nope", "acme has no training run 'nope'"),
        (Role.LABELLER, "a", "needs --role qa"),
    ):
        with pytest.raises(BadInputError, match=message):
            setup.grants.invite("acme", "run-guest", role, [(ScopeKind.RUN, name)], NEXT_YEAR, "admin")
    token = csrf_of(setup.admin.get("/t/acme/experts").text)
    refused = setup.admin.post("/t/acme/experts", data={"action": "invite", "username": "run-guest", "role": "qa",
                                                        "scope": "run:pool-base", "expires": "2099-06-30",
                                                        "csrf_token": token})  # fmt: skip
    assert refused.status_code == 400 and "no single tenant" in refused.text
