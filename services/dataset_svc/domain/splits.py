"""Train / validation / test assignment in one streaming pass, reproducible by seed.

Three ways, chosen from `SplitSettings`:

- `BlockSplitter`: rows of each key (the label when stratifying, else one key for all)
  are dealt in blocks; each block holds exactly the split shares (e.g. 8/1/1 of 10) in
  an order shuffled by (seed, key, run of blocks). The first block starts with one row of each
  non-empty split, so a class with at least that many rows appears in every split.
- `GroupSplitter`: the split comes from a hash of (seed, group value), so rows that
  share a group share a split.
- `ColumnSplitter`: the split is named by a column (train / validation|valid|val|dev /
  test, any case).

Split codes are int8: 0 train, 1 validation, 2 test.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from services.common.errors import FieldViolation, InvalidArgument
from services.dataset_svc.domain.model import SPLITS, SplitSettings
from services.dataset_svc.domain.validation import Issues

TRAIN, VALIDATION, TEST = 0, 1, 2
SPLIT_NAMES = {
    "train": TRAIN, "training": TRAIN,
    "validation": VALIDATION, "valid": VALIDATION, "val": VALIDATION, "dev": VALIDATION,
    "test": TEST, "testing": TEST,
}
MAX_FRACTION = 0.5


def validate_split_settings(settings: SplitSettings) -> None:
    """Raises InvalidArgument naming the field when fractions or columns are unusable."""
    violations = []
    for name in ("validation_fraction", "test_fraction"):
        value = getattr(settings, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value)
                and 0.0 <= value <= MAX_FRACTION):
            violations.append(FieldViolation(
                f"options.split.{name}", f"must be between 0 and {MAX_FRACTION}, got {value}"))
    if not violations and settings.validation_fraction + settings.test_fraction >= 1.0:
        violations.append(FieldViolation(
            "options.split.test_fraction", "validation_fraction + test_fraction must be below 1"))
    if settings.split_column and settings.group_column:
        violations.append(FieldViolation(
            "options.split.group_column", "give either split_column or group_column, not both"))
    if violations:
        raise InvalidArgument(
            "; ".join(f"{v.field}: {v.description}" for v in violations), violations,
            reason="INVALID_SPLIT_SETTINGS")


def split_sizes(settings: SplitSettings) -> tuple[float, float, float]:
    v, t = settings.validation_fraction, settings.test_fraction
    return 1.0 - v - t, v, t


def nonempty_splits(settings: SplitSettings) -> list[str]:
    """Splits that receive rows under fraction-based splitting."""
    return [name for name, f in zip(SPLITS, split_sizes(settings)) if f > 0]


def _block_size(v: float, t: float) -> int:
    for size in range(10, 1001):
        if all(abs(size * f - round(size * f)) < 1e-6 for f in (v, t)):
            return size
    return 1000


class BlockSplitter:
    """Seeded, stratified block assignment (see module doc)."""

    def __init__(self, settings: SplitSettings) -> None:
        v, t = settings.validation_fraction, settings.test_fraction
        self.block = _block_size(v, t)
        n_val, n_test = round(self.block * v), round(self.block * t)
        if v > 0 and n_val == 0:
            n_val = 1
        if t > 0 and n_test == 0:
            n_test = 1
        self._base = np.array([TRAIN] * (self.block - n_val - n_test) + [VALIDATION] * n_val
                              + [TEST] * n_test, dtype=np.int8)
        self._firsts = np.array([s for s, n in ((TRAIN, 1), (VALIDATION, n_val), (TEST, n_test))
                                 if n], dtype=np.int8)
        self._seed = settings.seed & 0xFFFFFFFFFFFFFFFF
        self._seen: dict[str, int] = {}
        self.blocks = max(1, 4096 // self.block)  # blocks drawn per random generator
        self._patterns: dict[str, tuple[int, np.ndarray]] = {}

    def _pattern(self, key: str, group: int) -> np.ndarray:
        """Assignments of the `group`-th run of `self.blocks` blocks of `key`."""
        cached = self._patterns.get(key)
        if cached is not None and cached[0] == group:
            return cached[1]
        rng = np.random.default_rng([self._seed, xxhash.xxh64_intdigest(key.encode()), group])
        pattern = rng.permuted(np.tile(self._base, (self.blocks, 1)), axis=1)
        if group == 0:
            # the first rows of a class go one to each non-empty split
            first = pattern[0].tolist()
            for s in self._firsts:
                first.remove(s)
            pattern[0] = np.concatenate([rng.permutation(self._firsts),
                                         np.array(first, dtype=np.int8)])
        pattern = pattern.reshape(-1)
        self._patterns[key] = (group, pattern)  # one run per key: the stream moves forward
        return pattern

    def assign(self, keys: pa.Array | None, n: int) -> np.ndarray:
        """Split codes for the next `n` rows; `keys` (strings) stratify, None means one key."""
        out = np.empty(n, dtype=np.int8)
        if keys is None:
            self._deal("", np.arange(n), out)
            return out
        encoded = pc.dictionary_encode(keys)
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        for j, key in enumerate(encoded.dictionary.to_pylist()):
            self._deal(key, np.flatnonzero(indices == j), out)
        return out

    def _deal(self, key: str, positions: np.ndarray, out: np.ndarray) -> None:
        start = self._seen.get(key, 0)
        ordinals = start + np.arange(len(positions))
        self._seen[key] = start + len(positions)
        span = self.block * self.blocks
        groups = ordinals // span
        offsets = ordinals % span
        if len(groups) and groups[0] == groups[-1]:
            out[positions] = self._pattern(key, int(groups[0]))[offsets]
            return
        for g in np.unique(groups):
            sel = groups == g
            out[positions[sel]] = self._pattern(key, int(g))[offsets[sel]]


class GroupSplitter:
    """Split by a hash of (seed, group value): related rows stay together."""

    def __init__(self, settings: SplitSettings) -> None:
        v, t = settings.validation_fraction, settings.test_fraction
        self._v = v
        self._vt = v + t
        self._seed = f"{settings.seed}\x00".encode()

    def code(self, value: str) -> int:
        u = xxhash.xxh64_intdigest(self._seed + value.encode()) / 2.0 ** 64
        return VALIDATION if u < self._v else TEST if u < self._vt else TRAIN

    def assign(self, groups: pa.Array) -> np.ndarray:
        encoded = pc.dictionary_encode(groups)
        codes = np.array([self.code(g or "") for g in encoded.dictionary.to_pylist()],
                         dtype=np.int8)
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        return codes[indices] if len(codes) else np.zeros(len(groups), dtype=np.int8)


class ColumnSplitter:
    """The split named in a column; anything else is an issue at its line."""

    def __init__(self, column: str, issues: Issues) -> None:
        self._column = column
        self._issues = issues

    def assign(self, values: pa.Array, lines: np.ndarray) -> np.ndarray:
        normalized = pc.utf8_lower(pc.utf8_trim_whitespace(values))
        encoded = pc.dictionary_encode(normalized)
        names = encoded.dictionary.to_pylist()
        codes = np.array([SPLIT_NAMES.get(name, -1) for name in names], dtype=np.int8)
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        out = codes[indices] if len(codes) else np.zeros(len(values), dtype=np.int8)
        bad = out < 0
        if bad.any():
            raw = values.to_pylist()
            for i in np.flatnonzero(bad):
                self._issues.add(int(lines[i]), self._column,
                                 f"split value '{str(raw[i])[:40]}' is not one of train, "
                                 "validation (valid, val, dev) or test", "BAD_SPLIT_VALUE")
            out[bad] = TRAIN
        return out
