"""Group-aware, stratified, reproducible splits."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from lineqa.datasets.model import Annotation, Box, LabelledImage
from lineqa.datasets.splits import BACKGROUND, UNLABELLED, SplitResult, apply_splits, assign_splits

RATIOS = {"train": 0.7, "val": 0.15, "test": 0.15}


def image(
    name: str, *classes: str, group: str | None = None, annotation: Annotation = Annotation.BOXES
) -> LabelledImage:
    boxes = tuple(Box(c, 0, 0, 8, 8) for c in classes)
    return LabelledImage(name, Path(f"{name}.png"), boxes, annotation, group=group)


def skewed(groups: int = 300, seed: int = 0) -> list[LabelledImage]:
    """Groups of 1-4 images; 12% background images; boxes of a common class in most images, a medium one in
    30%, a rare one in 4%, several classes per image."""
    rng = random.Random(seed)
    images = []
    for g in range(groups):
        for k in range(rng.randint(1, 4)):
            if rng.random() < 0.12:
                images.append(image(f"g{g:03d}-{k}", group=f"g{g:03d}", annotation=Annotation.BACKGROUND))
                continue
            classes = ["common"] * rng.randint(1, 3)
            classes += ["medium"] * rng.randint(1, 2) if rng.random() < 0.3 else []
            classes += ["rare"] * rng.randint(1, 2) if rng.random() < 0.04 else []
            images.append(image(f"g{g:03d}-{k}", *classes, group=f"g{g:03d}"))
    return images


def share_errors(result: SplitResult, ratios: dict[str, float]) -> dict[str, float]:
    """The largest gap between a label's share in a split and the split's ratio, per label."""
    labels = {label for balance in result.report.splits.values() for label in balance.counts}
    return {label: max(abs(result.report.share(s, label) - r) for s, r in ratios.items()) for label in labels}


def test_a_group_never_spans_two_splits() -> None:
    images = skewed()
    result = assign_splits(images, RATIOS, seed=3)
    assert set(result.assignment) == {im.name for im in images}
    splits_of_group: dict[str | None, set[str]] = defaultdict(set)
    for im in images:
        splits_of_group[im.group].add(result.assignment[im.name])
    assert all(len(splits) == 1 for splits in splits_of_group.values())
    assert {s for splits in splits_of_group.values() for s in splits} == set(RATIOS)


def test_custom_group_keys_and_single_images() -> None:
    images = [image(f"board{b}-shot{s}", "open", "short") for b in range(20) for s in range(5)]
    by_board = assign_splits(images, seed=0, group_of=lambda im: im.name.split("-")[0]).assignment
    assert all(len({by_board[f"board{b}-shot{s}"] for s in range(5)}) == 1 for b in range(20))
    alone = assign_splits(images, seed=0).assignment  # no group: each image on its own
    assert Counter(alone.values()) == {"train": 80, "val": 20}


def test_the_same_seed_gives_the_same_splits_whatever_the_input_order() -> None:
    images = skewed()
    first = assign_splits(images, RATIOS, seed=7)
    shuffled = images[:]
    random.Random(1).shuffle(shuffled)
    again = assign_splits(shuffled, RATIOS, seed=7)
    assert again.assignment == first.assignment
    assert again.report == first.report
    assert list(first.assignment) == sorted(first.assignment)
    others = {tuple(assign_splits(images, RATIOS, seed=seed).assignment.values()) for seed in range(5)}
    assert len(others) > 1  # the seed matters


def test_every_class_and_the_background_get_their_share_on_a_skewed_multilabel_set() -> None:
    images = skewed()
    totals = Counter(box.class_name for im in images for box in im.boxes)
    assert totals["rare"] < 0.05 * totals["common"]
    result = assign_splits(images, RATIOS, seed=0)
    errors = share_errors(result, RATIOS)
    assert set(errors) == {"common", "medium", "rare", BACKGROUND}
    assert errors["common"] <= 0.01 and errors["medium"] <= 0.02 and errors[BACKGROUND] <= 0.02
    assert errors["rare"] <= 0.03  # 55 boxes: 8 or 9 in val and test each
    for split, ratio in RATIOS.items():
        assert result.report.splits[split].images == pytest.approx(ratio * len(images), abs=3)
    # Placing whole groups at random does much worse.
    rng = random.Random(0)
    groups = sorted({im.group or "" for im in images})
    random_worst = []
    for _ in range(10):
        placed = {g: rng.choices(list(RATIOS), list(RATIOS.values()))[0] for g in groups}
        counts = Counter((placed[im.group or ""], box.class_name) for im in images for box in im.boxes)
        random_worst.append(max(abs(counts[s, c] / totals[c] - r) for s, r in RATIOS.items() for c in totals))
    assert max(errors.values()) < min(random_worst) / 2


def test_ratios_are_honoured() -> None:
    images = [image(f"{i:04d}", "open") for i in range(1000)]
    result = assign_splits(images, {"a": 0.5, "b": 0.3, "c": 0.2}, seed=1)
    assert Counter(result.assignment.values()) == {"a": 500, "b": 300, "c": 200}
    only = assign_splits(images[:10], {"everything": 1.0})
    assert set(only.assignment.values()) == {"everything"}


@pytest.mark.parametrize(
    "ratios", [{}, {"train": 0.8, "val": 0.1}, {"train": 1.2, "val": -0.2}, {"train": 1.0, "val": 0.0}, {"": 1.0}]
)
def test_bad_ratios_are_refused(ratios: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="split"):
        assign_splits([image("a", "open")], ratios)


def test_unlabelled_images_are_spread_too_and_the_report_adds_up() -> None:
    images = [image(f"l{i}", "open", "open", "short") for i in range(40)]
    images += [image(f"m{i}", annotation=Annotation.MISSING) for i in range(20)]
    images += [image(f"b{i}", annotation=Annotation.BACKGROUND) for i in range(10)]
    report = assign_splits(images, {"train": 0.5, "val": 0.5}, seed=2).report
    for split in ("train", "val"):
        balance = report.splits[split]
        assert balance.counts == {BACKGROUND: 5, UNLABELLED: 10, "open": 40, "short": 20}
        assert balance.targets == {BACKGROUND: 5.0, UNLABELLED: 10.0, "open": 40.0, "short": 20.0}
        assert (balance.images, balance.groups, balance.target_images) == (35, 35, 35.0)
    assert report.max_share_error() == 0
    assert json.loads(report.to_json())["ratios"] == {"train": 0.5, "val": 0.5}
    assert "train: 35 images (target 35), 35 groups\n  (background): 5 (target 5.0, 50.0%)\n" in report.render_text()


def test_few_large_groups_are_balanced_as_well_as_they_can_be() -> None:
    """Four groups of 10, 20, 30 and 40 images: 80/20 can only be met by putting the group of 20 in val."""
    images = [image(f"{size}-{i}", "open", group=str(size)) for size in (10, 20, 30, 40) for i in range(size)]
    result = assign_splits(images, seed=0)
    assert {name.split("-")[0] for name, split in result.assignment.items() if split == "val"} == {"20"}


def test_empty_and_apply() -> None:
    assert assign_splits([]).assignment == {}
    images = [image("a", "open"), image("b", "short")]
    assignment = {"a": "train", "b": "val"}
    assert [im.split for im in apply_splits(images, assignment)] == ["train", "val"]
