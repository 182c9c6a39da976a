"""The review web app: ``create_app(settings)`` builds it, ``lineqa review serve`` runs it under uvicorn.

Pages are rendered on the server (Jinja2, autoescaped) with one small script, the box editor. Every route is
named, and one guard runs before each: it finds the session, checks the route against the access table
(:mod:`lineqa.review.access`, deny by default, another tenant's anything is 404), and checks the CSRF token of
every request that is not GET/HEAD. Routes only raise :class:`lineqa.review.errors.ReviewError`; one handler turns
them into pages with the status of :data:`lineqa.review.errors.HTTP_STATUS`. No GET changes state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from lineqa.content_store import ContentStore
from lineqa.db import tenant_scope
from lineqa.review import audit, dashboards
from lineqa.review.access import ROUTE_ROLES, authorize
from lineqa.review.auth import Principal, Role, SignInThrottle, UserStore
from lineqa.review.boxes import boxes_json, parse_boxes
from lineqa.review.csrf import FORM_FIELD, HEADER, LOGIN_COOKIE, SAFE_METHODS, check_token, new_token
from lineqa.review.database import open_review_database
from lineqa.review.decisions import DecisionKind, Decisions, model_labels
from lineqa.review.errors import BadInputError, NotFoundError, NotSignedInError, ReviewError, http_status
from lineqa.review.labelling import Labelling
from lineqa.review.queue import STATUSES, VERDICTS, QueueFilter, ReviewQueue
from lineqa.review.web import (
    SECURITY_HEADERS,
    csv_response,
    image_response,
    image_size,
    optional,
    parse_time,
    safe_next,
    templates,
)
from lineqa.serving.model_repository import ModelRepository

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "lineqa_session"


class ReviewSettings(BaseModel):
    """Everything the app needs, validated once in ``main`` (or a test) and passed down."""

    model_config = ConfigDict(frozen=True)

    database_url: str
    images: Path
    models: Path | None = None
    dataset: str = Field(
        "reviewed", pattern=r"^[a-z0-9][a-z0-9._-]{0,127}$", description="the working dataset reviewed parts go into"
    )
    pass_sample_percent: float = Field(5.0, ge=0, le=100)
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
    queue = ReviewQueue(engine, settings.pass_sample_percent)
    models = ModelRepository(settings.models) if settings.models else None
    return Services(
        engine,
        store,
        UserStore(engine, timedelta(hours=settings.session_ttl_h)),
        queue,
        Decisions(engine, store, queue, settings.dataset, models),
        Labelling(engine, store),
        zone,
        shifts,
    )


def create_app(settings: ReviewSettings) -> FastAPI:
    services = _services(settings)
    env = templates()
    throttle = SignInThrottle()

    def cookie_principal(request: Request) -> Principal | None:
        session_id = request.cookies.get(SESSION_COOKIE)
        return services.users.principal(session_id) if session_id else None

    async def guard(request: Request) -> None:
        """Runs before every route: session, access table, CSRF (see the module docstring)."""
        route = request.scope["route"].name
        tenant = request.path_params.get("tenant")
        principal = await run_in_threadpool(cookie_principal, request)  # database calls off the event loop
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
            return bool(principal and tenant and principal.roles_in(tenant) & ROUTE_ROLES[route])

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

    @app.exception_handler(ReviewError)
    async def review_error(request: Request, exc: ReviewError) -> Response:
        if isinstance(exc, NotSignedInError) and request.method in SAFE_METHODS:
            return RedirectResponse(f"/login?{urlencode({'next': request.url.path})}", status_code=303)
        return page(request, "error.html", http_status(exc), message=str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'request'}: {e['msg']}" for e in exc.errors())
        return page(request, "error.html", 422, message=f"the request is not valid: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return page(request, "error.html", exc.status_code, message=str(exc.detail))

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
        tenants = sorted(user_of(request).roles)
        if len(tenants) == 1:
            return RedirectResponse(f"/t/{tenants[0]}/queue", status_code=303)
        return page(request, "home.html", tenants=tenants)

    # -- queue and parts ----------------------------------------------------------------------------------

    @app.get("/t/{tenant}/queue", name="queue")
    def queue(
        request: Request,
        tenant: str,
        line: str | None = None,
        camera: str | None = None,
        defect_class: Annotated[str | None, Query(alias="class")] = None,
        verdict: str | None = None,
        model: str | None = None,
        since: str | None = None,
        until: str | None = None,
        status: str = "pending",
        page_number: Annotated[int, Query(alias="page")] = 1,
    ) -> HTMLResponse:
        wanted = QueueFilter(
            line=optional(line),
            camera=optional(camera),
            class_name=optional(defect_class),
            verdict=optional(verdict),
            model=optional(model),
            since=parse_time(since, "since"),
            until=parse_time(until, "until"),
            status=status,
            page=page_number,
        )
        rows, total = services.queue.page(tenant, wanted)
        query = {k: v for k, v in request.query_params.items() if k != "page" and v}
        return page(
            request,
            "queue.html",
            rows=rows,
            total=total,
            filter=wanted,
            query=query,
            choices=services.queue.choices(tenant),
            verdicts=VERDICTS,
            statuses=STATUSES,
            done=request.query_params.get("done"),
        )

    @app.get("/t/{tenant}/parts/{record_id}", name="part")
    def part(request: Request, tenant: str, record_id: str) -> HTMLResponse:
        found = services.queue.part(tenant, record_id)
        labels = boxes_json(model_labels(found))
        editor = {
            "boxes": [
                {**label, "confidence": d.confidence, "disposition": d.disposition}
                for label, d in zip(labels, found.row.defects, strict=True)
            ],
            "classes": services.decisions.classes(tenant, found),
            "image": f"/t/{tenant}/parts/{record_id}/image" if found.image_key else None,
        }
        return page(
            request,
            "part.html",
            part=found,
            editor=editor,
            kinds=list(DecisionKind),
            history=audit.entries(services.engine, tenant, obj=f"part:{record_id}"),
        )

    @app.get("/t/{tenant}/parts/{record_id}/image", name="part_image")
    def partimage_response(tenant: str, record_id: str) -> FileResponse:
        found = services.queue.part(tenant, record_id)
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
    ) -> Response:
        found = services.queue.part(tenant, record_id)
        corrected = None
        if kind is DecisionKind.CORRECT:
            size = image_size(services.store, tenant, found.image_key)
            corrected = parse_boxes(boxes or "[]", services.decisions.classes(tenant, found), size)
        services.decisions.decide(tenant, record_id, kind, corrected, reason.strip(), user_of(request).username)
        following = services.queue.next_pending(tenant, record_id) if then == "next" else record_id
        target = f"/t/{tenant}/parts/{following}" if following else f"/t/{tenant}/queue"
        return RedirectResponse(f"{target}?{urlencode({'done': record_id})}", status_code=303)

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
    def datasets(request: Request, tenant: str) -> HTMLResponse:
        return page(
            request, "datasets.html", datasets=services.labelling.datasets(tenant), review_dataset=settings.dataset
        )

    @app.post("/t/{tenant}/datasets/{name}/snapshot", name="snapshot")
    def snapshot(request: Request, tenant: str, name: str, note: Annotated[str, Form(max_length=500)] = "") -> Response:
        info = services.labelling.snapshot(tenant, name, note.strip(), user_of(request).username)
        return RedirectResponse(f"/t/{tenant}/datasets/{quote(name)}/v/{info.number}", status_code=303)

    @app.get("/t/{tenant}/datasets/{name}/v/{version}", name="dataset_version")
    def dataset_version(request: Request, tenant: str, name: str, version: str) -> HTMLResponse:
        info, manifest = services.labelling.version(tenant, name, version)
        report = services.labelling.issues(tenant, manifest)
        return page(request, "version.html", name=name, info=info, manifest=manifest, report=report)

    @app.get("/t/{tenant}/datasets/{name}/v/{version}/sample", name="sample")
    def sample(request: Request, tenant: str, name: str, version: str, sample: str) -> HTMLResponse:
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
    def sampleimage_response(tenant: str, name: str, version: str, sample: str) -> FileResponse:
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
        _, manifest, found = services.labelling.sample(tenant, name, version, sample)
        fixed = parse_boxes(boxes, manifest.classes, (found.width, found.height))
        info = services.labelling.fix(tenant, name, version, sample, fixed, reason.strip(), user_of(request).username)
        target = f"/t/{tenant}/datasets/{quote(name)}/v/{info.number}/sample?{urlencode({'sample': sample})}"
        return RedirectResponse(target, status_code=303)

    # -- audit and users ----------------------------------------------------------------------------------

    @app.get("/t/{tenant}/audit", name="audit")
    def audit_trail(request: Request, tenant: str, format: str = "html") -> Response:
        found = audit.entries(services.engine, tenant, limit=5000 if format == "csv" else 500)
        if format == "csv":
            rows = [[e.at.isoformat(), e.actor, e.action.value, e.object, e.old, e.new, e.reason] for e in found]
            return csv_response(
                ["at (UTC)", "actor", "action", "object", "old", "new", "reason"], rows, f"{tenant}-audit.csv"
            )
        return page(request, "audit.html", entries=found)

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

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app


def _audit_user(
    engine: Engine, tenant: str, actor: str, action: audit.AuditAction, username: str, old: Any, new: Any
) -> None:
    with tenant_scope(engine, tenant).begin() as conn:
        audit.append(conn, tenant, actor, action, f"user:{username}", old, new)
