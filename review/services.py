"""What the review app is configured with and what it builds from that once: the validated settings and the
app's state (database engine, content store and the stores over them). Apart from :mod:`lineqa.review.app`, so
that the route modules can name these types without importing the module that imports them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from lineqa.content_store import ContentStore
from lineqa.review import dashboards
from lineqa.review.auth import UserStore
from lineqa.review.database import open_review_database
from lineqa.review.decisions import Decisions
from lineqa.review.errors import ReviewError
from lineqa.review.experts import ExpertGrants
from lineqa.review.labelling import Labelling
from lineqa.review.queue import ReviewQueue
from lineqa.review.runs import TrainingRuns
from lineqa.review.uncertainty import recipe_versions
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.pass_sample import PassSample
from lineqa.serving.recipes import RecipeStore


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


def build_services(settings: ReviewSettings) -> Services:
    """The app's state from ``settings``; a bad time zone or shift list fails here, before the app serves."""
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
