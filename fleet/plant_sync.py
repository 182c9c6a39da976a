"""``lineqa plant sync``: a plant keeping up with its hub, in two loops that never stop the line.

- **models down**: a long poll for the tenant's bundle (answered at once when the hub has a newer one, which a
  promotion on the hub makes within about a second), installed when it checks out; then the next poll.
- **data up**: every ``upload_period_s``, what the tenant's data policy allows goes up, until nothing is left.

Neither loop touches the gateway: the gateway's model supervisor follows what the model loop installs in the
repository. When the hub cannot be reached, each loop says so once, keeps what it has (the line keeps judging
with the last bundle installed), and tries again with backoff (1 s doubling to ``retry_max_s``); the first
success after an outage is logged too. ``--once`` does one round of each now (on demand, or from a timer).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lineqa.content_store import ContentStore
from lineqa.fleet.database import open_fleet_database
from lineqa.fleet.errors import FleetError, HubUnreachableError
from lineqa.fleet.plant_link import ChannelSettings, PlantLink
from lineqa.fleet.plant_models import FollowOutcome, ModelFollower
from lineqa.fleet.plant_uploads import Uploader, UploadReport
from lineqa.protos.lineqa.fleet.v1 import fleet_pb2_grpc as pb_grpc
from lineqa.serving.database import database_url
from lineqa.serving.model_repository import ModelRepository

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncSettings:
    wait_s: float = 30.0  # how long one long poll for a newer bundle waits
    upload_period_s: float = 60.0
    retry_max_s: float = 60.0
    batch_size: int = 100
    file_timeout_s: float = 600.0  # one file's download call; a stalled link is noticed sooner, by keepalive
    channel: ChannelSettings = field(default_factory=ChannelSettings)
    hub: str | None = None  # another address for the hub than the one joined with
    db_url: str | None = None
    models: Path | None = None
    images: Path | None = None


class PlantSync:
    def __init__(self, home: Path, settings: SyncSettings) -> None:
        self.settings = settings
        self.link = PlantLink.of(home)
        self.engine = open_fleet_database(database_url(home, settings.db_url))
        self.channel = self.link.channel(settings.channel, settings.hub)
        stub = pb_grpc.HubServiceStub(self.channel)  # type: ignore[no-untyped-call]
        repository = ModelRepository(settings.models or home / "models")
        self.models = ModelFollower(self.link, repository, self.engine, stub, settings.file_timeout_s)
        store = ContentStore(settings.images or home / "images")
        self.uploads = Uploader(self.link, self.engine, store, stub, settings.batch_size)

    def once(self) -> tuple[FollowOutcome, UploadReport]:
        """One round of each, now; the first error of either is raised after both were tried."""
        outcome: FollowOutcome | None = None
        report: UploadReport | None = None
        failure: FleetError | None = None
        try:
            outcome = self.models.follow(0)
        except FleetError as exc:
            failure = exc
        try:
            report = self.uploads.drain()
        except FleetError as exc:
            failure = failure or exc
        if failure is not None or outcome is None or report is None:
            raise failure or FleetError("nothing was done")
        return outcome, report

    def run(self, stop: threading.Event) -> None:
        """Both loops until ``stop`` is set."""
        rounds = (("models", self._follow, 0.0), ("data", self._upload, self.settings.upload_period_s))
        loops = [threading.Thread(target=self._loop, args=(*r, stop), name=f"plant-{r[0]}") for r in rounds]
        for loop in loops:
            loop.start()
        for loop in loops:
            loop.join()

    def _follow(self) -> None:
        outcome = self.models.follow(self.settings.wait_s)
        if outcome.changed:
            logger.info("%s (%d bytes downloaded)", outcome.summary, outcome.received_bytes)

    def _upload(self) -> None:
        report = self.uploads.drain()
        if report.new_parts or report.new_decisions or report.images:
            logger.info("sent %d parts, %d decisions, %d images (%s)", report.new_parts, report.new_decisions,
                        report.images, report.policy)  # fmt: skip

    def _loop(self, name: str, round_once: Callable[[], None], period_s: float, stop: threading.Event) -> None:
        backoff, down_since = 1.0, None
        while not stop.is_set():
            try:
                round_once()
            except HubUnreachableError as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    logger.warning("%s: %s; the line keeps bundle #%d; trying again", name, exc,
                                   self.models.installed_number())  # fmt: skip
            except FleetError as exc:  # a refused bundle (logged where it was refused), a refused plant
                logger.error("%s: %s", name, exc)
            except Exception:
                logger.exception("%s: the round failed; trying again", name)
            else:
                if down_since is not None:
                    logger.warning("%s: the hub answers again (after %.0f s)", name, time.monotonic() - down_since)
                    down_since = None
                backoff = 1.0
                stop.wait(period_s)
                continue
            stop.wait(backoff)
            backoff = min(backoff * 2, self.settings.retry_max_s)

    def close(self) -> None:
        self.channel.close()
        self.engine.dispose()
