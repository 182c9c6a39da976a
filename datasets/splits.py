"""Train/val/test splits that measure what they should: group-aware, stratified by class, reproducible.

Group-aware: images of one board, part or batch look alike, so if they straddle train and val the validation
score measures memory, not generalisation; a group (``image.group``, or any key) is never divided.
Stratified: each split gets its share of every class, also of rare ones, counted in boxes, and its share of
background and unlabelled images. Images carry several classes at once, so this is iterative stratification
(Sechidis, Tsoumakas and Vlahavas, "On the stratification of multi-label data", ECML PKDD 2011) over groups:
the groups holding the rarest remaining class are placed first, each into the split that still needs that class
most. That greedy pass can miss when groups are large, so a local search then moves or swaps single groups
between splits while that brings every class's and the image count's share closer to the ratios. With few groups
(up to 16 for two splits, 10 for three) every assignment is tried instead and the closest kept.
Reproducible: the same images and seed give the same splits, whatever order the images come in.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from lineqa.datasets.model import Annotation, LabelledImage

DEFAULT_RATIOS: Mapping[str, float] = {"train": 0.8, "val": 0.2}
BACKGROUND = "(background)"
UNLABELLED = "(unlabelled)"
_TIE = 1e-9
_MAX_SWAP_PAIRS = 1_000_000  # pairs x labels evaluated at once; beyond it only single moves are tried
_MAX_ROUNDS = 1000  # moves or swaps of the local search; a handful is usual
_EXHAUSTIVE = 1 << 16  # assignments; with fewer, all are tried (2 splits: up to 16 groups, 3 splits: 10)


@dataclass(frozen=True)
class SplitBalance:
    """One split: what it got (``counts``, boxes per class plus background and unlabelled images) against what
    its ratio asked for (``targets``)."""

    images: int
    groups: int
    target_images: float
    counts: Mapping[str, int]
    targets: Mapping[str, float]


@dataclass(frozen=True)
class SplitReport:
    """How close each split came to its ratio, per class: what to look at before trusting a validation score."""

    ratios: Mapping[str, float]
    splits: Mapping[str, SplitBalance]

    def share(self, split: str, label: str) -> float:
        """The fraction of all ``label`` (a class, or background/unlabelled) that went to ``split``."""
        total = sum(balance.counts.get(label, 0) for balance in self.splits.values())
        return self.splits[split].counts.get(label, 0) / total if total else 0.0

    def max_share_error(self) -> float:
        """The largest gap between a label's share in a split and that split's ratio."""
        labels = {label for balance in self.splits.values() for label in balance.counts}
        gaps = [abs(self.share(split, label) - ratio) for split, ratio in self.ratios.items() for label in labels]
        return max(gaps, default=0.0)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def render_text(self) -> str:
        lines = []
        for split, part in self.splits.items():
            lines.append(f"{split}: {part.images} images (target {part.target_images:.0f}), {part.groups} groups")
            for label, count in part.counts.items():
                lines.append(f"  {label}: {count} (target {part.targets[label]:.1f}, {self.share(split, label):.1%})")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SplitResult:
    """``assignment`` maps every image name to its split."""

    assignment: Mapping[str, str]
    report: SplitReport


def _check_ratios(ratios: Mapping[str, float]) -> None:
    if not ratios or any(not name for name in ratios):
        raise ValueError(f"splits need names and ratios, got {dict(ratios)}")
    if any(not ratio > 0 for ratio in ratios.values()) or abs(sum(ratios.values()) - 1) > 1e-6:
        raise ValueError(f"split ratios must be positive and sum to 1, got {dict(ratios)}")


def _labels(image: LabelledImage) -> list[str]:
    if image.boxes:
        return [box.class_name for box in image.boxes]
    return [BACKGROUND if image.annotation is Annotation.BACKGROUND else UNLABELLED]


def assign_splits(
    images: Sequence[LabelledImage],
    ratios: Mapping[str, float] = DEFAULT_RATIOS,
    *,
    seed: int = 0,
    group_of: Callable[[LabelledImage], str] | None = None,
) -> SplitResult:
    """Assign every image a split named in ``ratios`` (positive, summing to 1). ``group_of`` gives the key of
    images that must stay together (default: ``image.group``, else the image alone); ``seed`` breaks ties."""
    _check_ratios(ratios)
    key = group_of or (lambda image: image.group or image.name)
    members: dict[str, list[LabelledImage]] = {}
    for image in images:
        members.setdefault(key(image), []).append(image)
    groups = sorted(members)
    labels = sorted({label for image in images for label in _labels(image)})
    column = {label: index for index, label in enumerate(labels)}
    # One row per group: its label counts, then its image count as the last column.
    counts = np.zeros((len(groups), len(labels) + 1))
    for row, group in enumerate(groups):
        for image in members[group]:
            for label in _labels(image):
                counts[row, column[label]] += 1
        counts[row, -1] = len(members[group])
    fractions = np.array(list(ratios.values()))
    targets = fractions[:, None] * counts.sum(axis=0)[None, :]
    rng = np.random.default_rng(seed)
    if len(ratios) ** len(groups) <= _EXHAUSTIVE:
        placed = _exhaustive(counts, targets, rng)
    else:
        placed = _improve(counts, targets, _greedy(counts, targets, rng))
    names = list(ratios)
    assignment = {image.name: names[placed[row]] for row, group in enumerate(groups) for image in members[group]}
    return SplitResult(dict(sorted(assignment.items())), _report(ratios, labels, counts, targets, placed))


def _greedy(counts: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sechidis' pass over groups: rarest remaining label first, its groups in a seeded random order (so that
    groups with many and with few boxes mix), each into the split with the largest remaining need for that label
    (then for images, then at random)."""
    need = targets.copy()
    placed = np.full(len(counts), -1)
    priority = rng.permutation(len(counts))
    while (placed < 0).any():
        open_rows = np.flatnonzero(placed < 0)
        remaining = counts[open_rows, :-1].sum(axis=0)
        remaining[remaining == 0] = np.inf
        label = int(np.argmin(remaining))
        holders = open_rows[counts[open_rows, label] > 0]
        holders = sorted(holders, key=lambda row: priority[row])
        for row in holders:
            best = need[:, label] >= need[:, label].max() - _TIE
            best &= need[:, -1] >= need[best, -1].max() - _TIE
            split = int(rng.choice(np.flatnonzero(best)))
            placed[row] = split
            need[split] -= counts[row]
    return placed


