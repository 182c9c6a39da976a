"""The access matrix, route × role × own or other tenant, equals the spec written here (independently of
``lineqa.review.access``); another tenant's part or sample is 404 like a missing one; a POST without a valid CSRF
token is 403 and changes nothing; no GET changes state; signed-out users are sent to the login form. On SQLite,
and on PostgreSQL with the app logged in as the application role (row-level security): every route of the app
works there as it does on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, inspect, select, table

from lineqa.review.access import ACCOUNT_ROUTES, PUBLIC_ROUTES, ROUTE_ROLES
from tests.review.conftest import Site, csrf_of, site_on

ALL = {"operator", "labeller", "qa", "admin"}
WATCH = {"operator", "qa", "admin"}
DATA = {"labeller", "qa", "admin"}
# route: (method, path, form, roles that may use it). {part} and {sample} are objects of the tenant in the URL,
# or of the other tenant for the "other object" column.
SPEC: dict[str, tuple[str, str, dict[str, str], set[str]]] = {
    "queue": ("GET", "/t/{tenant}/queue", {}, ALL),
    "part": ("GET", "/t/{tenant}/parts/{part}", {}, ALL),
    "part_image": ("GET", "/t/{tenant}/parts/{part}/image", {}, ALL),
    "decide": ("POST", "/t/{tenant}/parts/{part}/decisions", {"kind": "confirm"}, {"qa", "admin"}),
    "dashboard": ("GET", "/t/{tenant}/dashboard", {}, WATCH),
    "chart": ("GET", "/t/{tenant}/dashboard/pareto.png", {}, WATCH),
    "export": ("GET", "/t/{tenant}/export/pareto.csv", {}, WATCH),
    "datasets": ("GET", "/t/{tenant}/datasets", {}, DATA),
    "dataset_version": ("GET", "/t/{tenant}/datasets/reviewed/v/1", {}, DATA),
    "sample": ("GET", "/t/{tenant}/datasets/reviewed/v/1/sample?sample={sample}", {}, DATA),
    "sample_image": ("GET", "/t/{tenant}/datasets/reviewed/v/1/image?sample={sample}", {}, DATA),
    "fix_labels": ("POST", "/t/{tenant}/datasets/reviewed/v/1/sample",
                   {"sample": "{sample}", "boxes": '[{"class": "open", "box": [1, 1, 30, 30]}]'},
                   {"labeller", "admin"}),
    "snapshot": ("POST", "/t/{tenant}/datasets/reviewed/snapshot", {"note": "n"}, {"labeller", "admin"}),
    "runs": ("GET", "/t/{tenant}/runs", {}, {"qa", "admin"}),
    "run": ("GET", "/t/{tenant}/runs/{run}", {}, {"qa", "admin"}),
    "run_picture": ("GET", "/t/{tenant}/runs/{run}/eval/test/pr_curves.png", {}, {"qa", "admin"}),
    "audit": ("GET", "/t/{tenant}/audit", {}, {"qa", "admin"}),
    "users": ("GET", "/t/{tenant}/users", {}, {"admin"}),
    "change_user": ("POST", "/t/{tenant}/users", {"action": "grant", "username": "operator", "role": "operator"},
                    {"admin"}),
    "experts": ("GET", "/t/{tenant}/experts", {}, {"admin"}),
    "change_expert": ("POST", "/t/{tenant}/experts", {"action": "invite", "username": "globex-admin",
                      "role": "operator", "scope": "line:line-1", "expires": "2099-01-01"}, {"admin"}),
}  # fmt: skip
WITH_OBJECT = {name for name, (_, path, form, _) in SPEC.items() if "{part}" in path or "{sample}" in str(form)
               or "{sample}" in path or "{run}" in path}  # fmt: skip


def fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


class Matrix:
    def __init__(self, site: Site, platform: Engine) -> None:
        self.site = site
        self.platform = platform  # sees every row, to count them
        self.clients = {role: site.client(role) for role in sorted(ALL)}
        self.objects = {}
        for tenant, admin in (("acme", "admin"), ("globex", "globex-admin")):
            client = self.clients["admin"] if tenant == "acme" else site.client(admin)
            part = site.parts[tenant][0]
            page = client.get(f"/t/{tenant}/parts/{part}")
            decided = client.post(f"/t/{tenant}/parts/{part}/decisions",
                                  data={"kind": "confirm", "csrf_token": csrf_of(page.text)})  # fmt: skip
            assert decided.status_code == 303, decided.text
            snap = client.post(f"/t/{tenant}/datasets/reviewed/snapshot", data={"csrf_token": csrf_of(page.text)})
            assert snap.status_code == 303, snap.text
            run = "a" if tenant == "acme" else "g"  # a training run of the tenant's own dataset (conftest.RUNS)
            self.objects[tenant] = {"part": part, "sample": f"parts/{part}.jpg", "run": run}

    def request(self, role: str, route: str, tenant: str, objects_of: str) -> int:
        method, path, form, _ = SPEC[route]
        values = {"tenant": tenant, **self.objects[objects_of]}
        client = self.clients[role]
        if method == "GET":
            return client.get(fill(path, values)).status_code
        token = csrf_of(client.get("/t/acme/queue").text if role != "none" else "")
        data = {k: fill(v, values) for k, v in form.items()} | {"csrf_token": token}
        return client.post(fill(path, values), data=data).status_code


@pytest.fixture(scope="module", params=["sqlite", "postgresql-application-role"])
def matrix(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    with site_on(request.param, tmp_path_factory.mktemp("access")) as (site, platform):
        yield Matrix(site, platform)


def test_every_route_is_in_the_access_table_and_the_table_is_the_spec(matrix: Matrix) -> None:
    names = {getattr(route, "name", None) for route in matrix.site.app.routes}
    assert names == set(ROUTE_ROLES) | ACCOUNT_ROUTES | PUBLIC_ROUTES
    assert {name: {r.value for r in roles} for name, roles in ROUTE_ROLES.items()} == {
        name: roles for name, (_, _, _, roles) in SPEC.items()
    }


@pytest.mark.parametrize("route", sorted(SPEC))
def test_access_matrix(matrix: Matrix, route: str) -> None:
    """Own tenant: the spec's roles get through (200, or 303 after a POST), the others 403. Another tenant's
    URL: 404 for everyone. Another tenant's object under the own tenant's URL: 404 for those allowed."""
    allowed = SPEC[route][3]
    success = 303 if SPEC[route][0] == "POST" else 200
    got, expected = {}, {}
    for role in sorted(ALL):
        got[role, "own"] = matrix.request(role, route, "acme", "acme")
        expected[role, "own"] = success if role in allowed else 403
        got[role, "other tenant"] = matrix.request(role, route, "globex", "globex")
        expected[role, "other tenant"] = 404
        if route in WITH_OBJECT:
            got[role, "other object"] = matrix.request(role, route, "acme", "globex")
            expected[role, "other object"] = 404 if role in allowed else 403
    assert got == expected


def _counts(matrix: Matrix) -> dict[str, int]:
    engine = matrix.platform
    with engine.connect() as conn:
        return {
            name: int(conn.execute(select(func.count()).select_from(table(name))).scalar_one())
            for name in inspect(engine).get_table_names()
        }


@pytest.mark.parametrize("route", [*sorted(name for name, spec in SPEC.items() if spec[0] == "POST"), "logout"])
@pytest.mark.parametrize("token", ["missing", "wrong", "other session's"])
def test_a_post_without_a_valid_csrf_token_is_403_and_changes_nothing(matrix: Matrix, route: str, token: str) -> None:
    client = matrix.clients["admin"]
    path, form = ("/logout", {}) if route == "logout" else (SPEC[route][1], SPEC[route][2])
    values = {"tenant": "acme", **matrix.objects["acme"]}
    data = {k: fill(v, values) for k, v in form.items()}
    if token == "wrong":
        data["csrf_token"] = "x" * 43
    elif token == "other session's":
        data["csrf_token"] = csrf_of(matrix.clients["labeller"].get("/t/acme/queue").text)
    before = _counts(matrix)
    response = client.post(fill(path, values), data=data)
    assert response.status_code == 403 and "CSRF" in response.text
    assert _counts(matrix) == before
    assert client.get("/t/acme/queue").status_code == 200  # still signed in


def test_login_needs_its_own_csrf_token(matrix: Matrix) -> None:
    client = matrix.site.client()
    form = {"username": "admin", "password": "correct horse battery"}
    assert client.post("/login", data=form).status_code == 403
    assert client.post("/login", data={**form, "csrf_token": "forged"}).status_code == 403
    assert client.get("/t/acme/queue").status_code == 303  # not signed in


def test_no_get_changes_state(matrix: Matrix) -> None:
    client = matrix.clients["admin"]
    before = _counts(matrix)
    for route, (method, path, _, _) in SPEC.items():
        if method == "GET":
            assert client.get(fill(path, {"tenant": "acme", **matrix.objects["acme"]})).status_code == 200, route
    for path in ("/", "/login", "/t/acme/audit?format=csv", "/t/acme/export/defect-rate.csv"):
        client.get(path)
    assert _counts(matrix) == before


def test_signed_out_users_go_to_the_login_form_and_cannot_post(matrix: Matrix) -> None:
    client = matrix.site.client()
    for route, (method, path, _, _) in SPEC.items():
        url = fill(path, {"tenant": "acme", **matrix.objects["acme"]})
        if method == "GET":
            response = client.get(url)
            assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), route
        else:
            assert client.post(url, data={"csrf_token": "x"}).status_code == 401, route


def test_unknown_ids_and_bad_input_get_clear_errors(matrix: Matrix, tmp_path: Path) -> None:
    qa = matrix.clients["qa"]
    assert qa.get("/t/acme/parts/not-a-record").status_code == 404
    assert qa.get("/t/acme/queue?verdict=MAYBE").status_code == 400
    assert "not a date" in qa.get("/t/acme/queue?since=yesterday").text
    token = csrf_of(qa.get("/t/acme/queue").text)
    part = matrix.objects["acme"]["part"]
    bad_kind = qa.post(f"/t/acme/parts/{part}/decisions", data={"kind": "maybe", "csrf_token": token})
    assert bad_kind.status_code == 422 and "kind" in bad_kind.text
    for boxes, message in (("not json", "not JSON"), ('[{"class": "rust", "box": [1, 1, 9, 9]}]', "unknown class"),
                           ('[{"class": "open", "box": [1, 1, 1, 9]}]', "smaller than a pixel")):  # fmt: skip
        response = qa.post(f"/t/acme/parts/{part}/decisions",
                           data={"kind": "correct", "boxes": boxes, "csrf_token": token})  # fmt: skip
        assert response.status_code == 400 and message in response.text
    assert qa.get("/t/acme/no-such-page").status_code == 404
