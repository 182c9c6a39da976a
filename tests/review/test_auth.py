"""Sign-in, sessions and log hygiene: scrypt password hashes, session ids stored only hashed, Secure
HttpOnly SameSite=Lax cookies, expiry, disabled users, sign-out, no open redirect, and no password,
session id or CSRF token in the logs."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from lineqa.review import audit
from lineqa.review.auth import Role, SignInThrottle, UserStore, hash_password, verify_password
from lineqa.review.errors import BadInputError, TooManyAttemptsError
from lineqa.review.schema import sessions
from tests.review.conftest import PASSWORD, Site, csrf_of, login_token, sign_in


def test_password_hashes_are_salted_scrypt_and_verify() -> None:
    first, second = hash_password("a long passphrase"), hash_password("a long passphrase")
    assert first != second and first.startswith("scrypt$")
    assert verify_password("a long passphrase", first) and not verify_password("a long passphrase!", first)
    assert not verify_password("x", "md5$abc") and not verify_password("x", "garbage")


def test_sign_in_sets_a_secure_session_cookie_stored_only_hashed(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = site.client()
    token = login_token(client)
    response = client.post("/login", data={"username": "qa", "password": PASSWORD, "csrf_token": token,
                                           "next": "/t/acme/dashboard"})  # fmt: skip
    assert response.status_code == 303 and response.headers["location"] == "/t/acme/dashboard"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("lineqa_session="))
    session_id = cookie.split(";", 1)[0].split("=", 1)[1]
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=lax", "path=/"} <= flags
    with site.app.state.services.engine.connect() as conn:
        stored = conn.execute(select(sessions.c.session_sha256, sessions.c.csrf_token)).all()
    assert [s for s, _ in stored] == [hashlib.sha256(session_id.encode()).hexdigest()]
    page = client.get("/t/acme/queue")
    assert page.status_code == 200 and page.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    client.post("/login", data={"username": "qa", "password": "wrong password!", "csrf_token": login_token(client)})
    logged = caplog.text
    for secret in (PASSWORD, "wrong password!", session_id, stored[0][1], token):
        assert secret not in logged
    assert "failed sign-in for user 'qa'" in logged


def test_wrong_password_unknown_user_and_disabled_user_cannot_sign_in(site: Site) -> None:
    client = site.client()
    for username, password in (("qa", "not the password"), ("nobody", PASSWORD)):
        response = client.post("/login", data={"username": username, "password": password,
                                               "csrf_token": login_token(client)})  # fmt: skip
        assert response.status_code == 401 and "wrong user name or password" in response.text
    signed_in = site.client("labeller")
    site.users.set_disabled("labeller", True)
    assert signed_in.get("/t/acme/datasets").status_code == 303  # its session ended
    response = client.post("/login", data={"username": "labeller", "password": PASSWORD,
                                           "csrf_token": login_token(client)})  # fmt: skip
    assert response.status_code == 401


def test_sessions_expire_and_sign_out_ends_them(site: Site) -> None:
    client = site.client("operator")
    assert client.get("/t/acme/queue").status_code == 200
    with site.app.state.services.engine.begin() as conn:
        conn.execute(update(sessions).values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
    assert client.get("/t/acme/queue").status_code == 303
    client = site.client("operator")
    token = csrf_of(client.get("/t/acme/queue").text)
    cookie = client.cookies.get("lineqa_session")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    replay = site.client()
    replay.cookies.set("lineqa_session", cookie or "", domain="testserver")
    assert replay.get("/t/acme/queue").status_code == 303


def test_signing_in_again_while_signed_in_starts_a_new_session(site: Site) -> None:
    client = site.client("qa")
    first = client.cookies.get("lineqa_session")
    sign_in(client, "operator")
    assert client.cookies.get("lineqa_session") != first
    assert client.get("/t/acme/audit").status_code == 403  # now the operator


def test_after_sign_in_only_same_site_paths(site: Site) -> None:
    client = site.client()
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        response = client.post("/login", data={"username": "qa", "password": PASSWORD, "next": target,
                                               "csrf_token": login_token(client)})  # fmt: skip
        assert response.headers["location"] == "/"


def test_user_store_refuses_bad_names_short_passwords_and_duplicates(site: Site) -> None:
    users: UserStore = site.users
    with pytest.raises(BadInputError, match="at least 10"):
        users.add_user("newbie", "short")
    with pytest.raises(BadInputError, match="user name"):
        users.add_user("../admin", PASSWORD)
    with pytest.raises(BadInputError, match="exists"):
        users.add_user("qa", PASSWORD)
    assert users.grant("qa", "acme", Role.QA) is False and users.revoke("qa", "acme", Role.LABELLER) is False
    assert [(u.username, [r.value for _, r in u.roles]) for u in users.users("globex")] == [("globex-admin", ["admin"])]


def test_admins_manage_users_of_their_tenant_with_an_audit_entry(site: Site) -> None:
    admin = site.client("admin")
    token = csrf_of(admin.get("/t/acme/users").text)
    form = {"action": "add", "username": "newqa", "role": "qa", "password": "a brand new password", "csrf_token": token}
    assert admin.post("/t/acme/users", data=form).status_code == 303
    newcomer = site.client()
    sign_in(newcomer, "newqa", "a brand new password")
    assert newcomer.get("/t/acme/audit").status_code == 200
    actions = [(e.actor, e.action.value, e.object) for e in audit.entries(site.app.state.services.engine, "acme")]
    assert ("admin", "user.grant", "user:newqa") in actions and ("admin", "user.add", "user:newqa") in actions


def test_repeated_failed_sign_ins_are_throttled_per_user_name(site: Site) -> None:
    client = site.client()
    for _ in range(5):
        form = {"username": "QA", "password": "guess guess guess", "csrf_token": login_token(client)}
        assert client.post("/login", data=form).status_code == 401
    form = {"username": "qa", "password": PASSWORD, "csrf_token": login_token(client)}
    refused = client.post("/login", data=form)
    assert refused.status_code == 429 and "too many failed sign-ins" in refused.text
    site.client("admin")  # other names are not affected


def test_the_throttle_forgets_failures_after_its_window() -> None:
    now = [1000.0]
    throttle = SignInThrottle(max_failures=2, window_s=60, clock=lambda: now[0])
    throttle.failed("bob")
    throttle.failed("bob")
    with pytest.raises(TooManyAttemptsError, match="try again in 1 min"):
        throttle.check("Bob")
    now[0] += 61
    throttle.check("bob")
    throttle.failed("bob")
    throttle.succeeded("bob")
    throttle.failed("bob")
    throttle.check("bob")