def _shares(counts: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each group's share of every label (and of the images), and each split's wanted share: the loss that
    :func:`_exhaustive` and :func:`_improve` minimise is the sum of squared gaps between the two."""
    totals = np.where(counts.sum(axis=0) > 0, counts.sum(axis=0), 1)
    return counts / totals, targets / totals


def _exhaustive(counts: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """With few groups, every assignment is tried and the best kept (equally good ones: by the seed)."""
    share, wanted = _shares(counts, targets)
    every = np.array(list(itertools.product(range(len(targets)), repeat=len(counts))), dtype=np.int64)
    loss = np.zeros(len(every))
    for split in range(len(targets)):
        loss += (((every == split) @ share - wanted[split]) ** 2).sum(axis=1)
    best = np.flatnonzero(loss <= loss.min() + 1e-12)
    chosen: np.ndarray = every[int(rng.choice(best))]
    return chosen


def _improve(counts: np.ndarray, targets: np.ndarray, placed: np.ndarray) -> np.ndarray:
    """Local search on the loss of :func:`_shares`: apply the best single move or swap of groups while it
    helps. Deterministic, no randomness."""
    placed = placed.copy()
    share, wanted = _shares(counts, targets)
    for _ in range(_MAX_ROUNDS):
        gap = np.stack([share[placed == s].sum(axis=0) for s in range(len(targets))]) - wanted
        delta, first, second, is_swap = min(_best_move(share, gap, placed), _best_swap(share, gap, placed))
        if delta >= -1e-12:
            break
        if is_swap:
            placed[first], placed[second] = placed[second], placed[first]
        else:
            placed[first] = second
    return placed


def _best_move(share: np.ndarray, gap: np.ndarray, placed: np.ndarray) -> tuple[float, int, int, bool]:
    """(loss change, group, new split, False) of the best single move."""
    # Moving group g (share m) from split a to b changes the loss by 2·Σ m·(gap_b - gap_a + m).
    moves = 2 * (share[:, None, :] * (gap[None, :, :] - gap[placed][:, None, :] + share[:, None, :])).sum(axis=2)
    moves[np.arange(len(placed)), placed] = np.inf
    row, split = np.unravel_index(int(np.argmin(moves)), moves.shape)
    return float(moves[row, split]), int(row), int(split), False


def _best_swap(share: np.ndarray, gap: np.ndarray, placed: np.ndarray) -> tuple[float, int, int, bool]:
    """(loss change, group, other group, True) of the best exchange of two groups between two splits."""
    best = (np.inf, -1, -1, True)
    for a in range(len(gap)):
        for b in range(a + 1, len(gap)):
            rows_a, rows_b = np.flatnonzero(placed == a), np.flatnonzero(placed == b)
            if not len(rows_a) or not len(rows_b) or len(rows_a) * len(rows_b) * share.shape[1] > _MAX_SWAP_PAIRS:
                continue
            # Swapping g (in a) with h (in b), x = m_h - m_g, changes the loss by 2·Σ x·(gap_a - gap_b + x).
            x = share[rows_b][None, :, :] - share[rows_a][:, None, :]
            swaps = 2 * (x * (gap[a] - gap[b] + x)).sum(axis=2)
            i, j = np.unravel_index(int(np.argmin(swaps)), swaps.shape)
            best = min(best, (float(swaps[i, j]), int(rows_a[i]), int(rows_b[j]), True))
    return best


def _report(
    ratios: Mapping[str, float], labels: list[str], counts: np.ndarray, targets: np.ndarray, placed: np.ndarray
) -> SplitReport:
    splits = {}
    for index, name in enumerate(ratios):
        rows = placed == index
        got = counts[rows].sum(axis=0)
        splits[name] = SplitBalance(
            images=int(got[-1]),
            groups=int(rows.sum()),
            target_images=round(float(targets[index, -1]), 3),
            counts={label: int(got[k]) for k, label in enumerate(labels)},
            targets={label: round(float(targets[index, k]), 3) for k, label in enumerate(labels)},
        )
    return SplitReport(dict(ratios), splits)


def apply_splits(images: Sequence[LabelledImage], assignment: Mapping[str, str]) -> list[LabelledImage]:
    """The images with ``split`` set from an assignment, e.g. to check the new splits for leakage."""
    return [replace(image, split=assignment[image.name]) for image in images]
