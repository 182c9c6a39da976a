"""Datasets and their labels: the tenant's datasets, a snapshot of one as a new version, a version with its
label issues, one sample in the box editor with its image, and a label fix (which makes the next version). An
invited expert sees only the datasets granted (:func:`lineqa.review.access.check_dataset`: others are 404)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from lineqa.review import api_view, audit
from lineqa.review.access import check_dataset, datasets_within
from lineqa.review.boxes import boxes_json, parse_boxes
from lineqa.review.routing import RouteContext
from lineqa.review.web import image_response


def register(app: FastAPI, ctx: RouteContext) -> None:
    """``datasets``, ``snapshot``, ``dataset_version``, ``sample``, ``sample_image`` and ``fix_labels`` on ``app``."""
    services, settings, page, user_of = ctx.services, ctx.settings, ctx.page, ctx.user_of

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
