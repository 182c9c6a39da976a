"""Signing in and out, and the start page: the routes that come before any tenant. The login form carries a
double-submit CSRF token (no session yet); failed sign-ins are throttled per user name (:class:`SignInThrottle`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import RedirectResponse, Response

from lineqa.review import api_view
from lineqa.review.access import may
from lineqa.review.auth import Principal, SignInThrottle
from lineqa.review.csrf import LOGIN_COOKIE, new_token
from lineqa.review.routing import SESSION_COOKIE, RouteContext, logger
from lineqa.review.web import safe_next


def register(app: FastAPI, ctx: RouteContext) -> None:
    """``login_form``, ``login``, ``logout`` and ``home`` on ``app``."""
    services, settings, page, user_of = ctx.services, ctx.settings, ctx.page, ctx.user_of
    throttle = SignInThrottle()

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


def _start(principal: Principal, tenant: str) -> str:
    """The first page of ``tenant`` this principal may open: the queue, else datasets, else training runs."""
    return next((route for route in ("queue", "datasets", "runs") if may(route, principal, tenant)), "queue")


def _tenant_json(principal: Principal, tenant: str) -> dict[str, Any]:
    expert = principal.expert_in(tenant)
    roles = expert.roles() if expert is not None else principal.roles_in(tenant)
    return {"tenant": tenant, "roles": sorted(r.value for r in roles), "expert": expert is not None}
