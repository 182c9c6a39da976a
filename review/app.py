"""The review web app: ``create_app(settings)`` builds it, ``lineqa review serve`` runs it under uvicorn.

Pages are rendered on the server (Jinja2, autoescaped) with one small script, the box editor. Every route is
named, and one guard runs before each: it finds the session, checks the route against the access table
(:mod:`lineqa.review.access`, deny by default, another tenant's anything is 404), and checks the CSRF token of
every request that is not GET/HEAD. An invited expert's grants (:mod:`lineqa.review.experts`) are read again for
each request and narrow every route to the granted parts and datasets; each of their requests is an entry of the
granting tenant's audit trail. Routes only raise :class:`lineqa.review.errors.ReviewError`; one handler turns
them into pages with the status of :data:`lineqa.review.errors.HTTP_STATUS`. No GET changes state. Every request
and every decision is one structured log record (:mod:`lineqa.review.app_log`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from lineqa.content_store import ContentStore
from lineqa.db import tenant_scope
from lineqa.review import api_view, app_log, audit, dashboards, label_diff, part_view, web
from lineqa.review.access import authorize, check_dataset, check_run, datasets_within, may, parts_within, runs_within
from lineqa.review.auth import Principal, Role, SignInThrottle, UserStore
from lineqa.review.boxes import boxes_json, parse_boxes
from lineqa.review.csrf import FORM_FIELD, HEADER, LOGIN_COOKIE, SAFE_METHODS, check_token, new_token
from lineqa.review.database import open_review_database
from lineqa.review.decisions import DecisionKind, Decisions
from lineqa.review.errors import BadInputError, NotFoundError, NotSignedInError, ReviewError, http_status, title
from lineqa.review.experts import EXPERT_ROLES, ExpertGrants, parse_expiry, parse_scope
from lineqa.review.labelling import Labelling
from lineqa.review.queue import PAGE_SIZE, ReviewQueue
from lineqa.review.queue_filter import (
    ORDER_NAMES,
    STATUSES,
    VERDICTS,
    parse_filter,
    parse_query_string,
)
from lineqa.review.runs import TrainingRuns
from lineqa.review.uncertainty import recipe_versions
from lineqa.review.web import (
    AUDIT_COLUMNS,
    SECURITY_HEADERS,
    audit_row,
    csv_response,
    image_response,
    image_size,
    safe_next,
    templates,
)
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.pass_sample import PassSample
from lineqa.serving.recipes import RecipeStore

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "lineqa_session"


class ReviewSettings(BaseModel):
    """Everything the app needs, validated once in ``main`` (or a test) and passed down."""

    model_config = ConfigDict(frozen=True)

    database_url: str
    images: Path
    models: Path | None = None
    runs: Path | None = Field(None, description="training runs shown read-only (<home>/runs); None: no run pages")
    dataset: str = Field(
        "reviewed", pattern=r"^[a-z0-9][a-z0-9._-]{0,127}$", description="the working dataset reviewed parts go into"
    )
    pass_sample_percent: float = Field(5.0, ge=0, le=100, description="the PASS sample (lineqa.serving.pass_sample)")
    secure_cookies: bool = True
    session_ttl_h: float = Field(12.0, gt=0)
    timezone: str = "UTC"
    shifts: str = "early=6-14,late=14-22,night=22-6"


@dataclass
class Services:
    """The app's state, built once from the settings; tests reach it as ``app.state.services``."""

    engine: Engine
    store: ContentStore
    users: UserStore
    queue: ReviewQueue
    decisions: Decisions
    labelling: Labelling
    experts: ExpertGrants
    runs: TrainingRuns
    zone: ZoneInfo
    shifts: tuple[dashboards.Shift, ...]


