"""The embedded Triton Inference Server: the ``tritonserver`` binary that the ``nvidia-pytriton`` wheel ships.

This is the default for ``lineqa serve`` with no Triton URL: one machine, nothing else to install, the same
gRPC protocol and client code as NVIDIA's Triton container in production. It runs the binary directly, not
through PyTriton's proxy (whose one-second handshake failed starts on a busy machine), with Triton's Python
backend: every model instance is a backend stub process of Triton's own running ONNX Runtime
(:mod:`lineqa.serving.triton_python_model`) on a derived view of the model repository
(:mod:`lineqa.serving.triton_view`).

Triton runs in explicit model-control mode: it starts with no model, and :meth:`EmbeddedTriton.load` loads
exactly the versions the gateway asks for, through the model-control API; a promotion loads the new version
beside the old one and a second load unloads the old one, on the same server.

Security (RELIABILITY.md 19): every endpoint listens on 127.0.0.1 only; the model-control, shared-memory,
statistics, trace and logging APIs (gRPC and HTTP) answer only calls carrying a per-process random key.

Robustness: a start is retried with backoff, on fresh ports, for a bounded total time, and a final failure
names the cause with the last lines of Triton's log. Triton and its stubs die with the gateway, even when the
gateway is SIGKILLed: Triton runs under a small guardian (``triton_guardian.sh``) that the kernel signals
when the gateway dies (:mod:`lineqa.serving.child_process`), and that kills Triton's whole process group,
stubs included, and removes their shared memory, whenever Triton ends (Triton's stubs do not reliably notice a
killed server by themselves).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lineqa.serving.child_process import kill_group, spawn_bound, stop_group
from lineqa.serving.errors import ServingError
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.triton_view import build_view

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
RESTRICTED_APIS = ("model-repository", "shared-memory", "statistics", "trace", "logging")
ADMIN_HEADER = "lineqa-admin-key"
# Triton's gRPC server looks for a restricted protocol's key under this prefix (its HTTP server, bare).
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"
WORKDIR_PREFIX = "lineqa-triton-"
SHM_PREFIX = "lineqa-"  # + the gateway's pid: its stubs' regions in /dev/shm
LOG_TAIL_LINES = 25
GUARDIAN = Path(__file__).with_name("triton_guardian.sh")


class EmbeddedTritonError(ServingError):
    """The embedded Triton server could not start, or could not load a model."""


def free_port(avoid: frozenset[int] = frozenset()) -> int:
    """A port free on loopback now and not in ``avoid`` (Triton needs explicit ports; a start that loses the
    race is retried). ``avoid`` holds the ports the gateway itself is about to listen on: its default 50051
    lies in Linux's ephemeral range, so a Triton started first could otherwise take it (seen on a restart)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port


@dataclass(frozen=True)
class TritonDistribution:
    """Where the ``nvidia-pytriton`` wheel keeps the server, the Python backend, its stub and its libraries."""

    server: Path
    backend: Path
    stub: Path
    libraries: Path

    @classmethod
    def installed(cls) -> TritonDistribution:
        import pytriton

        root = Path(pytriton.__file__).parent / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        found = cls(
            server=root / "bin" / "tritonserver",
            backend=root / "backends" / "python",
            stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
            libraries=Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs",
        )
        missing = [str(p) for p in (found.server, found.backend, found.stub, found.libraries) if not p.exists()]
        if missing:
            raise EmbeddedTritonError(
                f"the nvidia-pytriton wheel lacks {', '.join(missing)} (a Triton Python-backend stub for Python "
                f"{version} is needed): reinstall it, or point the gateway at a Triton with --triton-url"
            )
        return found

    def backends_folder(self, workdir: Path) -> Path:
        """A backend folder for ``--backend-directory``: Triton's Python backend with the stub for this Python."""
        python = workdir / "backends" / "python"
        python.mkdir(parents=True, exist_ok=True)
        for source in (self.backend / "libtriton_python.so", self.backend / "triton_python_backend_utils.py"):
            (python / source.name).symlink_to(source)
        (python / "triton_python_backend_stub").symlink_to(self.stub)
        return python.parent

    def environment(self) -> dict[str, str]:
        """The server's environment: its bundled libraries; the interpreter's ``libpython3.X.so``, which the
        stub loads (pyenv-style interpreters keep it off the system path); and this environment's ``bin``
        first on PATH. The stub's embedded interpreter ignores PYTHONPATH and finds its prefix by looking for
        ``python3`` on PATH: it must find this virtual environment's, or it runs on the base interpreter's
        packages (another numpy, no ONNX Runtime), and its tensors come back empty."""
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        libraries = [str(self.libraries), libdir, os.environ.get("LD_LIBRARY_PATH", "")]
        paths = [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
        return {
            **os.environ,
            "LD_LIBRARY_PATH": ":".join(p for p in libraries if p),
            "PATH": ":".join(p for p in paths if p),
        }


@dataclass(frozen=True)
class TritonEndpoints:
    grpc_port: int
    http_port: int
    metrics_port: int

    @property
    def grpc_url(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}/metrics"

    @classmethod
    def pick(cls, metrics_port: int, avoid: frozenset[int] = frozenset()) -> TritonEndpoints:
        return cls(free_port(avoid), free_port(avoid), metrics_port or free_port(avoid))


@dataclass(frozen=True)
class EmbeddedTritonSettings:
    ort_threads: int = 0  # 0: one single-threaded ONNX Runtime session per core
    start_timeout_s: float = 120.0  # all attempts together
    attempt_timeout_s: float = 60.0
    load_timeout_s: float = 120.0
    metrics_port: int = 0  # 0: any free port
    reserved_ports: frozenset[int] = frozenset()  # the gateway's own ports: never picked for Triton
    exit_timeout_s: int = 5  # Triton's own wait for in-flight requests when told to stop
    workdir_parent: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))


