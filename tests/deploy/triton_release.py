"""What the production Triton of the Compose and Kubernetes files must be (RELIABILITY.md 19): a release that
carries every 2025 Triton security fix, with model control and shared-memory registration closed to callers.

The releases come from NVIDIA's bulletins (CVE records: "all versions prior to ..."); a newer release also
carries them, an older one does not."""

from __future__ import annotations

import re
import shlex

# bulletin -> the first release with its fixes
SECURITY_FIXES = {
    "August 2025: CVE-2025-23310, -23311, -23317, -23318, -23319, -23320, -23334 and others": (25, 7),
    "September 2025: CVE-2025-23316 (Python backend, model control), CVE-2025-23268 (DALI)": (25, 8),
    "December 2025: CVE-2025-33201, CVE-2025-33211 (denial of service)": (25, 10),
}
FIXED_RELEASE = max(SECURITY_FIXES.values())
CLOSED = {"model-repository", "shared-memory"}  # at least these API groups need the restricted header
IMAGE = re.compile(r"nvcr\.io/nvidia/tritonserver:(\d\d)\.(\d\d)-py3")


def check_release(image: str) -> tuple[int, int]:
    """The image's release, which must carry every 2025 fix."""
    found = IMAGE.search(image)
    assert found, f"{image}: not an NGC tritonserver release tag"
    release = (int(found[1]), int(found[2]))
    assert release >= FIXED_RELEASE, f"{image}: before {FIXED_RELEASE}, it lacks fixes of {SECURITY_FIXES}"
    return release


def check_command(command: str) -> dict[str, set[str]]:
    """Triton's command line (as the shell would run it): model control by polling, never by API calls; model
    control and shared memory restricted on gRPC and HTTP. Returns the restricted groups per protocol."""
    words = shlex.split(command.replace(";", " ; "))
    flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--") and "=" in w)
    assert flags.get("model-control-mode") == "poll", flags
    restricted = {}
    for flag in ("grpc-restricted-protocol", "http-restricted-api"):
        groups, _, header = flags.get(flag, "").partition(":")
        key, _, value = header.partition("=")
        assert key and value, f"--{flag} needs a header name and value: {flags.get(flag)!r}"
        restricted[flag] = set(groups.split(","))
        assert restricted[flag] >= CLOSED, f"--{flag} leaves {CLOSED - restricted[flag]} open"
    return restricted
