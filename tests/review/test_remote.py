"""``lineqa review remote`` against a real review app (uvicorn over TLS on loopback, certificate of the plant CA):
an expert of acme with a line grant lists exactly that line's parts, reads one, downloads its image and
decides on it (qa), and gets "not found (or not yours to see)" for another line's part and for everything of
globex; a labeller's grant does not decide; each request is an entry of acme's audit trail; after ``lineqa
review expert revoke`` the very next command is refused, and so is one under an expired grant. A member works
the same way (the whole queue, a dashboard table as CSV); a session ended on the app says to log in again. A
``run:NAME`` grant shows that training run of acme's (``runs``, ``run``) and no other; a pool's run is refused
at invite. The main path runs the real ``lineqa review remote`` commands in subprocesses; the rest drives the client."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import Engine, update

from lineqa.review import audit
from lineqa.review.auth import Role
from lineqa.review.experts import ExpertGrants, ScopeKind
from lineqa.review.remote import NOT_FOUND, RemoteError, ReviewClient, SessionFile
from lineqa.review.schema import expert_grants
from lineqa.serving.embedded_triton import free_port
from lineqa.serving.pki import PlantPki
from tests.review.conftest import PASSWORD, Site, csrf_of, site_on

NEXT_YEAR = datetime.now(timezone.utc) + timedelta(days=365)


@dataclass
class Remote:
    site: Site
    platform: Engine
    url: str
    ca: Path
    grants: ExpertGrants

    def expert(self, name: str, role: Role, *scope: tuple[ScopeKind, str], tenant: str = "acme") -> int:
        self.site.users.add_user(name, PASSWORD)
        self.grants.invite(tenant, name, role, list(scope), NEXT_YEAR, "admin")
        return self.site.users.user_id(name)

    def client(self, user: str) -> ReviewClient:
        client = ReviewClient(self.url, str(self.ca))
        client.login(user, PASSWORD, str(self.ca))
        return client

    def trail(self, tenant: str, actor: str) -> list[audit.AuditEntry]:
        """The expert's requests in ``tenant``'s audit trail, oldest first."""
        return [e for e in reversed(audit.entries(self.site.app.state.services.engine, tenant))
                if e.actor == actor and e.action is audit.AuditAction.EXPERT_ACCESS]  # fmt: skip


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    home = tmp_path_factory.mktemp("remote")
    with site_on("sqlite", home) as (site, platform):
        admin = site.client("admin")
        first = site.parts["acme"][0]
        token = csrf_of(admin.get(f"/t/acme/parts/{first}").text)
        assert admin.post(f"/t/acme/parts/{first}/decisions", data={"kind": "confirm", "csrf_token": token}
                          ).status_code == 303  # fmt: skip
        assert admin.post("/t/acme/datasets/reviewed/snapshot", data={"csrf_token": token}).status_code == 303
        pki = PlantPki(home / "pki")
        pki.init(["localhost", "127.0.0.1"])
        port = free_port()
        config = uvicorn.Config(site.app, host="127.0.0.1", port=port, log_level="warning",
                                ssl_certfile=str(pki.server_cert), ssl_keyfile=str(pki.server_key))  # fmt: skip
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the review app did not start"
            time.sleep(0.05)
        try:
            yield Remote(site, platform, f"https://localhost:{port}", pki.ca_cert, ExpertGrants(platform))
        finally:
            server.should_exit = True
            thread.join(timeout=30)


def cli(remote: Remote, config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``lineqa review remote ARGS`` in a subprocess, with its own config folder (the session file)."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(config)}
    return subprocess.run([sys.executable, "-m", "lineqa.cli", "review", "--home", str(remote.site.home), "remote",
                           *args], input=stdin, capture_output=True, text=True, timeout=120, env=env)  # fmt: skip


def refused(result: subprocess.CompletedProcess[str], words: str) -> bool:
    return result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr


def test_an_expert_works_from_the_command_line_within_the_grant_until_revoked(remote: Remote, tmp_path: Path) -> None:
    acme, globex = remote.site.parts["acme"], remote.site.parts["globex"]  # acme: line-1, line-1, line-2, line-1
    user_id = remote.expert("remote-qa", Role.QA, (ScopeKind.LINE, "line-2"), (ScopeKind.DATASET, "reviewed"))
    login = cli(remote, tmp_path, "login", remote.url, "--user", "remote-qa", "--password-stdin", "--ca",
                str(remote.ca), stdin=PASSWORD + "\n")  # fmt: skip
    assert login.returncode == 0, login.stderr
    session_file = tmp_path / "lineqa" / "review-session.json"
    assert stat.S_IMODE(session_file.stat().st_mode) == 0o600
    assert PASSWORD not in session_file.read_text() and remote.url in json.loads(session_file.read_text())["sessions"]

    me = json.loads(cli(remote, tmp_path, "whoami").stdout)
    assert me["user"] == "remote-qa" and me["tenants"] == [{"tenant": "acme", "roles": ["qa"], "expert": True}]
    queue = cli(remote, tmp_path, "queue", "acme", "--status", "all")
    assert queue.returncode == 0, queue.stderr
    assert [json.loads(line)["record_id"] for line in queue.stdout.splitlines()] == [acme[2]]  # line-2 only
    part = json.loads(cli(remote, tmp_path, "part", "acme", acme[2]).stdout)
    assert part["record_id"] == acme[2] and part["line"] == "line-2" and part["image"]
    image = cli(remote, tmp_path, "image", "acme", acme[2], "-o", str(tmp_path / "part.jpg"))
    assert image.returncode == 0, image.stderr
    assert (tmp_path / "part.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    decided = cli(remote, tmp_path, "decide", "acme", acme[2], "false_alarm", "--reason", "solder ball, not a short")
    assert decided.returncode == 0, decided.stderr
    assert json.loads(decided.stdout) | {"decision_id": 0} == {
        "tenant": "acme", "record_id": acme[2], "decision_id": 0, "kind": "false_alarm", "recorded": True,
        "boxes": 0, "sample": f"parts/{acme[2]}.jpg"}  # fmt: skip
    assert [d["name"] for d in json.loads(cli(remote, tmp_path, "datasets", "acme").stdout)] == ["reviewed"]

    for args in (("part", "acme", acme[0]), ("image", "acme", acme[0]), ("decide", "acme", acme[0], "confirm"),
                 ("export", "acme", "pareto"), ("queue", "globex"), ("part", "globex", globex[0]),
                 ("datasets", "globex")):  # fmt: skip
        assert refused(cli(remote, tmp_path, *args), NOT_FOUND), args

    trail = remote.trail("acme", "remote-qa")
    assert [(e.object, e.new["status"]) for e in trail] == [
        ("GET /t/acme/queue", 200), (f"GET /t/acme/parts/{acme[2]}", 200), (f"GET /t/acme/parts/{acme[2]}/image", 200),
        (f"POST /t/acme/parts/{acme[2]}/decisions", 200), ("GET /t/acme/datasets", 200),
        (f"GET /t/acme/parts/{acme[0]}", 404), (f"GET /t/acme/parts/{acme[0]}/image", 404),
        (f"POST /t/acme/parts/{acme[0]}/decisions", 404), ("GET /t/acme/export/pareto.csv", 404),
    ]  # fmt: skip
    assert all(e.new["user_id"] == user_id for e in trail)
    assert not remote.trail("globex", "remote-qa")
    decision = [e for e in audit.entries(remote.site.app.state.services.engine, "acme", obj=f"part:{acme[2]}")
                if e.actor == "remote-qa"]  # fmt: skip
    assert [e.action for e in decision] == [audit.AuditAction.DECISION]

    revoked = subprocess.run([sys.executable, "-m", "lineqa.cli", "review", "--home", str(remote.site.home),
                              "expert", "revoke", "acme", "--user", "remote-qa"], capture_output=True, text=True,
                             timeout=120)  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    assert refused(cli(remote, tmp_path, "part", "acme", acme[2]), NOT_FOUND)
    assert refused(cli(remote, tmp_path, "queue", "acme"), NOT_FOUND)

    assert cli(remote, tmp_path, "logout").returncode == 0
    assert json.loads(session_file.read_text())["sessions"] == {}
    assert refused(cli(remote, tmp_path, "whoami"), "not logged in")


def test_a_labeller_expert_sees_the_line_but_cannot_decide(remote: Remote) -> None:
    acme = remote.site.parts["acme"]
    remote.expert("remote-labeller", Role.LABELLER, (ScopeKind.LINE, "line-1"))
    client = remote.client("remote-labeller")
    found = client.get_json("/t/acme/queue", {"status": "all"})
    assert sorted(p["record_id"] for p in found["parts"]) == sorted([acme[0], acme[1], acme[3]])
    assert client.get_json(f"/t/acme/parts/{acme[1]}")["line"] == "line-1"
    with pytest.raises(RemoteError, match=r"not found \(or not yours to see\)"):
        client.post_json(f"/t/acme/parts/{acme[1]}/decisions", {"kind": "confirm"})
    with pytest.raises(RemoteError, match="not yours to see"):
        client.get_json("/t/acme/datasets")  # a line grant opens no dataset
    assert [(e.object, e.new["status"]) for e in remote.trail("acme", "remote-labeller")][-2:] == [
        (f"POST /t/acme/parts/{acme[1]}/decisions", 404), ("GET /t/acme/datasets", 404)]  # fmt: skip


def test_an_expired_grant_is_refused_from_the_next_request(remote: Remote) -> None:
    acme = remote.site.parts["acme"]
    user_id = remote.expert("remote-visitor", Role.QA, (ScopeKind.QUEUE, "*"))
    client = remote.client("remote-visitor")
    assert client.get_json(f"/t/acme/parts/{acme[0]}")["record_id"] == acme[0]
    assert client.get_bytes("/t/acme/export/pareto.csv").body.startswith(b"class")  # the whole queue: figures too
    with remote.platform.begin() as conn:  # time passes: the grant's expiry is behind us
        conn.execute(update(expert_grants).where(expert_grants.c.user_id == user_id)
                     .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))  # fmt: skip
    for path in (f"/t/acme/parts/{acme[0]}", "/t/acme/queue"):
        with pytest.raises(RemoteError, match="not yours to see"):
            client.get_json(path)
    assert client.get_json("/")["tenants"] == []


def test_a_member_works_remotely_and_an_ended_session_says_to_log_in_again(remote: Remote, tmp_path: Path) -> None:
    acme = remote.site.parts["acme"]
    client = remote.client("qa")
    assert {p["record_id"] for p in client.get_json("/t/acme/queue", {"status": "all"})["parts"]} == set(acme)
    with pytest.raises(RemoteError, match="not yours to see"):
        client.get_json("/t/globex/queue")
    with pytest.raises(RemoteError, match="not allowed"):
        client.get_json("/t/acme/users")  # a member's own tenant: a route their roles do not open is 403
    with pytest.raises(RemoteError, match="the request is not valid"):
        client.post_json(f"/t/acme/parts/{acme[1]}/decisions", {"kind": "maybe"})

    sessions = SessionFile(tmp_path / "sessions.json")
    assert client.session is not None
    sessions.put(client.session)
    assert sessions.get(None) == sessions.get(remote.url + "/") == client.session
    remote.site.users.set_disabled("qa", True)  # ends the user's sessions on the app
    try:
        with pytest.raises(RemoteError, match="log in again"):
            client.get_json("/t/acme/queue")
    finally:
        remote.site.users.set_disabled("qa", False)


def test_sign_in_problems_are_said_in_words(remote: Remote) -> None:
    with pytest.raises(RemoteError, match="wrong user name or password"):
        ReviewClient(remote.url, str(remote.ca)).login("qa", "not the password", None)
    with pytest.raises(RemoteError, match=r"cannot trust .* --ca FILE"):
        ReviewClient(remote.url).login("qa", PASSWORD, None)  # the plant's CA is not the system's
    with pytest.raises(RemoteError, match="is not the review app's address"):
        ReviewClient("qa.plant:8443")


def test_a_run_grant_from_the_command_line(remote: Remote, tmp_path: Path) -> None:
    def admin(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lineqa.cli", "review", "--home", str(remote.site.home), "expert",
                               *args], capture_output=True, text=True, timeout=120)  # fmt: skip

    remote.site.users.add_user("run-expert", PASSWORD)
    pool = admin("invite", "run-expert", "acme", "--role", "qa", "--scope", "run:pool-base", "--expires", "2099-01-01")
    assert refused(pool, "belongs to no single tenant")
    invited = admin("invite", "run-expert", "acme", "--role", "qa", "--scope", "run:a", "--expires", "2099-01-01")
    assert invited.returncode == 0, invited.stderr
    assert [g["scope"] for g in json.loads(invited.stdout)] == ["run:a"]
    login = cli(remote, tmp_path, "login", remote.url, "--user", "run-expert", "--password-stdin", "--ca",
                str(remote.ca), stdin=PASSWORD + "\n")  # fmt: skip
    assert login.returncode == 0, login.stderr

    assert [r["run"] for r in json.loads(cli(remote, tmp_path, "runs", "acme").stdout)] == ["a"]
    shown = json.loads(cli(remote, tmp_path, "run", "acme", "a").stdout)
    assert shown["record"]["dataset"]["ref"] == "acme/reviewed@1"
    assert shown["evaluations"][0]["pictures"] == ["pr_curves.png", "confusion_matrix.png", "operating_curve.png"]
    for args in (("run", "acme", "b"), ("run", "acme", "g"), ("runs", "globex"), ("run", "globex", "g"),
                 ("queue", "acme")):  # fmt: skip
        assert refused(cli(remote, tmp_path, *args), NOT_FOUND), args
    assert [(e.object, e.new["status"]) for e in remote.trail("acme", "run-expert")] == [
        ("GET /t/acme/runs", 200), ("GET /t/acme/runs/a", 200), ("GET /t/acme/runs/b", 404),
        ("GET /t/acme/runs/g", 404), ("GET /t/acme/queue", 404)]  # fmt: skip

    assert admin("revoke", "acme", "--user", "run-expert").returncode == 0
    assert refused(cli(remote, tmp_path, "run", "acme", "a"), NOT_FOUND)
