"""Benchmark the review queue's orders on a large backlog: a queue page and a part's previous/next links.

    python benchmarks/bench_review_queue.py [--parts 5000] [--repeat 5] [--db URL]

Writes ``--parts`` pending flagged parts (random scores around the recipe's thresholds, a few parts judged by
two model versions) into a fresh SQLite database (or the empty database ``--db``), then prints milliseconds
per call (median of ``--repeat``) for the first queue page and for a part's neighbours, most uncertain first
and newest first. The uncertainty order ranks the newest ``RANK_LIMIT`` matching parts in Python; this shows
what that costs at and past the limit.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import timeit
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import insert

from lineqa.db import sqlite_url
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.review.database import open_review_database
from lineqa.review.queue import RANK_LIMIT, ReviewQueue
from lineqa.review.queue_filter import QueueFilter
from lineqa.serving.pass_sample import PassSample
from lineqa.serving.schema import inspections
from lineqa.vision.recipe import parse_recipe

RECIPE = parse_recipe("id: pcb\nmodel: {name: pcb}\ndefaults: {fail_confidence: 0.5, review_confidence: 0.3}\n")
CLASSES = ("open", "short", "mousebite", "spur", "copper", "pin-hole")


def rows(count: int, seed: int = 0) -> list[dict[str, object]]:
    rng = random.Random(seed)
    start = datetime(2026, 3, 2, tzinfo=timezone.utc)
    out = []
    for i in range(count):
        defects = []
        for _ in range(rng.randint(1, 3)):
            confidence = round(rng.uniform(0.3, 0.95), 3)
            x, y = rng.uniform(0, 280), rng.uniform(0, 280)
            defects.append({"class": rng.choice(CLASSES), "confidence": confidence, "box": [x, y, x + 30, y + 30],
                            "area_px": 900.0, "area_mm2": None,
                            "disposition": "defect" if confidence >= 0.5 else "review"})  # fmt: skip
        verdict = "FAIL" if any(d["disposition"] == "defect" for d in defects) else "REVIEW"
        out.append({
            "record_id": str(uuid.UUID(int=rng.getrandbits(128))), "tenant": "acme", "line_id": "line-1",
            "camera_id": f"cam-{i % 4}", "sequence": i, "part_id": f"SN-{i // 2 if i % 50 == 0 else i}",
            "receive_time": start + timedelta(seconds=i), "model_name": "pcb", "model_version": 1 + (i % 100 == 0),
            "recipe_id": "pcb", "recipe_version": RECIPE.version, "image_sha256": "0" * 64, "image_key": None,
            "verdict": verdict, "error_code": "", "defects_json": json.dumps(defects), "service_version": "bench",
            "result": pb.InspectionResult().SerializeToString(),
        })  # fmt: skip
    return out


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    """Milliseconds per call, the median of ``repeat`` calls after one to warm up."""
    return 1e3 * statistics.median(timeit.repeat(fn, number=1, repeat=repeat + 1)[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=RANK_LIMIT)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db", help="an empty database URL (default: SQLite in a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        engine = open_review_database(args.db or sqlite_url(Path(folder) / "bench.db"))
        with engine.begin() as conn:
            conn.execute(insert(inspections), rows(args.parts))
        queue = ReviewQueue(engine, PassSample(5), lambda recipe_id, version: RECIPE)
        middle = queue.page("acme", QueueFilter(order="newest", page=max(1, args.parts // 100))).rows[0].record_id
        print(f"{args.parts} pending flagged parts (the uncertainty order ranks the newest {RANK_LIMIT})")
        for order in ("uncertain", "newest"):
            wanted = QueueFilter(order=order)
            page_ms = median_ms(lambda: queue.page("acme", wanted), args.repeat)  # noqa: B023
            near_ms = median_ms(lambda: queue.neighbours("acme", wanted, middle), args.repeat)  # noqa: B023
            print(f"  {order:>9}: first page {page_ms:7.1f} ms   a part's previous/next {near_ms:7.1f} ms")
        engine.dispose()


if __name__ == "__main__":
    main()
