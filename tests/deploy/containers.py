"""The container engine for the deployment tests: podman, with the Dockerfile's base image made locally.

No registry is reachable from this project's machines, so the base image named by the Dockerfile's FROM is
made with ``deploy/base-image.sh`` (debootstrap) when podman does not have it; it is kept between runs, so
only the first run pays for it. Where podman is missing or cannot start a container, the tests skip and say
why; a build or a run that fails once the engine works is a failure.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
IMAGE_UID = 10001  # the image's 'lineqa' user, which must own the mounted home
DEPLOYMENT_DOC = REPO / "docs" / "deployment.md"
ENGINE_OPTIONS = ("--restart", "--stop-timeout", "--shm-size")
CA_BUNDLE = Path(os.environ.get("LINEQA_BUILD_CA", "/etc/ssl/certs/ca-certificates.crt"))


def documented_gateway_options() -> tuple[str, ...]:
    """The engine options of the gateway's ``podman run`` in docs/deployment.md (restart policy, stop
    timeout, shared memory): the tests run the container with what the docs tell an operator to use."""
    text = DEPLOYMENT_DOC.read_text().replace("\\\n", " ")
    line = next(row for row in text.splitlines() if row.strip().startswith("podman run -d --name lineqa-gateway"))
    options = tuple(word for word in shlex.split(line) if word.startswith(ENGINE_OPTIONS))
    assert len(options) == len(ENGINE_OPTIONS), f"docs/deployment.md's gateway command lacks one of {ENGINE_OPTIONS}"
    return options


def base_image_name() -> str:
    """The image the Dockerfile builds FROM (its ``BASE_IMAGE`` argument's default)."""
    found = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    if found is None:
        raise AssertionError("the Dockerfile has no 'ARG BASE_IMAGE=...' line")
    return found.group(1)


def podman(*args: str, timeout_s: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout_s)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done


def engine_or_skip() -> str:
    """The base image, ready for builds; skip (with the reason) where no container can run here."""
    if shutil.which("podman") is None:
        pytest.skip("no container engine: podman is not installed (scripts/test installs it where apt can)")
    base = base_image_name()
    if podman("image", "exists", base, check=False).returncode != 0:
        if shutil.which("debootstrap") is None:
            pytest.skip(f"no base image {base} and no debootstrap to make it (no registry is reachable here)")
        made = subprocess.run([str(REPO / "deploy" / "base-image.sh"), base], capture_output=True, text=True,
                              timeout=900)  # fmt: skip
        if made.returncode != 0:
            pytest.skip(f"cannot make the base image {base} here: {(made.stderr or made.stdout)[-1500:]}")
    tried = podman("run", "--rm", "--network", "none", base, "true", check=False, timeout_s=60)
    if tried.returncode != 0:
        pytest.skip(f"podman cannot start a container on this machine: {tried.stderr.strip()[-1500:]}")
    return base


@dataclass(frozen=True)
class Built:
    tag: str
    seconds: float


def build(target: str, tag: str, *options: str) -> Built:
    """Build a target of the Dockerfile, with the host's CA bundle as the build secret for pip's HTTPS."""
    secret = ["--secret", f"id=ca,src={CA_BUNDLE}"] if CA_BUNDLE.is_file() else []
    started = time.monotonic()
    podman("build", "--format", "docker", "--target", target, *secret, *options, "-t", tag, str(REPO), timeout_s=1800)
    seconds = time.monotonic() - started
    # The previous build of this target, untagged now, would keep ~1 GB per source change on a CI machine.
    podman("image", "prune", "--force", "--filter", f"label=org.opencontainers.image.title=lineqa-{target}")
    return Built(tag, seconds)


def own_for_image(path: Path) -> None:
    """Give a host folder to the image's user, as a plant does for the volume it mounts."""
    if os.geteuid() == 0:
        for root, dirs, files in os.walk(path):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(name, IMAGE_UID, IMAGE_UID, follow_symlinks=False)
    else:
        podman("unshare", "chown", "-R", f"{IMAGE_UID}:{IMAGE_UID}", str(path))


@contextmanager
def running(image: str, *args: str, ports: dict[int, int], home: Path, options: tuple[str, ...] = ()) -> Iterator[str]:
    """A detached container of ``image`` with ``home`` as its data volume, container ports published on
    loopback (container port -> host port) and podman ``options``; removed afterwards, its log printed."""
    name = f"lineqa-test-{uuid.uuid4().hex[:10]}"
    published = [f"--publish=127.0.0.1:{host}:{inside}" for inside, host in ports.items()]
    podman("run", "--detach", "--name", name, f"--volume={home}:/var/lib/lineqa", *published, *options, image, *args)
    try:
        yield name
    finally:
        log = podman("logs", name, check=False)
        print(f"--- {name} log (tail) ---\n{(log.stdout + log.stderr)[-6000:]}")
        podman("rm", "--force", "--time", "5", name, check=False)