class EmbeddedTriton:
    """The embedded server: :meth:`start`, :meth:`load` what to serve, :meth:`stop` (or use ``with``).

    Blocking methods: call them from a worker thread in async code."""

    def __init__(self, repository: ModelRepository, settings: EmbeddedTritonSettings | None = None) -> None:
        self.repository = repository
        self.settings = settings or EmbeddedTritonSettings()
        self.distribution = TritonDistribution.installed()
        self.admin_key = secrets.token_hex(16)
        self.endpoints = TritonEndpoints.pick(self.settings.metrics_port, self.settings.reserved_ports)
        self.loaded: dict[str, frozenset[int]] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    @property
    def admin_headers(self) -> dict[str, str]:
        """gRPC metadata that opens the restricted APIs (model control) of this server."""
        return {GRPC_HEADER_PREFIX + ADMIN_HEADER: self.admin_key}

    @property
    def log_path(self) -> Path:
        return self._prepared_workdir() / "triton.log"

    @property
    def view(self) -> Path:
        return self._prepared_workdir() / "view"

    def _prepared_workdir(self) -> Path:
        if self._workdir is None:
            _remove_stale_workdirs(self.settings.workdir_parent)
            self._workdir = Path(
                tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-", dir=self.settings.workdir_parent)
            )
            self.distribution.backends_folder(self._workdir)
            (self._workdir / "view").mkdir()
        return self._workdir

    def _command(self, endpoints: TritonEndpoints) -> list[str]:
        """The guardian with tritonserver under it (see ``triton_guardian.sh``)."""
        restricted = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}={self.admin_key}"
        workdir = self._prepared_workdir()
        # Backend stubs' shared-memory regions are named per server, so two gateways on a host never meet.
        shm_prefix = f"{SHM_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-"
        guardian = ["sh", str(GUARDIAN), str(workdir / "triton.pid"), shm_prefix, str(self.settings.exit_timeout_s + 3)]
        return [
            *guardian,
            str(self.distribution.server),
            f"--model-repository={self.view}",
            f"--backend-directory={workdir / 'backends'}",
            "--model-control-mode=explicit",
            "--disable-auto-complete-config",
            # Server readiness means the server is up; the gateway asks after each model version it uses (by
            # default one version Triton refused to load would make the whole server "not ready").
            "--strict-readiness=false",
            f"--grpc-address={LOOPBACK}", f"--grpc-port={endpoints.grpc_port}",
            f"--http-address={LOOPBACK}", f"--http-port={endpoints.http_port}",
            f"--metrics-address={LOOPBACK}", f"--metrics-port={endpoints.metrics_port}",
            "--allow-metrics=true", "--allow-gpu-metrics=false", "--allow-cpu-metrics=true",
            f"--grpc-restricted-protocol={restricted}",
            f"--http-restricted-api={restricted}",
            f"--exit-timeout-secs={self.settings.exit_timeout_s}",
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        ]  # fmt: skip

    def start(self, wanted: Mapping[str, Iterable[int]] | None = None) -> TritonEndpoints:
        """Start the server (retried with backoff for up to ``start_timeout_s``), then load ``wanted``."""
        started = time.monotonic()
        deadline = started + self.settings.start_timeout_s
        backoff, attempt = 0.5, 0
        while True:
            attempt += 1
            cause = self._attempt(deadline)
            if cause is None:
                break
            if time.monotonic() + backoff >= deadline:
                raise EmbeddedTritonError(
                    f"the embedded Triton did not start in {attempt} attempts ({time.monotonic() - started:.0f} s): "
                    f"{cause}\n{self.log_tail()}"
                )
            logger.warning("embedded Triton start attempt %d failed (%s); retrying in %.1f s", attempt, cause, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, 8.0)
            # a port may have been taken
            self.endpoints = TritonEndpoints.pick(self.settings.metrics_port, self.settings.reserved_ports)
        logger.info("embedded Triton up on %s after %d attempt(s)", self.endpoints.grpc_url, attempt)
        self.loaded = {}
        if wanted:
            self.load(wanted)
        return self.endpoints

    def _attempt(self, deadline: float) -> str | None:
        """One start; the reason it failed, or None when the server is live and ready."""
        import tritonclient.grpc as triton_grpc

        with self.log_path.open("ab") as log:
            log.write(f"---- lineqa: starting tritonserver at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            log.flush()
            self._process = spawn_bound(
                self._command(self.endpoints), env=self.distribution.environment(), output=log, death_signal="TERM"
            )
        attempt_deadline = min(deadline, time.monotonic() + self.settings.attempt_timeout_s)
        client = triton_grpc.InferenceServerClient(self.endpoints.grpc_url)
        try:
            while time.monotonic() < attempt_deadline:
                status = self._process.poll()
                if status is not None:  # the guardian ends with Triton, its group cleared
                    return f"tritonserver exited with status {status}"
                try:
                    if client.is_server_live(client_timeout=1.0) and client.is_server_ready(client_timeout=1.0):
                        return None
                except Exception:  # not listening yet
                    pass
                time.sleep(0.1)
        finally:
            client.close()
        self._kill()
        return f"tritonserver was not ready within {self.settings.attempt_timeout_s:.0f} s"

    def load(self, wanted: Mapping[str, Iterable[int]]) -> None:
        """Make Triton serve exactly ``wanted`` (model name → versions): rebuild the view, load every model
        whose versions change (Triton loads new versions beside the old ones, then drops those no longer
        named), unload models no longer wanted. Raises EmbeddedTritonError naming Triton's reason; the
        versions that were being served then stay served."""
        import tritonclient.grpc as triton_grpc
        from tritonclient.utils import InferenceServerException

        target = {name: frozenset(versions) for name, versions in wanted.items()}
        changed = {name: versions for name, versions in target.items() if self.loaded.get(name) != versions}
        gone = [name for name in self.loaded if name not in target]
        if not changed and not gone:
            return
        build_view(self.repository, {**self.loaded, **changed}, self.view, ort_threads=self.settings.ort_threads)
        client = triton_grpc.InferenceServerClient(self.endpoints.grpc_url)
        try:
            for name, versions in changed.items():
                try:
                    client.load_model(name, headers=self.admin_headers, client_timeout=self.settings.load_timeout_s)
                    ready = all(client.is_model_ready(name, str(v), client_timeout=5.0) for v in versions)
                except InferenceServerException as exc:
                    self._restore_view()
                    message = f"Triton could not load {name} {sorted(versions)}: {exc.message()}"
                    raise EmbeddedTritonError(message) from exc
                if not ready:
                    self._restore_view()
                    raise EmbeddedTritonError(f"Triton loaded {name} but not all of versions {sorted(versions)}")
                self.loaded[name] = versions
                logger.info("embedded Triton serves %s versions %s", name, sorted(versions))
            for name in gone:
                client.unload_model(name, headers=self.admin_headers, client_timeout=self.settings.load_timeout_s)
                del self.loaded[name]
        finally:
            client.close()
        build_view(self.repository, self.loaded, self.view, ort_threads=self.settings.ort_threads)

    def _restore_view(self) -> None:
        """Put the view back to what is loaded, so that a later reload cannot pick up a refused version."""
        build_view(self.repository, self.loaded, self.view, ort_threads=self.settings.ort_threads)

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def restart(self) -> TritonEndpoints:
        """Stop (if still running) and start again, loading what was loaded."""
        loaded = dict(self.loaded)
        self._kill()
        return self.start(loaded)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of Triton's log, for an error message a person can act on."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"(no log at {self.log_path})"
        return f"last lines of {self.log_path}:\n" + "\n".join(f"  {line}" for line in text)

    def _triton_group(self) -> int | None:
        """Triton's process group (its pid, as the guardian wrote it), if known."""
        try:
            return int(self.log_path.with_name("triton.pid").read_text())
        except (OSError, ValueError):
            return None

    def _kill(self) -> None:
        """Kill Triton, its stubs and its guardian now."""
        process, self._process = self._process, None
        if process is not None:
            group = self._triton_group()
            if group is not None:
                kill_group(group)
            kill_group(process.pid)
            process.wait()

    def stop(self) -> None:
        """Stop Triton (it finishes in-flight requests for up to ``exit_timeout_s``) and every stub; remove
        the working folder."""
        process, self._process = self._process, None
        if process is not None:
            group = self._triton_group()
            stop_group(process, self.settings.exit_timeout_s + 8.0)  # the guardian stops Triton, then clears up
            if group is not None:
                kill_group(group)  # only if the guardian itself did not get to it
        workdir, self._workdir = self._workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    def __enter__(self) -> EmbeddedTriton:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _remove_stale_workdirs(parent: Path) -> None:
    """What gateways that were killed left behind (their process is gone): working folders, a Triton or stubs
    still running from one (an old release, or a guardian killed outright), their shared memory."""
    for folder in parent.glob(f"{WORKDIR_PREFIX}*-*"):
        pid = folder.name.removeprefix(WORKDIR_PREFIX).split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            _kill_processes_using(folder)
            for region in Path("/dev/shm").glob(f"{SHM_PREFIX}{pid}-*"):
                region.unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)


def _kill_processes_using(folder: Path) -> None:
    """SIGKILL every process whose command line names ``folder`` (Triton and its stubs run from it)."""
    marker = str(folder).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue
