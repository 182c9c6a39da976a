"""The review web app: ``create_app(settings)`` builds it, ``lineqa review serve`` runs it under uvicorn.

Pages are rendered on the server (Jinja2, autoescaped) with one small script, the box editor. Every route is
named, and one guard runs before each: it finds the session, checks the route against the access table
(:mod:`lineqa.review.access`, deny by default, another tenant's anything is 404), and checks the CSRF token of
every request that is not GET/HEAD. An invited expert's grants (:mod:`lineqa.review.experts`) are read again for
each request and narrow every route to the granted parts and datasets; each of their requests is an entry of the
granting tenant's audit trail. Routes only raise :class:`lineqa.review.errors.ReviewError`; one handler turns
them into pages with the status of :data:`lineqa.review.errors.HTTP_STATUS`. No GET changes state. Every request
and every decision is one structured log record (:mod:`lineqa.review.app_log`).

This module holds what is the app's as a whole: the guard, the middleware and the error handlers. The routes are
in the ``routes_*`` modules, one per area, declared on the app through :class:`lineqa.review.routing.RouteContext`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from lineqa.review import (
    api_view,
    app_log,
    routes_account,
    routes_admin,
    routes_dashboards,
    routes_datasets,
    routes_parts,
    routes_runs,
)
from lineqa.review.access import authorize
from lineqa.review.auth import Principal
from lineqa.review.csrf import FORM_FIELD, HEADER, LOGIN_COOKIE, SAFE_METHODS, check_token
from lineqa.review.errors import BadInputError, NotSignedInError, ReviewError, http_status, title
from lineqa.review.routing import SESSION_COOKIE, RouteContext, logger
from lineqa.review.services import ReviewSettings, Services, build_services
from lineqa.review.web import SECURITY_HEADERS, templates

__all__ = ["SESSION_COOKIE", "ReviewSettings", "Services", "create_app"]

HERE = Path(__file__).resolve().parent
# Each area's routes, declared in this order, which is the order a request's path is matched in.
ROUTES: tuple[Callable[[FastAPI, RouteContext], None], ...] = (
    routes_account.register,
    routes_parts.register,
    routes_dashboards.register,
    routes_datasets.register,
    routes_runs.register,
    routes_admin.register,
)


def create_app(settings: ReviewSettings) -> FastAPI:
    """The app on ``settings``: services built, guard, middleware and error handlers in place, every route
    declared; ``app.state.services`` is its state."""
    services = build_services(settings)

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
    ctx = RouteContext(services, settings, templates())

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
        return ctx.page(request, "error.html", status, heading=title(status), message=message, back=back)

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

    for register in ROUTES:
        register(app, ctx)

    @app.get("/favicon.ico", name="favicon")
    def favicon() -> FileResponse:
        return FileResponse(HERE / "static" / "favicon.ico", media_type="image/x-icon",
                            headers={"Cache-Control": "public, max-age=604800"})  # fmt: skip

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app