def _services(settings: ReviewSettings) -> Services:
    try:
        zone = ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ReviewError(f"unknown time zone {settings.timezone!r}") from exc
    shifts = dashboards.parse_shifts(settings.shifts)
    engine = open_review_database(settings.database_url)
    store = ContentStore(settings.images)
    queue = ReviewQueue(engine, PassSample(settings.pass_sample_percent), recipe_versions(RecipeStore(engine)))
    models = ModelRepository(settings.models) if settings.models else None
    runs = TrainingRuns(settings.runs)
    return Services(
        engine,
        store,
        UserStore(engine, timedelta(hours=settings.session_ttl_h)),
        queue,
        Decisions(engine, store, queue, settings.dataset, models),
        Labelling(engine, store),
        ExpertGrants(engine, runs),
        runs,
        zone,
        shifts,
    )


def create_app(settings: ReviewSettings) -> FastAPI:
    services = _services(settings)
    env = templates()
    throttle = SignInThrottle()

    def cookie_principal(request: Request) -> Principal | None:
        session_id = request.cookies.get(SESSION_COOKIE)
        principal = services.users.principal(session_id) if session_id else None
        if principal is None:
            return None
        return replace(principal, experts=services.experts.live(principal.user_id))  # never cached: revoking holds

    async def guard(request: Request) -> None:
        """Runs before every route: session, access table, CSRF (see the module docstring)."""
        route = request.scope["route"].name
        tenant = request.path_params.get("tenant")
        principal = await run_in_threadpool(cookie_principal, request)  # database calls off the event loop
        request.state.user = principal.username if principal else None  # for the request log, even when refused
        if principal is not None and tenant is not None and principal.expert_in(tenant) is not None:
            request.state.expert = (principal, tenant)  # audited after the response, even when refused
        request.state.principal = authorize(route, principal, tenant)
        if request.method not in SAFE_METHODS:
            form = await request.form()
            submitted = request.headers.get(HEADER) or form.get(FORM_FIELD)
            if route == "login":  # no session yet (or one being replaced): the form's double-submit cookie
                expected = request.cookies.get(LOGIN_COOKIE)
            else:
                expected = principal.csrf_token if principal else None
            check_token(expected, submitted if isinstance(submitted, str) else None)

    app = FastAPI(title="lineqa review", docs_url=None, redoc_url=None, openapi_url=None, dependencies=[Depends(guard)])
    app.state.services = services

    def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        principal: Principal | None = getattr(request.state, "principal", None)
        tenant = request.path_params.get("tenant")

        def can(route: str) -> bool:
            return may(route, principal, tenant)

        html = env.get_template(template).render(
            request=request,
            principal=principal,
            tenant=tenant,
            can=can,
            csrf_field=FORM_FIELD,
            csrf_token=principal.csrf_token if principal else "",
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    def user_of(request: Request) -> Principal:
        principal: Principal = request.state.principal
        return principal

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if request.url.path != "/login" and not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.middleware("http")
    async def expert_audit(request: Request, call_next: Callable[[Request], Any]) -> Response:
        """Every request of an invited expert, refused ones included, is an entry of the tenant's audit trail."""
        response: Response = await call_next(request)
        expert: tuple[Principal, str] | None = getattr(request.state, "expert", None)
        if expert is not None:
            principal, tenant = expert
            scope = principal.experts[tenant]
            route = getattr(request.scope.get("route"), "name", None)
            await run_in_threadpool(services.experts.record_access, tenant, principal.username, principal.user_id,
                                    scope, request.method, request.url.path, route, response.status_code)  # fmt: skip
        return response

    @app.middleware("http")
    async def request_log(request: Request, call_next: Callable[[Request], Any]) -> Response:
        """One structured line per request (:mod:`lineqa.review.app_log`); the id also goes back in a header."""
        request_id, started, status = uuid.uuid4().hex[:16], time.perf_counter(), 500
        try:
            response: Response = await call_next(request)
            status = response.status_code
            response.headers["X-Request-Id"] = request_id
            return response
        finally:
            route = request.scope.get("route")
            logger.log(
                logging.ERROR if status >= 500 else logging.INFO,
                "%s %s %s",
                request.method,
                request.url.path,
                status,
                extra=app_log.fields(
                    event="request",
                    request_id=request_id,
                    method=request.method,
                    path=request.url.path,
                    route=getattr(route, "name", None),
                    status=status,
                    user=getattr(request.state, "user", None),
                    tenant=request.scope.get("path_params", {}).get("tenant"),
                    duration_ms=round((time.perf_counter() - started) * 1e3, 1),
                ),
            )

    def error_page(request: Request, status: int, message: str, field: str | None = None) -> Response:
        """The error page: what kind of problem (its heading), what exactly was wrong, and a way on."""
        if field and request.method in SAFE_METHODS and field in request.query_params:
            without = request.url.remove_query_params(field)  # a same-site path, never the Host header's name
            back = (
                f"{without.path}?{without.query}" if without.query else without.path,
                "Show the page without that value",
            )
        else:
            back = ("/", "Back to the start page")
        return page(request, "error.html", status, heading=title(status), message=message, back=back)

    def error_of(request: Request, status: int, message: str, field: str | None = None) -> Response:
        """The error as a page, or as JSON for a client that asked for JSON (the remote CLI)."""
        if api_view.wants_json(request):
            return api_view.json_response({"error": message, "status": status, "field": field}, status)
        return error_page(request, status, message, field)

    @app.exception_handler(ReviewError)
    async def review_error(request: Request, exc: ReviewError) -> Response:
        if isinstance(exc, NotSignedInError) and request.method in SAFE_METHODS and not api_view.wants_json(request):
            return RedirectResponse(f"/login?{urlencode({'next': request.url.path})}", status_code=303)
        return error_of(request, http_status(exc), str(exc), exc.field if isinstance(exc, BadInputError) else None)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'request'}: {e['msg']}" for e in exc.errors())
        return error_of(request, 422, f"the request is not valid: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_of(request, exc.status_code, str(exc.detail))

    # -- sign in ------------------------------------------------------------------------------------------

    def login_page(request: Request, next_path: str, status_code: int = 200, error: str | None = None) -> Response:
        """The sign-in form with a fresh double-submit CSRF token (cookie + hidden field)."""
        token = new_token()
        response = page(request, "login.html", status_code, login_token=token, next=safe_next(next_path), error=error)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, secure=settings.secure_cookies, samesite="strict",
                            path="/login", max_age=3600)  # fmt: skip
        return response

    @app.get("/login", name="login_form")
    def login_form(request: Request, next: str = "/") -> Response:
        return login_page(request, next)

    @app.post("/login", name="login")
    def login(
        request: Request,
        username: Annotated[str, Form(max_length=128)],
        password: Annotated[str, Form(max_length=1024)],
        next: Annotated[str, Form()] = "/",
    ) -> Response:
        throttle.check(username)
        user_id = services.users.authenticate(username, password)
        if user_id is None:
            throttle.failed(username)
            logger.warning("failed sign-in for user %r", username)
            if api_view.wants_json(request):
                return api_view.json_response({"error": "wrong user name or password", "status": 401}, 401)
            return login_page(request, next, 401, "wrong user name or password")
        throttle.succeeded(username)
        response = RedirectResponse(safe_next(next), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            services.users.start_session(user_id),
            httponly=True,
            secure=settings.secure_cookies,
            samesite="lax",
            path="/",
            max_age=int(settings.session_ttl_h * 3600),
        )
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    @app.post("/logout", name="logout")
    def logout(request: Request) -> Response:
        services.users.end_session(request.cookies[SESSION_COOKIE])
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/", name="home")
    def home(request: Request) -> Response:
        principal = user_of(request)
        tenants = principal.tenants()
        if api_view.wants_json(request):  # who is signed in, where, and the session's CSRF token for POSTs
            return api_view.json_response({"user": principal.username, "csrf_token": principal.csrf_token,
                                           "tenants": [_tenant_json(principal, t) for t in tenants]})  # fmt: skip
        if len(tenants) == 1:
            return RedirectResponse(f"/t/{tenants[0]}/{_start(principal, tenants[0])}", status_code=303)
        shown = []
        for tenant in tenants:
            expert = principal.expert_in(tenant)
            roles = expert.roles() if expert is not None else principal.roles_in(tenant)
            shown.append((tenant, _start(principal, tenant), sorted(r.value for r in roles), expert is not None))
        return page(request, "home.html", tenants=shown)

    # -- queue and parts ----------------------------------------------------------------------------------

    @app.get("/t/{tenant}/queue", name="queue")
    def queue(request: Request, tenant: str) -> Response:
        within = parts_within(user_of(request), tenant, "queue")
        wanted = replace(parse_filter(request.query_params), within=within)
        shown = services.queue.page(tenant, wanted)
        if api_view.wants_json(request):
            return api_view.json_response(api_view.queue_json(shown, wanted.page, PAGE_SIZE))
        return page(
            request,
            "queue.html",
            shown=shown,
            filter=wanted,
            query=wanted.query(),
            page_size=PAGE_SIZE,
            choices=services.queue.choices(tenant, within),
            verdicts=VERDICTS,
            statuses=STATUSES,
            orders=ORDER_NAMES,
            notice=part_view.notice(services.queue, tenant, request.query_params, within),
        )

    @app.get("/t/{tenant}/parts/{record_id}", name="part")
    def part(request: Request, tenant: str, record_id: str) -> Response:
        within = parts_within(user_of(request), tenant, "part")
        wanted = replace(parse_filter(request.query_params), within=within)
        found = services.queue.part(tenant, record_id, within)
        if api_view.wants_json(request):
            return api_view.json_response(api_view.part_json(tenant, found, services.decisions.classes(tenant, found)))
        previous, following = services.queue.neighbours(tenant, wanted, record_id)
        carried = wanted.query_string()
        history = [
            (entry, label_diff.diff(entry.old.get("labels", []), entry.new.get("labels", [])))
            for entry in audit.entries(services.engine, tenant, obj=f"part:{record_id}")
        ]
        return page(
            request,
            "part.html",
            part=found,
            editor=part_view.editor_data(tenant, found, services.decisions.classes(tenant, found)),
            history=history,
            carried=carried,
            links={
                "previous": f"/t/{tenant}/parts/{previous}?{carried}" if previous else None,
                "next": f"/t/{tenant}/parts/{following}?{carried}" if following else None,
                "queue": f"/t/{tenant}/queue?{carried}",
            },
            order_name=ORDER_NAMES[wanted.order],
            notice=part_view.notice(services.queue, tenant, request.query_params, within),
            kind_names=part_view.KIND_NAMES,
        )

    @app.get("/t/{tenant}/parts/{record_id}/image", name="part_image")
    def partimage_response(request: Request, tenant: str, record_id: str) -> FileResponse:
        found = services.queue.part(tenant, record_id, parts_within(user_of(request), tenant, "part_image"))
        if found.image_key is None:
            raise NotFoundError("the gateway kept no image of this part (image policy)")
        return image_response(services.store, tenant, found.image_key)

    @app.post("/t/{tenant}/parts/{record_id}/decisions", name="decide")
    def decide(
        request: Request,
        tenant: str,
        record_id: str,
        kind: Annotated[DecisionKind, Form()],
        boxes: Annotated[str, Form(max_length=200_000)] = "",
        reason: Annotated[str, Form(max_length=2000)] = "",
        then: Annotated[str, Form()] = "next",
        carried: Annotated[str, Form(alias="queue", max_length=4000)] = "",
    ) -> Response:
        within = parts_within(user_of(request), tenant, "decide")
        wanted = replace(parse_query_string(carried), within=within)
        found = services.queue.part(tenant, record_id, within)
        corrected = None
        if kind is DecisionKind.CORRECT:
            size = image_size(services.store, tenant, found.image_key)
            corrected = parse_boxes(boxes or "[]", services.decisions.classes(tenant, found), size)
        who = user_of(request).username
        outcome = services.decisions.decide(tenant, record_id, kind, corrected, reason.strip(), who)
        logger.info(
            "decision on part %s by %s: %s%s",
            found.row.part_id or record_id,
            who,
            outcome.kind.value,
            "" if outcome.recorded else " (no change, nothing recorded)",
            extra=app_log.fields(
                event="decision",
                tenant=tenant,
                record_id=record_id,
                part_id=found.row.part_id,
                user=who,
                asked=kind.value,
                kind=outcome.kind.value,
                recorded=outcome.recorded,
                decision_id=outcome.decision_id,
                boxes=len(outcome.labels),
            ),
        )
        if api_view.wants_json(request):
            return api_view.json_response(api_view.outcome_json(tenant, record_id, outcome))
        following = services.queue.after_decision(tenant, wanted, record_id) if then == "next" else record_id
        target = f"/t/{tenant}/parts/{following}" if following else f"/t/{tenant}/queue"
        said = {"done" if outcome.recorded else "kept": str(outcome.decision_id)}
        return RedirectResponse(f"{target}?{urlencode({**wanted.query(), **said})}", status_code=303)

    @app.get("/favicon.ico", name="favicon")
    def favicon() -> FileResponse:
        return FileResponse(HERE / "static" / "favicon.ico", media_type="image/x-icon",
                            headers={"Cache-Control": "public, max-age=604800"})  # fmt: skip

    # -- dashboards ---------------------------------------------------------------------------------------

    def board(tenant: str, days: int) -> dashboards.Dashboard:
        if not 1 <= days <= 366:
            raise BadInputError("days must be 1-366")
        until = datetime.now(timezone.utc)
        return dashboards.compute(
            services.engine, tenant, until - timedelta(days=days), until, services.zone, services.shifts
        )

    @app.get("/t/{tenant}/dashboard", name="dashboard")
    def dashboard(request: Request, tenant: str, days: int = 30) -> HTMLResponse:
        return page(request, "dashboard.html", board=board(tenant, days), days=days, charts=dashboards.CHARTS)

    @app.get("/t/{tenant}/dashboard/{chart}.png", name="chart")
    def chart(tenant: str, chart: str, days: int = 30) -> Response:
        return Response(dashboards.chart_png(board(tenant, days), chart), media_type="image/png")

    @app.get("/t/{tenant}/export/{table}.csv", name="export")
    def export(tenant: str, table: str, days: int = 30) -> Response:
        tables = board(tenant, days).tables()
        if table not in tables:
            raise NotFoundError(f"no table {table!r} (tables: {', '.join(tables)})")
        return csv_response(*tables[table], f"{tenant}-{table}.csv")

    # -- datasets and labelling ---------------------------------------------------------------------------

    @app.get("/t/{tenant}/datasets", name="datasets")
    def datasets(request: Request, tenant: str) -> Response:
        found = services.labelling.datasets(tenant)
        open_ = datasets_within(user_of(request), tenant, "datasets")
        if open_ is not None:
            found = [d for d in found if d.name in open_]
        if api_view.wants_json(request):
            return api_view.json_response([api_view.dataset_json(d) for d in found])
        return page(request, "datasets.html", datasets=found, review_dataset=settings.dataset)

    @app.post("/t/{tenant}/datasets/{name}/snapshot", name="snapshot")
    def snapshot(request: Request, tenant: str, name: str, note: Annotated[str, Form(max_length=500)] = "") -> Response:
        check_dataset(user_of(request), tenant, "snapshot", name)
        info = services.labelling.snapshot(tenant, name, note.strip(), user_of(request).username)
        return RedirectResponse(f"/t/{tenant}/datasets/{quote(name)}/v/{info.number}", status_code=303)

    @app.get("/t/{tenant}/datasets/{name}/v/{version}", name="dataset_version")
    def dataset_version(request: Request, tenant: str, name: str, version: str) -> HTMLResponse:
        check_dataset(user_of(request), tenant, "dataset_version", name)
        info, manifest = services.labelling.version(tenant, name, version)
        report = services.labelling.issues(tenant, manifest)
        return page(request, "version.html", name=name, info=info, manifest=manifest, report=report)

    @app.get("/t/{tenant}/datasets/{name}/v/{version}/sample", name="sample")
    def sample(request: Request, tenant: str, name: str, version: str, sample: str) -> HTMLResponse:
        check_dataset(user_of(request), tenant, "sample", name)
        info, manifest, found = services.labelling.sample(tenant, name, version, sample)
        editor = {
            "boxes": boxes_json(found.boxes),
            "classes": list(manifest.classes),
            "image": f"/t/{tenant}/datasets/{quote(name)}/v/{info.number}/image?{urlencode({'sample': sample})}",
        }
        return page(
            request,
            "sample.html",
            name=name,
            info=info,
            sample=found,
            editor=editor,
            history=audit.entries(services.engine, tenant, obj=f"dataset:{name}:{sample}"),
        )

    @app.get("/t/{tenant}/datasets/{name}/v/{version}/image", name="sample_image")
    def sampleimage_response(request: Request, tenant: str, name: str, version: str, sample: str) -> FileResponse:
        check_dataset(user_of(request), tenant, "sample_image", name)
        _, _, found = services.labelling.sample(tenant, name, version, sample)
        return image_response(services.store, tenant, f"{tenant}/{found.sha256[:2]}/{found.sha256}.{found.ext}")

    @app.post("/t/{tenant}/datasets/{name}/v/{version}/sample", name="fix_labels")
    def fix_labels(
        request: Request,
        tenant: str,
        name: str,
        version: str,
        sample: Annotated[str, Form(max_length=512)],
        boxes: Annotated[str, Form(max_length=200_000)],
        reason: Annotated[str, Form(max_length=2000)] = "",
    ) -> Response:
        check_dataset(user_of(request), tenant, "fix_labels", name)
        _, manifest, found = services.labelling.sample(tenant, name, version, sample)
        fixed = parse_boxes(boxes, manifest.classes, (found.width, found.height))
        info = services.labelling.fix(tenant, name, version, sample, fixed, reason.strip(), user_of(request).username)
        target = f"/t/{tenant}/datasets/{quote(name)}/v/{info.number}/sample?{urlencode({'sample': sample})}"
        return RedirectResponse(target, status_code=303)

    # -- training runs (read-only) ------------------------------------------------------------------------

    @app.get("/t/{tenant}/runs", name="runs")
    def runs(request: Request, tenant: str) -> Response:
        found = services.runs.runs(tenant, runs_within(user_of(request), tenant, "runs"))
        if api_view.wants_json(request):
            return api_view.json_response([r.to_json() for r in found])
        return page(request, "runs.html", runs=found)

    @app.get("/t/{tenant}/runs/{name}", name="run")
    def run(request: Request, tenant: str, name: str) -> Response:
        check_run(user_of(request), tenant, "run", name)
        found = services.runs.run(tenant, name)
        if api_view.wants_json(request):
            return api_view.json_response(found)
        return page(request, "run.html", run=found, as_json=web.as_json)

    @app.get("/t/{tenant}/runs/{name}/eval/{split}/{picture}", name="run_picture")
    def run_picture(request: Request, tenant: str, name: str, split: str, picture: str) -> FileResponse:
        check_run(user_of(request), tenant, "run_picture", name)
        return FileResponse(services.runs.picture(tenant, name, split, picture), media_type="image/png",
                            headers={"Cache-Control": "private, max-age=300"})  # fmt: skip

    # -- audit and users ----------------------------------------------------------------------------------

    @app.get("/t/{tenant}/audit", name="audit")
    def audit_trail(request: Request, tenant: str, format: str = "html") -> Response:
        found = audit.entries(services.engine, tenant, limit=5000 if format == "csv" else 500)
        if format == "csv":
            return csv_response(list(AUDIT_COLUMNS), [audit_row(e) for e in found], f"{tenant}-audit.csv")
        return page(request, "audit.html", columns=AUDIT_COLUMNS, rows=[audit_row(e) for e in found])

    @app.get("/t/{tenant}/users", name="users")
    def users(request: Request, tenant: str) -> HTMLResponse:
        return page(request, "users.html", users=services.users.users(tenant), roles=list(Role))

    @app.post("/t/{tenant}/users", name="change_user")
    def change_user(
        request: Request,
        tenant: str,
        action: Annotated[str, Form(pattern="^(add|grant|revoke)$")],
        username: Annotated[str, Form(max_length=128)],
        role: Annotated[Role, Form()],
        password: Annotated[str, Form(max_length=1024)] = "",
    ) -> Response:
        actor = user_of(request).username
        if action == "add":
            services.users.add_user(username, password)
            _audit_user(services.engine, tenant, actor, audit.AuditAction.USER_ADD, username, None, {"user": username})
        changed = (services.users.revoke if action == "revoke" else services.users.grant)(username, tenant, role)
        if changed:
            kind = audit.AuditAction.ROLE_REVOKE if action == "revoke" else audit.AuditAction.ROLE_GRANT
            _audit_user(services.engine, tenant, actor, kind, username, None, {"role": role.value})
        return RedirectResponse(f"/t/{tenant}/users", status_code=303)

    @app.get("/t/{tenant}/experts", name="experts")
    def experts(request: Request, tenant: str) -> HTMLResponse:
        at = datetime.now(timezone.utc)
        grants = [(g, g.status(at).value) for g in services.experts.grants(tenant)]
        return page(request, "experts.html", grants=grants, roles=EXPERT_ROLES)

    @app.post("/t/{tenant}/experts", name="change_expert")
    def change_expert(
        request: Request,
        tenant: str,
        action: Annotated[str, Form(pattern="^(invite|revoke)$")],
        username: Annotated[str, Form(max_length=128)] = "",
        role: Annotated[Role, Form()] = Role.OPERATOR,
        scope: Annotated[str, Form(max_length=2000)] = "",
        expires: Annotated[str, Form(max_length=40)] = "",
        grant: Annotated[int | None, Form()] = None,
    ) -> Response:
        actor = user_of(request).username
        if action == "invite":
            items = [parse_scope(item) for item in scope.replace(",", " ").split()]
            services.experts.invite(tenant, username.strip(), role, items, parse_expiry(expires), actor)
        else:
            services.experts.revoke(tenant, actor, grant_id=grant, username=username.strip() or None)
        return RedirectResponse(f"/t/{tenant}/experts", status_code=303)

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app


def _start(principal: Principal, tenant: str) -> str:
    """The first page of ``tenant`` this principal may open: the queue, else datasets, else training runs."""
    return next((route for route in ("queue", "datasets", "runs") if may(route, principal, tenant)), "queue")


def _tenant_json(principal: Principal, tenant: str) -> dict[str, Any]:
    expert = principal.expert_in(tenant)
    roles = expert.roles() if expert is not None else principal.roles_in(tenant)
    return {"tenant": tenant, "roles": sorted(r.value for r in roles), "expert": expert is not None}


def _audit_user(
    engine: Engine, tenant: str, actor: str, action: audit.AuditAction, username: str, old: Any, new: Any
) -> None:
    with tenant_scope(engine, tenant).begin() as conn:
        audit.append(conn, tenant, actor, action, f"user:{username}", old, new)
