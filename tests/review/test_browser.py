"""The review app in a real headless Chromium (Debian's, driven by Playwright) against a real
``lineqa review serve`` over TLS: sign in, open the queue, open a flagged part, correct its boxes with the
mouse and keyboard, save; confirm the next part; the audit entries and the dataset samples exist
afterwards. Screenshots of the queue, the editor and the dashboard go to test-artifacts/."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lineqa.content_store import ContentStore
from lineqa.datasets.catalog import Catalog
from lineqa.db import sqlite_url
from lineqa.review import audit
from lineqa.review.database import open_review_database
from lineqa.serving.embedded_triton import free_port
from lineqa.serving.pki import PlantPki
from tests.review.conftest import PASSWORD, make_site

pytestmark = pytest.mark.slow
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need Playwright (the dev extra)")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium: a skip where it is absent, a failure in CI (CI=true), where scripts/test installs it."""
    found = os.environ.get("LINEQA_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        message = "no chromium on PATH (apt-get install chromium, or set LINEQA_TEST_CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def wait_for_app(url: str, ca: Path, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"lineqa review serve exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/login", context=context, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"lineqa review serve did not answer within {timeout_s} s")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, list[str]]]]:
    home = tmp_path / "home"
    home.mkdir()
    site = make_site(sqlite_url(home / "lineqa.db"), home)
    site.app.state.services.engine.dispose()
    PlantPki(home / "pki").init(["localhost", "127.0.0.1"])
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "lineqa.cli",
        "review",
        "--home",
        str(home),
        "serve",
        "--port",
        str(port),
        "--pass-sample",
        "0",
    ]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"https://localhost:{port}"
        wait_for_app(url, home / "pki" / "ca.pem", process)
        yield url, home, site.parts
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=30)
        assert PASSWORD.encode() not in errors


def test_review_in_a_real_browser(served: tuple[str, Path, dict[str, list[str]]], chromium: str,
                                  artifacts_dir: Path) -> None:  # fmt: skip
    url, home, parts = served
    fail, review = parts["acme"][:2]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.goto(f"{url}/t/acme/queue")
        assert "/login" in page.url  # signed out: to the login form, and back after it
        page.fill("input[name=username]", "qa")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/t/acme/queue")
        cookie = next(c for c in context.cookies() if c["name"] == "lineqa_session")
        assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        assert page.locator("a.part-link").count() == 3  # the flagged parts (no PASS sample asked for)
        page.screenshot(path=str(artifacts_dir / "review-queue.png"), full_page=True)

        page.click(f"a[href='/t/acme/parts/{fail}']")
        page.wait_for_selector("svg#canvas[data-ready=true]")
        box = page.locator("g.box rect[data-index='0']").first.bounding_box()
        assert box is not None
        start_x, start_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(start_x, start_y)  # move the model's box right and down by dragging it
        page.mouse.down()
        page.mouse.move(start_x + 60, start_y + 30, steps=6)
        page.mouse.up()
        page.keyboard.press("2")  # the selected box becomes class 2 (short)
        page.keyboard.press("ArrowRight")  # and one more pixel to the right
        canvas = page.locator("svg#canvas").bounding_box()
        assert canvas is not None
        corner_x, corner_y = canvas["x"] + canvas["width"] * 0.75, canvas["y"] + canvas["height"] * 0.75
        page.keyboard.press("Escape")
        page.keyboard.press("3")  # the next box drawn is class 3 (mousebite)
        page.mouse.move(corner_x, corner_y)  # draw a new box
        page.mouse.down()
        page.mouse.move(corner_x + 50, corner_y + 40, steps=5)
        page.mouse.up()
        assert page.locator("#box-list tr").count() == 2
        page.fill("textarea[name=reason]", "moved and reclassed; a missed mousebite")
        page.screenshot(path=str(artifacts_dir / "review-editor.png"), full_page=True)
        page.locator("svg#canvas").focus()
        with page.expect_navigation():
            page.keyboard.press("Enter")  # save the corrected boxes, then on to the next pending part
        assert f"done={fail}" in page.url and "Decision recorded" in page.content()

        page.goto(f"{url}/t/acme/parts/{review}")
        page.wait_for_selector("svg#canvas[data-ready=true]")
        with page.expect_navigation():
            page.click("#confirm-button")

        page.goto(f"{url}/t/acme/dashboard?days=366")
        page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=str(artifacts_dir / "review-dashboard.png"), full_page=True)
        browser.close()

    engine = open_review_database(sqlite_url(home / "lineqa.db"))
    entries = {e.object: e for e in audit.entries(engine, "acme")}
    corrected = entries[f"part:{fail}"]
    assert corrected.actor == "qa" and corrected.new["decision"] == "correct"
    assert corrected.reason == "moved and reclassed; a missed mousebite"
    moved, drawn = corrected.new["labels"]
    assert moved["class"] == "short" and drawn["class"] == "mousebite"
    x1, y1, x2, y2 = moved["box"]
    assert x1 > 40 + 5 and y1 > 50 + 2 and round(x2 - x1) == 80 and round(y2 - y1) == 60  # moved, same size
    assert entries[f"part:{review}"].new["decision"] == "confirm"
    samples = {s.name: s for s in Catalog(engine, ContentStore(home / "images"), "acme").working_samples("reviewed")}
    assert [b.class_name for b in samples[f"parts/{fail}.jpg"].boxes] == ["short", "mousebite"]
    assert [b.class_name for b in samples[f"parts/{review}.jpg"].boxes] == ["short"]
    engine.dispose()
    for name in ("review-queue.png", "review-editor.png", "review-dashboard.png"):
        assert (artifacts_dir / name).stat().st_size > 10_000
