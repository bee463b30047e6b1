"""Split assignment: reproducible, proportional, stratified, grouped, named."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from services.common.errors import InvalidArgument
from services.dataset_svc.domain.model import SplitSettings
from services.dataset_svc.domain.splits import (
    BlockSplitter,
    ColumnSplitter,
    GroupSplitter,
    nonempty_splits,
    validate_split_settings,
)
from services.dataset_svc.domain.validation import Issues


def _labels(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return rng.choice(["a", "b", "c", "rare"], size=n, p=[0.5, 0.3, 0.17, 0.03]).tolist()


def _stream(splitter: BlockSplitter, labels: list[str], batch: int) -> np.ndarray:
    return np.concatenate([splitter.assign(pa.array(labels[i:i + batch]), len(labels[i:i + batch]))
                           for i in range(0, len(labels), batch)])


def test_same_seed_same_assignment_whatever_the_batching() -> None:
    labels = _labels(20_000)
    s = SplitSettings(validation_fraction=0.1, test_fraction=0.2, seed=7)
    a = _stream(BlockSplitter(s), labels, 10_000)
    b = _stream(BlockSplitter(s), labels, 333)
    assert (a == b).all()
    c = _stream(BlockSplitter(SplitSettings(validation_fraction=0.1, test_fraction=0.2, seed=8)),
                labels, 10_000)
    assert (a != c).any()


@pytest.mark.parametrize(("v", "t"), [(0.1, 0.1), (0.15, 0.05), (0.2, 0.0), (0.0, 0.0),
                                      (0.123, 0.077)])
def test_fractions_hold_per_class(v, t) -> None:
    labels = _labels(30_000, seed=3)
    split = _stream(BlockSplitter(SplitSettings(validation_fraction=v, test_fraction=t)),
                    labels, 4096)
    arr = np.array(labels)
    for label in ("a", "b", "c", "rare"):
        mine = split[arr == label]
        for code, frac in ((1, v), (2, t)):
            assert abs((mine == code).mean() - frac) < 0.011, (label, code)


def test_small_classes_reach_every_split() -> None:
    s = SplitSettings(validation_fraction=0.1, test_fraction=0.1)
    splitter = BlockSplitter(s)
    labels = ["big"] * 100 + [f"tiny{i}" for i in range(50) for _ in range(3)]
    split = splitter.assign(pa.array(labels), len(labels))
    arr = np.array(labels)
    for i in range(50):
        assert sorted(split[arr == f"tiny{i}"].tolist()) == [0, 1, 2]


def test_unstratified_block_split() -> None:
    split = BlockSplitter(SplitSettings(validation_fraction=0.25, test_fraction=0.25)).assign(
        None, 1000)
    counts = Counter(split.tolist())  # exact per full block (of 12 here)
    assert abs(counts[0] - 500) <= 2 and abs(counts[1] - 250) <= 2 and abs(counts[2] - 250) <= 2


def test_group_column_keeps_groups_together_and_is_reproducible() -> None:
    s = SplitSettings(validation_fraction=0.2, test_fraction=0.2, seed=1)
    groups = [f"doc{i % 500}" for i in range(10_000)]
    a = np.concatenate([GroupSplitter(s).assign(pa.array(groups[i:i + 999]))
                        for i in range(0, 10_000, 999)])
    b = GroupSplitter(s).assign(pa.array(groups))
    assert (a == b).all()
    by_group: dict[str, set[int]] = {}
    for g, code in zip(groups, a.tolist()):
        by_group.setdefault(g, set()).add(code)
    assert all(len(v) == 1 for v in by_group.values())
    shares = Counter(next(iter(v)) for v in by_group.values())
    assert abs(shares[1] / 500 - 0.2) < 0.07 and abs(shares[2] / 500 - 0.2) < 0.07


def test_split_column_names_and_errors() -> None:
    issues = Issues()
    values = pa.array(["train", " Validation", "VAL", "dev", "test", "valid", "holdout", ""])
    lines = np.arange(2, 10)
    out = ColumnSplitter("split", issues).assign(values, lines)
    assert out[:6].tolist() == [0, 1, 1, 1, 2, 1]
    assert [(i.line, i.field) for i in issues.items] == [(8, "split"), (9, "split")]
    assert "'holdout'" in issues.items[0].message


@pytest.mark.parametrize(("settings", "field"), [
    (SplitSettings(validation_fraction=0.51), "options.split.validation_fraction"),
    (SplitSettings(test_fraction=-0.01), "options.split.test_fraction"),
    (SplitSettings(validation_fraction=float("nan")), "options.split.validation_fraction"),
    (SplitSettings(validation_fraction=0.5, test_fraction=0.5), "options.split.test_fraction"),
    (SplitSettings(split_column="s", group_column="g"), "options.split.group_column"),
])
def test_invalid_settings(settings, field) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_split_settings(settings)
    assert info.value.violations[0].field == field


def test_valid_settings_and_nonempty_splits() -> None:
    validate_split_settings(SplitSettings(validation_fraction=0.5, test_fraction=0.0))
    assert nonempty_splits(SplitSettings(validation_fraction=0.2, test_fraction=0)) == [
        "train", "validation"]
