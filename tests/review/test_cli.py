"""``lineqa review``: users and roles from the command line (the first admin comes from here), and a serve
that refuses to start without TLS unless plain HTTP is asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lineqa.db import sqlite_url
from lineqa.review.auth import UserStore
from lineqa.review.database import open_review_database


def lineqa(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lineqa.cli", "review", "--home", str(home), *args], input=stdin,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_users_and_roles_from_the_command_line(tmp_path: Path) -> None:
    added = lineqa(tmp_path, "user", "add", "alice", "--role", "acme:admin", "--role", "globex:qa",
                   "--password-stdin", stdin="a long enough password\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "a long enough password" not in added.stdout + added.stderr
    assert lineqa(tmp_path, "user", "grant", "alice", "acme", "labeller").returncode == 0
    assert "no change" in lineqa(tmp_path, "user", "grant", "alice", "acme", "labeller").stdout
    listed = json.loads(lineqa(tmp_path, "user", "list", "acme").stdout)
    assert listed == [{"user": "alice", "roles": ["admin", "labeller"], "disabled": False}]
    engine = open_review_database(sqlite_url(tmp_path / "lineqa.db"))
    assert UserStore(engine).authenticate("alice", "a long enough password") is not None
    assert lineqa(tmp_path, "user", "disable", "alice").returncode == 0
    assert UserStore(engine).authenticate("alice", "a long enough password") is None
    engine.dispose()

    short = lineqa(tmp_path, "user", "add", "bob", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 10 characters" in short.stderr
    bad_role = lineqa(tmp_path, "user", "add", "bob", "--role", "acme:boss", "--password-stdin", stdin="x" * 12)
    assert bad_role.returncode == 2 and "TENANT:ROLE" in bad_role.stderr
    unknown = lineqa(tmp_path, "user", "grant", "nobody", "acme", "qa")
    assert unknown.returncode == 2 and "no user 'nobody'" in unknown.stderr


def test_serve_needs_tls_or_an_explicit_insecure_http(tmp_path: Path) -> None:
    refused = lineqa(tmp_path, "serve", "--port", "1")
    assert refused.returncode == 2 and "--insecure-http" in refused.stderr
    half = lineqa(tmp_path, "serve", "--tls-cert", str(tmp_path / "c.pem"))
    assert half.returncode == 2 and "both --tls-cert and --tls-key" in half.stderr
