"""What the route modules of the review app share, in one object handed to each (:class:`RouteContext`): the
services, the settings, the page renderer and the signed-in principal of a request; and the session cookie's name
and the app's logger, the same for every module.

Each route module (``routes_*``) has one ``register(app, ctx)`` that declares its routes on the app itself, not
on an ``APIRouter``: the app-level guard (:mod:`lineqa.review.app`) then runs before every route, and
``app.routes`` lists each named route, which is what the access table and its test key on (an included router
is one unnamed entry there in this FastAPI).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from lineqa.review.access import may
from lineqa.review.auth import Principal
from lineqa.review.csrf import FORM_FIELD
from lineqa.review.services import ReviewSettings, Services

SESSION_COOKIE = "lineqa_session"
# One logger name for the whole app, whichever module logs: the log shipper's lines carry it (app_log).
logger = logging.getLogger("lineqa.review.app")


@dataclass(frozen=True)
class RouteContext:
    """One app's services and settings, and the helpers every route uses; built once by ``create_app``."""

    services: Services
    settings: ReviewSettings
    env: jinja2.Environment

    def page(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        """``template`` rendered for this request: the principal, tenant, CSRF token and a ``can(route)`` test
        for links and forms (the access table's rule) come with every page."""
        principal: Principal | None = getattr(request.state, "principal", None)
        tenant = request.path_params.get("tenant")

        def can(route: str) -> bool:
            return may(route, principal, tenant)

        html = self.env.get_template(template).render(
            request=request,
            principal=principal,
            tenant=tenant,
            can=can,
            csrf_field=FORM_FIELD,
            csrf_token=principal.csrf_token if principal else "",
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    @staticmethod
    def user_of(request: Request) -> Principal:
        """The principal the guard let through; only for routes that need a session (all but the public ones)."""
        principal: Principal = request.state.principal
        return principal
