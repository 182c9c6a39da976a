"""The hot folder: every file captured once across restarts of the agent and of its spool, never half-written;
judged files to the done folder, the rest to the error folder; a rewritten file is a new one. Synthetic images
(the behaviour is about files, not their content), a real spool."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from lineqa.cli import main
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.camera.hot_folder import HotFolderSettings, HotFolderSource
from lineqa.serving.camera.model import Capture
from lineqa.serving.camera.sources import SourceError, open_source
from lineqa.serving.camera.spool import Spool

QUICK = HotFolderSettings(settle_s=0.2, poll_s=0.05)


def png(value: int, size: int = 48) -> bytes:
    return bytes(cv2.imencode(".png", np.full((size, size, 3), value, np.uint8))[1].tobytes())


def drop(folder: Path, name: str, data: bytes, age_s: float = 5.0) -> Path:
    """A file the machine finished writing ``age_s`` ago."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def verdict(sequence: int, value: pb.Verdict, code: pb.ErrorCode = pb.ERROR_CODE_UNSPECIFIED) -> pb.InspectionResult:
    result = pb.InspectionResult(verdict=value)
    result.frame.sequence = sequence
    result.error.code = code
    return result


class Agent:
    """What the camera agent does with a source, in a thread: each capture into the spool."""

    def __init__(self, source: HotFolderSource, spool: Spool) -> None:
        self.source, self.spool = source, spool
        self.captured: list[tuple[int, Capture]] = []
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        for capture in self.source.captures():
            self.captured.append((self.spool.append(capture), capture))

    def wait_for(self, count: int, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.captured) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.captured) >= count, f"captured {len(self.captured)} of {count}"

    def ended(self, timeout_s: float = 5.0) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def stop(self) -> None:
        self.source.close()
        assert self.ended()


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "line"
    path.mkdir()
    yield path


def test_each_file_is_captured_once_across_restarts(folder: Path, tmp_path: Path) -> None:
    for number in range(5):
        drop(folder, f"part{number}.png", png(number * 10))
    spool = Spool(tmp_path / "spool.db")
    agent = Agent(HotFolderSource(folder, spool, QUICK, rate_fps=20), spool)
    agent.wait_for(2)
    agent.stop()  # the agent stops (or dies) with frames spooled, not judged
    spool.close()

    spool = Spool(tmp_path / "spool.db")  # the spool restarts too
    first = agent.captured
    kept = {frame.sequence: frame.capture.part_id for frame in spool.pending()}
    assert kept == {sequence: capture.part_id for sequence, capture in first}  # same sequence numbers
    again = Agent(HotFolderSource(folder, spool, QUICK), spool)
    again.wait_for(5 - len(first))
    time.sleep(0.3)
    parts = [capture.part_id for _, capture in first + again.captured]
    assert sorted(parts) == [f"part{number}" for number in range(5)]  # each once, none twice
    assert not again.ended(0.2)  # without --watch it ends only once every captured file's frame has ended
    for frame in spool.pending():
        spool.finish(frame.sequence, verdict(frame.sequence, pb.VERDICT_PASS), late=False)
    assert again.ended()
    assert all(capture.data == (folder / capture.origin).read_bytes() for _, capture in again.captured)


