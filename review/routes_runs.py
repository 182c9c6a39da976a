"""Training runs, read-only: the tenant's runs, one run's metrics and settings, and its evaluation pictures. An
invited expert sees only the runs granted (:func:`lineqa.review.access.check_run`: others are 404)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response

from lineqa.review import api_view, web
from lineqa.review.access import check_run, runs_within
from lineqa.review.routing import RouteContext


def register(app: FastAPI, ctx: RouteContext) -> None:
    """``runs``, ``run`` and ``run_picture`` on ``app``."""
    services, page, user_of = ctx.services, ctx.page, ctx.user_of

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
