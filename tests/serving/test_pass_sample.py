"""The PASS sample rule: the same answer in Python (the gateway) and in SQL on SQLite and PostgreSQL (the review
queue); about the asked percentage, not periodic, nested in the percentage; and which images each policy keeps."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, create_engine, insert, select

from lineqa.db import sqlite_url
from lineqa.serving import serve_cli
from lineqa.serving.image_store import ImagePolicy
from lineqa.serving.inspector import InspectorSettings
from lineqa.serving.pass_sample import PassSample, PassSampleError

SEQUENCES = [*range(0, 3000), 2**31 - 2, 2**31 - 1, 2**31, 2**40 + 7, 2**62 + 1, 2**63 - 1]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_sql_selects_exactly_the_frames_python_samples(database: str, tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:  # fmt: skip
    url = sqlite_url(tmp_path / "s.db") if database == "sqlite" else request.getfixturevalue("empty_postgres_url")
    frames = Table("frames", MetaData(), Column("id", Integer, primary_key=True), Column("sequence", BigInteger))
    engine = create_engine(url)
    frames.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(frames), [{"id": i, "sequence": s} for i, s in enumerate(SEQUENCES)])
    for percent in (0, 0.5, 5, 37.5, 100):
        sample = PassSample(percent)
        with engine.connect() as conn:
            chosen = set(conn.execute(select(frames.c.sequence).where(sample.where(frames.c.sequence))).scalars())
        assert chosen == {s for s in SEQUENCES if sample.contains(s)}, percent
    engine.dispose()


def test_the_sample_is_about_the_percentage_and_not_periodic() -> None:
    sequences = range(1, 100_001)
    five = {s for s in sequences if PassSample(5).contains(s)}
    assert 4_800 < len(five) < 5_200
    for period in (2, 3, 4, 8):  # every residue class (a mould cavity, a fixture) is sampled alike
        for start in range(1, period + 1):
            in_class = len(five & set(range(start, 100_001, period)))
            assert abs(in_class / (100_000 / period) - 0.05) < 0.006, (period, start)
    longest_run = max(b - a for a, b in zip(sorted(five), sorted(five)[1:], strict=False))
    assert longest_run > 60  # gaps spread like random ones, not every 20th part
    ten = {s for s in sequences if PassSample(10).contains(s)}
    assert five < ten  # nested: a gateway keeping 10 % has every image a 5 % queue shows
    assert not any(PassSample(0).contains(s) for s in sequences)
    assert all(PassSample(100).contains(s) for s in range(1000))


@pytest.mark.parametrize("percent", [-1, 100.5])
def test_a_sample_is_a_percentage(percent: float) -> None:
    with pytest.raises(PassSampleError, match="percentage"):
        PassSample(percent)


def test_which_images_each_policy_keeps() -> None:
    sample = PassSample(5)
    sampled = next(s for s in range(1, 1000) if sample.contains(s))
    unsampled = next(s for s in range(1, 1000) if not sample.contains(s))
    table = {  # policy: (FAIL, REVIEW, sampled PASS, other PASS)
        ImagePolicy.ALL: (True, True, True, True),
        ImagePolicy.FLAGGED_AND_SAMPLE: (True, True, True, False),
        ImagePolicy.FLAGGED: (True, True, False, False),
        ImagePolicy.NONE: (False, False, False, False),
    }
    for policy, expected in table.items():
        got = (
            policy.keeps("FAIL", unsampled, sample),
            policy.keeps("REVIEW", unsampled, sample),
            policy.keeps("PASS", sampled, sample),
            policy.keeps("PASS", unsampled, sample),
        )
        assert got == expected, policy


def test_lineqa_serve_keeps_the_queues_images_by_default() -> None:
    parser = argparse.ArgumentParser()
    serve_cli.configure(parser)
    args = parser.parse_args([])
    assert ImagePolicy(args.image_policy) is ImagePolicy.FLAGGED_AND_SAMPLE
    assert PassSample(args.pass_sample) == PassSample() == InspectorSettings().pass_sample
    assert InspectorSettings().image_policy is ImagePolicy.FLAGGED_AND_SAMPLE
    assert parser.parse_args(["--image-policy", "flagged", "--pass-sample", "12.5"]).pass_sample == 12.5