def test_a_file_still_being_written_is_not_taken_half_written(folder: Path, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    agent = Agent(HotFolderSource(folder, spool, HotFolderSettings(watch=True, settle_s=0.4, poll_s=0.05)), spool)
    data = png(200, size=256)
    path = folder / "slow.png"
    with path.open("wb") as file:  # a slow network copy: a chunk every 0.15 s
        for start in range(0, len(data), len(data) // 6 + 1):
            file.write(data[start : start + len(data) // 6 + 1])
            file.flush()
            time.sleep(0.15)
    agent.wait_for(1)
    time.sleep(0.5)
    agent.stop()
    assert [capture.data for _, capture in agent.captured] == [data]
    assert agent.captured[0][1].file is not None and agent.captured[0][1].file.size == len(data)


def test_judged_files_go_to_done_and_the_rest_to_errors(folder: Path, tmp_path: Path) -> None:
    done, errors = tmp_path / "done", folder / "errors"  # an error folder inside the watched one is skipped
    drop(folder, "a.png", png(1))
    drop(folder, "sub/b.png", png(2))
    drop(folder, "c.png", png(3))
    drop(folder, "junk.jpg", b"GIF89a not a jpeg")
    drop(done, "a.png", b"an earlier part a")
    spool = Spool(tmp_path / "spool.db")
    settings = HotFolderSettings(done_dir=done, error_dir=errors, settle_s=0.2, poll_s=0.05)
    agent = Agent(HotFolderSource(folder, spool, settings, pattern="**/*.png"), spool)
    agent.wait_for(3)
    by_part = {capture.part_id: sequence for sequence, capture in agent.captured}
    spool.finish(by_part["a"], verdict(by_part["a"], pb.VERDICT_FAIL), late=False)
    spool.finish(by_part["b"], verdict(by_part["b"], pb.VERDICT_PASS), late=False)
    spool.finish(by_part["c"], verdict(by_part["c"], pb.VERDICT_ERROR, pb.ERROR_CODE_INVALID_IMAGE), late=False)
    assert agent.ended()
    assert sorted(
        p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file() and "spool" not in p.name
    ) == [
        "done/a-1.png",
        "done/a.png",
        "done/sub/b.png",
        "line/errors/c.png",
        "line/junk.jpg",  # not matching **/*.png: never looked at
    ]
    assert (done / "a-1.png").read_bytes() == png(1)
    assert spool.captured_files() == set()  # moved files are forgotten: a new file of that name is a new part

    drop(folder, "a.png", png(4))
    drop(folder, "junk.png", b"\x89PNG truncated")
    agent = Agent(HotFolderSource(folder, spool, settings, pattern="**/*.png"), spool)
    agent.wait_for(1)
    ((sequence, capture),) = agent.captured
    assert capture.data == png(4) and sequence > max(by_part.values())
    spool.finish(sequence, verdict(sequence, pb.VERDICT_PASS), late=False)
    assert agent.ended()
    assert (done / "a-2.png").read_bytes() == png(4)
    assert (errors / "junk.png").read_bytes() == b"\x89PNG truncated"  # unreadable: never sent


def test_without_done_folder_a_file_is_remembered_until_it_is_rewritten(folder: Path, tmp_path: Path) -> None:
    path = drop(folder, "p.png", png(5))
    spool = Spool(tmp_path / "spool.db")
    agent = Agent(HotFolderSource(folder, spool, QUICK), spool)
    agent.wait_for(1)
    spool.finish(agent.captured[0][0], verdict(agent.captured[0][0], pb.VERDICT_PASS), late=False)
    assert agent.ended()
    assert path.exists()
    again = Agent(HotFolderSource(folder, spool, QUICK), spool)
    assert again.ended() and again.captured == []  # judged already: not captured again
    drop(folder, "p.png", png(6))  # the machine reused the name for a new part
    again = Agent(HotFolderSource(folder, spool, QUICK), spool)
    again.wait_for(1)
    assert again.captured[0][1].data == png(6)
    again.stop()


def test_a_watched_folder_takes_new_files_until_stopped(folder: Path, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    agent = Agent(HotFolderSource(folder, spool, HotFolderSettings(watch=True, settle_s=0.1, poll_s=0.05)), spool)
    for number in range(3):
        drop(folder, f"n{number}.png", png(number))
        agent.wait_for(number + 1)
    drop(folder, ".n3.png", png(9))  # a copier's temporary name: ignored
    time.sleep(0.3)
    started = time.monotonic()
    agent.stop()
    assert time.monotonic() - started < 1
    assert [capture.part_id for _, capture in agent.captured] == ["n0", "n1", "n2"]


def test_hot_folder_options_are_checked(folder: Path, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    empty = open_source(str(folder), spool=spool)  # a restarted agent finds the folder it emptied: nothing to do
    assert isinstance(empty, HotFolderSource) and list(empty.captures()) == []
    assert isinstance(open_source(str(folder), spool=spool, hot=HotFolderSettings(watch=True)), HotFolderSource)
    with pytest.raises(SourceError, match="cannot be the folder itself"):
        open_source(str(folder), spool=spool, hot=HotFolderSettings(done_dir=folder, watch=True))
    with pytest.raises(SourceError, match="not --loop"):
        open_source(str(folder), spool=spool, loop=True, hot=HotFolderSettings(watch=True))
    with pytest.raises(SourceError, match="hot, spool does not apply"):
        open_source("synthetic:metal", spool=spool, hot=HotFolderSettings())


@pytest.mark.parametrize(
    ("source", "options", "message"),
    [
        ("FOLDER", ["--trigger", "rate"], "a folder source gives every file once"),
        ("FOLDER", ["--loop", "--done-dir", "done"], "apply to a folder without --loop"),
        ("synthetic:metal", ["--watch"], "apply to a folder without --loop"),
        ("FOLDER", ["--stream-deadline-s", "0"], "invalid stream settings"),
    ],
)
def test_camera_cli_refuses_options_that_cannot_apply(
    folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    source: str,
    options: list[str],
    message: str,
) -> None:
    drop(folder, "a.png", png(1))
    monkeypatch.setenv("LINEQA_CAMERA_TOKEN", "token")
    args = ["camera", "--plaintext", "--tenant", "acme", "--line", "l1", "--camera", "c1", "--recipe", "r"]
    args += ["--spool-dir", str(tmp_path / "spool"), "--source", str(folder) if source == "FOLDER" else source]
    assert main([*args, *options]) == 2
    assert message in capsys.readouterr().err
