"""The quality profile of a dataset, computed batch by batch in one streamed pass.

Memory stays bounded whatever the file size: lengths go into fixed-edge histograms,
rows are remembered only as 64-bit hashes in sorted numpy tables (one entry per
distinct text, with per-split counts), token lengths are measured on the first rows
only, and at most 10 example rows are kept per finding. When a hash table outgrows
`max_keys`, it keeps a deterministic hash-range sample of the texts (all copies of a
sampled text stay in) and the duplicate counts become estimates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from services.dataset_svc.domain import pii as pii_mod
from services.dataset_svc.domain.model import (
    SPLITS,
    ColumnProfile,
    HistogramBucket,
    LabelCount,
    LengthHistogram,
    PiiFinding,
    QualityReport,
    Task,
)
from services.dataset_svc.domain.warnings import (
    LONG_CHARS,
    SHORT_WORDS,
    ProfileFacts,
    build_warnings,
)

# Histogram bucket edges (lengths in characters or tokens); the last bucket is open.
EDGES = np.array([0] + [2**k for k in range(4, 21)], dtype=np.int64)  # 0, 16, 32 … 1,048,576
MAX_EXAMPLES = 10
MAX_LABELS = 65_535  # ids must fit the 16 label bits of a key
OTHER_LABEL = "(other labels)"
_LABEL_BITS = 16  # low bits of a classification key hold the label id
_TEXT_MASK = np.uint64(~((1 << _LABEL_BITS) - 1) & 0xFFFFFFFFFFFFFFFF)
_NSPLITS = len(SPLITS)


class Histogram:
    """Mergeable length histogram with fixed edges, exact min/max/mean."""

    def __init__(self) -> None:
        self.counts = np.zeros(len(EDGES), dtype=np.int64)
        self.n = 0
        self.total = 0
        self.min: int | None = None
        self.max: int | None = None

    def add(self, values: np.ndarray) -> None:
        if len(values) == 0:
            return
        values = np.asarray(values, dtype=np.int64)
        idx = np.searchsorted(EDGES, values, side="right") - 1
        self.counts += np.bincount(idx, minlength=len(EDGES))
        self.n += len(values)
        self.total += int(values.sum())
        lo, hi = int(values.min()), int(values.max())
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)

    def merge(self, other: Histogram) -> None:
        self.counts += other.counts
        self.n += other.n
        self.total += other.total
        for attr, pick in (("min", min), ("max", max)):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            setattr(self, attr, theirs if mine is None else mine if theirs is None else pick(mine, theirs))

    def _upper(self, i: int) -> int:
        return int(EDGES[i + 1]) if i + 1 < len(EDGES) else int(self.max or 0) + 1

    def percentile(self, q: float) -> int:
        """Estimate from the buckets (linear inside a bucket), clamped to [min, max]."""
        if not self.n:
            return 0
        target = q * self.n
        cum = np.cumsum(self.counts)
        i = int(np.searchsorted(cum, target, side="left"))
        i = min(i, len(EDGES) - 1)
        before = int(cum[i - 1]) if i else 0
        inside = int(self.counts[i]) or 1
        lower, upper = int(EDGES[i]), self._upper(i)
        value = lower + (target - before) / inside * (upper - lower)
        return int(min(max(round(value), self.min or 0), self.max or 0))

    def result(self) -> LengthHistogram:
        if not self.n:
            return LengthHistogram()
        nz = np.flatnonzero(self.counts)
        buckets = tuple(
            HistogramBucket(int(EDGES[i]), self._upper(i), int(self.counts[i]))
            for i in range(int(nz[0]), int(nz[-1]) + 1)
        )
        return LengthHistogram(
            buckets=buckets,
            min=int(self.min or 0),
            max=int(self.max or 0),
            mean=self.total / self.n,
            p50=self.percentile(0.5),
            p95=self.percentile(0.95),
            rows_measured=self.n,
        )


class KeyTable:
    """Distinct 64-bit keys (sorted) with per-column uint32 counts.

    New keys first go to a small sorted pending table that is merged into the main one
    every `merge_keys` new keys, so a batch costs O(batch + pending) instead of a copy
    of the whole table. Beyond `max_keys` distinct keys it keeps only keys below a
    shrinking limit (a deterministic sample of the hash space); `sampled_rows` then
    tells how many rows the kept counts cover."""

    merge_keys = 65_536

    def __init__(self, columns: int, max_keys: int) -> None:
        self._keys = np.empty(0, dtype=np.uint64)
        self._counts = np.empty((0, columns), dtype=np.uint32)
        self._pkeys = np.empty(0, dtype=np.uint64)  # pending: sorted, disjoint from _keys
        self._pcounts = np.empty((0, columns), dtype=np.uint32)
        self.columns = columns
        self.max_keys = max_keys
        self.level = 0  # keys kept: those < 2**(64 - level)

    @property
    def sampled(self) -> bool:
        return self.level > 0

    @property
    def keys(self) -> np.ndarray:
        """All distinct keys, sorted."""
        self._merge()
        return self._keys

    @property
    def counts(self) -> np.ndarray:
        """Counts per key of `keys` (keys × columns)."""
        self._merge()
        return self._counts

    def __len__(self) -> int:
        return len(self._keys) + len(self._pkeys)

    def _limit(self) -> np.uint64:
        return np.uint64((1 << (64 - self.level)) - 1)

    def _merge(self) -> None:
        if len(self._pkeys):
            pos = np.searchsorted(self._keys, self._pkeys)
            self._keys = np.insert(self._keys, pos, self._pkeys)
            self._counts = np.insert(self._counts, pos, self._pcounts, axis=0)
            self._pkeys = self._pkeys[:0]
            self._pcounts = self._pcounts[:0]

    def add(self, keys: np.ndarray, column: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Count `keys` (column index per key, 0 when None). Returns (seen_before, tracked):
        whether each row's key was counted before it (earlier batch or earlier in this
        batch), and whether the row is in the tracked sample at all."""
        seen, tracked, _, _ = self.add_detailed(keys, column)
        return seen, tracked

    def add_detailed(
        self,
        keys: np.ndarray,
        column: np.ndarray | None = None,
        *,
        details: bool = False,
        prefix_mask: np.uint64 | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """`add`, then with `details` also each row's key counts after the batch (rows ×
        columns, zero for rows outside the sample) and, with `prefix_mask`, whether the
        table holds another key with the same masked bits (the same text under another
        label). Returns (seen_before, tracked, counts, siblings)."""
        n = len(keys)
        tracked = np.ones(n, dtype=bool)
        if self.level:
            tracked = keys <= self._limit()
        seen = np.zeros(n, dtype=bool)
        if not tracked.any():
            zero = np.zeros((n, self.columns), np.uint32) if details else None
            sib = np.zeros(n, bool) if details and prefix_mask is not None else None
            return seen, tracked, zero, sib
        k = keys[tracked] if self.level else keys
        col = (column[tracked] if self.level else column) if column is not None else None
        uk, first, inv = np.unique(k, return_index=True, return_inverse=True)
        if col is None:
            bc = np.bincount(inv, minlength=len(uk)).astype(np.uint32).reshape(-1, 1)
        else:
            bc = (
                np.bincount(inv * self.columns + col, minlength=len(uk) * self.columns)
                .astype(np.uint32)
                .reshape(-1, self.columns)
            )
        pos = np.searchsorted(self._keys, uk)
        in_main = _present(self._keys, uk, pos)
        if in_main.any():
            self._counts[pos[in_main]] += bc[in_main]
        found = in_main.copy()
        rest = np.flatnonzero(~in_main)
        if len(rest):
            rk = uk[rest]
            ppos = np.searchsorted(self._pkeys, rk)
            in_pending = _present(self._pkeys, rk, ppos)
            if in_pending.any():
                self._pcounts[ppos[in_pending]] += bc[rest[in_pending]]
            found[rest] = in_pending
            new = ~in_pending
            if new.any():
                self._pkeys = np.insert(self._pkeys, ppos[new], rk[new])
                self._pcounts = np.insert(self._pcounts, ppos[new], bc[rest[new]], axis=0)
        seen[tracked] = found[inv] | (np.arange(len(k)) != first[inv])
        counts = siblings = None
        if details:
            u_counts, u_sib = self._details(uk, pos, in_main, prefix_mask)
            counts = np.zeros((n, self.columns), np.uint32)
            counts[tracked] = u_counts[inv]
            if u_sib is not None:
                siblings = np.zeros(n, bool)
                siblings[tracked] = u_sib[inv]
        if len(self) > self.max_keys or len(self._pkeys) >= self.merge_keys:
            self._merge()
            if len(self._keys) > self.max_keys:
                while len(self._keys) > self.max_keys:
                    self.level += 1
                    keep = self._keys <= self._limit()
                    self._keys, self._counts = self._keys[keep], self._counts[keep]
                if counts is not None:  # rows whose key just left the sample
                    gone = keys > self._limit()
                    counts[gone] = 0
                    if siblings is not None:
                        siblings[gone] = False
        return seen, tracked, counts, siblings

    def _details(self, uk, pos, in_main, prefix_mask):
        """Counts of the (sorted, unique, just added) keys `uk` and whether another key
        shares their masked bits; `pos`/`in_main`: their place in the main table."""
        ppos = np.searchsorted(self._pkeys, uk)
        in_pending = _present(self._pkeys, uk, ppos)
        counts = np.empty((len(uk), self.columns), np.uint32)
        if in_main.any():
            counts[in_main] = self._counts[pos[in_main]]
        if in_pending.any():
            counts[in_pending] = self._pcounts[ppos[in_pending]]
        if prefix_mask is None:
            return counts, None
        mine = uk & prefix_mask
        sib = _neighbour_shares(self._keys, pos, in_main, mine, prefix_mask)
        sib |= _neighbour_shares(self._pkeys, ppos, in_pending, mine, prefix_mask)
        return counts, sib

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Index of each key in `keys`, -1 when absent."""
        table = self.keys
        pos = np.searchsorted(table, keys)
        return np.where(_present(table, keys, pos), pos, -1)

    @property
    def rows(self) -> int:
        return int(self._counts.sum(dtype=np.int64)) + int(self._pcounts.sum(dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self._keys.nbytes + self._counts.nbytes + self._pkeys.nbytes + self._pcounts.nbytes


def _present(table: np.ndarray, keys: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Whether keys[i] == table[pos[i]] (pos from searchsorted)."""
    ok = pos < len(table)
    ok[ok] = table[pos[ok]] == keys[ok]
    return ok


def _neighbour_shares(table, pos, present, mine, mask) -> np.ndarray:
    """Whether the table's neighbours of each query (at its searchsorted `pos`, skipping
    the query itself when `present`) have the same masked bits `mine`."""
    out = np.zeros(len(pos), dtype=bool)
    if not len(table):
        return out
    before = pos - 1
    ok = before >= 0
    out[ok] = (table[before[ok]] & mask) == mine[ok]
    after = pos + present
    ok = after < len(table)
    out[ok] |= (table[after[ok]] & mask) == mine[ok]
    return out


def hash_strings(arr: pa.Array) -> np.ndarray:
    """64-bit XXH3 of each string's UTF-8 bytes (nulls hash as empty strings)."""
    if len(arr) == 0:
        return np.empty(0, dtype=np.uint64)
    if arr.null_count:
        arr = pc.fill_null(arr, "")
    offs, data = _offsets_data(arr)
    return _hash_rows(offs, data)


def _hash_rows(offs: np.ndarray, data: np.ndarray | memoryview) -> np.ndarray:
    """XXH3-64 of each `data[offs[i]:offs[i+1]]`: one C call per row chained with `map`
    (no Python frame per row)."""
    buf = data if isinstance(data, memoryview) else data.tobytes()  # bytes slice fastest
    o = offs.tolist()
    rows = map(buf.__getitem__, map(slice, o[:-1], o[1:]))
    return np.fromiter(map(_xxh3, rows), dtype=np.uint64, count=len(o) - 1)


_xxh3 = xxhash.xxh3_64_intdigest


_offsets_data = pii_mod.string_buffers


# Unicode spaces and punctuation (curly quotes, dashes, ellipsis, no-break space…);
# ASCII ones are dropped by the letter mask below.
_UNICODE_PUNCT = r"[\x{00A0}-\x{00BF}\x{2000}-\x{206F}\x{3000}-\x{303F}\x{FF01}-\x{FF0F}]"


def normalised_hashes(arr: pa.Array) -> np.ndarray:
    """Hash of each string keeping only its letters, lower-cased: texts that differ only
    in case, whitespace, punctuation or digits hash alike."""
    if len(arr) == 0:
        return np.empty(0, dtype=np.uint64)
    if arr.null_count:
        arr = pc.fill_null(arr, "")
    offs, data = _offsets_data(arr)
    return _normalised_hashes(arr, offs, data, ascii_only=not len(data) or data.max() < 128)


def _normalised_hashes(arr: pa.Array, offs: np.ndarray, data: np.ndarray, ascii_only: bool) -> np.ndarray:
    """`normalised_hashes` on the buffers of `arr` (no nulls), all in whole-batch numpy
    passes: ASCII letters are lower-cased by setting bit 0x20, every other ASCII byte is
    dropped with one `np.compress`, and the per-row kept counts give the new offsets.
    Non-ASCII text is lower-cased and stripped of Unicode punctuation by Arrow first;
    its non-ASCII bytes are kept."""
    if not ascii_only:
        arr = pc.replace_substring_regex(pc.utf8_lower(arr), _UNICODE_PUNCT, "")
        offs, data = _offsets_data(arr)
    n = len(data)
    low = data | np.uint8(0x20)
    keep = np.zeros(n + 1, dtype=bool)  # one more: reduceat below needs an index < n + 1
    np.less(low - np.uint8(ord("a")), 26, out=keep[:n])  # ASCII letter (either case)
    if not ascii_only:
        high = data >= 128
        keep[:n] |= high  # UTF-8 bytes of letters, already lower-cased
        np.copyto(low, data, where=high)
    kept = np.compress(keep[:n], low)
    lens = offs[1:] - offs[:-1]
    wide = np.int32 if n < 2**31 else np.int64
    counts = np.add.reduceat(keep, offs[:-1], dtype=wide) if len(lens) else lens
    counts[lens == 0] = 0
    new_offs = np.zeros(len(offs), dtype=np.int64)
    np.cumsum(counts, out=new_offs[1:])
    return _hash_rows(new_offs, memoryview(kept))


class _Examples:
    def __init__(self) -> None:
        self.rows: list[int] = []

    @property
    def full(self) -> bool:
        return len(self.rows) >= MAX_EXAMPLES

    def take(self, source_rows: np.ndarray, mask: np.ndarray) -> None:
        if self.full:
            return
        picked = source_rows[np.flatnonzero(mask)[: MAX_EXAMPLES - len(self.rows)]]
        self.rows.extend(int(r) for r in picked)

    def result(self) -> tuple[int, ...]:
        return tuple(self.rows)


class QualityProfiler:
    """Profiles canonical batches as they stream by; `finish` returns the report."""

    token_sample_rows = 20_000
    # Distinct texts tracked exactly (~32 bytes each, two tables); beyond, counts are
    # estimated from a hash-range sample so a gigabyte upload stays within ~100 MB.
    max_keys = 262_144

    def __init__(
        self,
        task: Task,
        *,
        token_counter: Callable[[list[str]], list[int]] | None = None,
        tokenizer_model: str = "",
        redact_pii: bool = False,
    ) -> None:
        if task not in (Task.SEQUENCE_CLASSIFICATION, Task.CAUSAL_LM, Task.CHAT_SFT):
            raise ValueError(f"cannot profile task {task}")
        self.task = task
        self.token_counter = token_counter
        self.tokenizer_model = tokenizer_model
        self.redact_pii = redact_pii
        self.rows = 0
        self.split_rows = np.zeros(_NSPLITS, dtype=np.int64)
        self.chars = Histogram()
        self.tokens = Histogram()
        self.tokens_over_limit = 0
        self.model_max_length: int | None = getattr(token_counter, "max_length", None)
        self.long_char_rows = 0
        self.short_rows = 0
        self.texts = KeyTable(_NSPLITS, self.max_keys)  # exact content, per split
        self.near = KeyTable(1, self.max_keys)  # normalised text
        self.label_ids: dict[str, int] = {}
        self.label_names: list[str] = []
        self.label_counts = np.zeros((0, _NSPLITS), dtype=np.int64)
        self.pii_matches = {kind: 0 for kind in pii_mod.KINDS}
        self.pii_rows = {kind: 0 for kind in pii_mod.KINDS}
        self.ex = {
            name: _Examples()
            for name in ("dup", "near", "conflict", "leak", "short", "long", "tokens")
        }
        self.pii_ex = {kind: _Examples() for kind in pii_mod.KINDS}

    # --- per batch ----------------------------------------------------------------

    def add(self, batch: pa.RecordBatch, split: np.ndarray) -> pa.RecordBatch:
        """Profile one batch; returns it with personal data replaced when redacting."""
        n = batch.num_rows
        if n == 0:
            return batch
        split = np.asarray(split, dtype=np.int64)
        if len(split) != n:
            raise ValueError(f"split has {len(split)} entries for {n} rows")
        split = np.clip(split, 0, _NSPLITS - 1)
        if "source_row" in batch.schema.names:
            source_rows = batch.column("source_row").to_numpy(zero_copy_only=False).astype(np.int64)
        else:
            source_rows = np.arange(self.rows + 1, self.rows + n + 1, dtype=np.int64)
        self.rows += n
        self.split_rows += np.bincount(split, minlength=_NSPLITS)

        text, content_key, pii_input, parents = self._texts(batch)

        # Lengths.
        offs, data = _offsets_data(text)
        ascii_only = not len(data) or bool(data.max() < 128)
        if ascii_only:
            lengths = offs[1:] - offs[:-1]
        else:
            lengths = pc.utf8_length(text).to_numpy(zero_copy_only=False).astype(np.int64)
        self.chars.add(lengths)
        long_mask = lengths > LONG_CHARS
        self.long_char_rows += int(long_mask.sum())
        self.ex["long"].take(source_rows, long_mask)
        self._short_texts(text, lengths, source_rows)
        self._token_lengths(text, source_rows)

        # Duplicates, conflicts, leakage.
        key = _hash_rows(offs, data) if content_key is text else hash_strings(content_key)
        if self.task is Task.SEQUENCE_CLASSIFICATION:
            label_ids = self._labels(batch.column("label"), split)
            key = (key & _TEXT_MASK) | (label_ids.astype(np.uint64) & np.uint64(0xFFFF))
        want_leak = not self.ex["leak"].full
        want_conflict = self.task is Task.SEQUENCE_CLASSIFICATION and not self.ex["conflict"].full
        seen, _, counts, siblings = self.texts.add_detailed(
            key,
            split,
            details=want_leak or want_conflict,
            prefix_mask=_TEXT_MASK if want_conflict else None,
        )
        self.ex["dup"].take(source_rows, seen)
        near_seen, _ = self.near.add(_normalised_hashes(text, offs, data, ascii_only))
        self.ex["near"].take(source_rows, near_seen & ~seen)
        if want_leak:
            # A validation/test row whose text (and label) is also in train.
            self.ex["leak"].take(source_rows, (split != 0) & (counts[:, 0] > 0))
        if want_conflict:
            self.ex["conflict"].take(source_rows, siblings)

        # Personal data.
        return self._pii(batch, pii_input, parents, source_rows)

    def _texts(self, batch: pa.RecordBatch):
        """(text for lengths/tokens/near-dups, exact content to hash, strings to scan
        for PII, row of each scanned string or None when one per row)."""
        if self.task is not Task.CHAT_SFT:
            text = batch.column("text")
            if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
                text = text.cast(pa.string())
            if text.null_count:
                text = pc.fill_null(text, "")
            return text, text, text, None
        msgs = batch.column("messages")
        lens = pc.fill_null(pc.list_value_length(msgs), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = pa.array(np.concatenate([[0], np.cumsum(lens)]).astype(np.int32))
        flat = msgs.flatten()
        content = pc.fill_null(flat.field("content"), "")
        role = pc.fill_null(flat.field("role"), "")
        text = pc.fill_null(pc.binary_join(pa.ListArray.from_arrays(offsets, content), "\n"), "")
        turns = pc.binary_join_element_wise(role, content, "\x1f")
        key = pc.fill_null(pc.binary_join(pa.ListArray.from_arrays(offsets, turns), "\x1e"), "")
        parents = np.repeat(np.arange(len(msgs)), lens)
        return text, key, content, parents

    def _short_texts(self, text: pa.Array, lengths: np.ndarray, source_rows: np.ndarray) -> None:
        # Three words need at least five characters; only short rows are counted.
        cand = np.flatnonzero(lengths < 24)
        if not len(cand):
            return
        words = pc.count_substring_regex(text.take(pa.array(cand)), r"\S+").to_numpy(zero_copy_only=False)
        short = cand[words < SHORT_WORDS]
        self.short_rows += len(short)
        if len(short) and not self.ex["short"].full:
            mask = np.zeros(len(lengths), dtype=bool)
            mask[short] = True
            self.ex["short"].take(source_rows, mask)

    def _token_lengths(self, text: pa.Array, source_rows: np.ndarray) -> None:
        room = self.token_sample_rows - self.tokens.n
        if self.token_counter is None or room <= 0:
            return
        sample = text.slice(0, room)
        counts = np.asarray(self.token_counter(sample.to_pylist()), dtype=np.int64)
        self.tokens.add(counts)
        if self.model_max_length:
            over = counts > self.model_max_length
            self.tokens_over_limit += int(over.sum())
            self.ex["tokens"].take(source_rows[: len(counts)], over)

    def _labels(self, labels: pa.Array, split: np.ndarray) -> np.ndarray:
        if not pa.types.is_string(labels.type) and not pa.types.is_large_string(labels.type):
            labels = labels.cast(pa.string())
        if labels.null_count:
            labels = pc.fill_null(labels, "")
        enc = pc.dictionary_encode(labels)
        local = np.array([self._label_id(v) for v in enc.dictionary.to_pylist()], dtype=np.int64)
        ids = local[enc.indices.to_numpy(zero_copy_only=False)] if len(local) else np.zeros(len(labels), np.int64)
        nl = len(self.label_names)
        if len(self.label_counts) < nl:
            grown = np.zeros((nl, _NSPLITS), dtype=np.int64)
            grown[: len(self.label_counts)] = self.label_counts
            self.label_counts = grown
        self.label_counts += np.bincount(ids * _NSPLITS + split, minlength=nl * _NSPLITS).reshape(nl, _NSPLITS)
        return ids

    def _label_id(self, label: str) -> int:
        got = self.label_ids.get(label)
        if got is None:
            if len(self.label_names) >= MAX_LABELS:
                label = OTHER_LABEL
                got = self.label_ids.get(label)
                if got is not None:
                    return got
            got = len(self.label_names)
            self.label_ids[label] = got
            self.label_names.append(label)
        return got

    def _pii(self, batch: pa.RecordBatch, strings: pa.Array, parents, source_rows) -> pa.RecordBatch:
        scan = pii_mod.scan_array(strings, redact_matches=self.redact_pii)
        n = batch.num_rows
        for kind, per_string in scan.match_counts.items():
            total = int(per_string.sum())
            if not total:
                continue
            per_row = per_string if parents is None else np.bincount(parents, weights=per_string, minlength=n)
            hit = per_row > 0
            self.pii_matches[kind] += total
            self.pii_rows[kind] += int(hit.sum())
            self.pii_ex[kind].take(source_rows, hit)
        if not self.redact_pii or scan.redacted is strings:
            return batch
        if self.task is not Task.CHAT_SFT:
            i = batch.schema.get_field_index("text")
            return batch.set_column(i, batch.schema.field(i), scan.redacted)
        i = batch.schema.get_field_index("messages")
        msgs = batch.column(i)
        flat = msgs.flatten()
        fields = [
            scan.redacted.cast(f.type) if f.name == "content" else flat.field(f.name)
            for f in flat.type
        ]
        struct = pa.StructArray.from_arrays(fields, fields=list(flat.type), mask=flat.is_null())
        lens = pc.fill_null(pc.list_value_length(msgs), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = pa.array(np.concatenate([[0], np.cumsum(lens)]).astype(np.int32))
        rebuilt = pa.ListArray.from_arrays(offsets, struct, type=msgs.type, mask=msgs.is_null())
        return batch.set_column(i, batch.schema.field(i), rebuilt)

    # --- the report ---------------------------------------------------------------

    def finish(self, *, columns: Sequence[ColumnProfile], column_count: int, had_bom: bool) -> QualityReport:
        """The quality report of everything added so far."""
        total = self.rows
        facts = ProfileFacts(task=self.task, row_count=total)
        facts.split_rows = {name: int(c) for name, c in zip(SPLITS, self.split_rows)}
        facts.labels = self._label_distribution()
        self._duplicates(facts)
        facts.pii = tuple(
            PiiFinding(
                kind=kind,
                match_count=self.pii_matches[kind],
                row_count=self.pii_rows[kind],
                example_rows=self.pii_ex[kind].result(),
                redacted=self.redact_pii,
            )
            for kind in sorted(pii_mod.KINDS, key=lambda k: k.value)
            if self.pii_matches[kind]
        )
        facts.char_length = self.chars.result()
        facts.long_char_rows = self.long_char_rows
        facts.long_examples = self.ex["long"].result()
        if self.token_counter is not None:
            facts.token_length = self.tokens.result()
            facts.tokens_over_limit = self.tokens_over_limit
            facts.token_examples = self.ex["tokens"].result()
            facts.model_max_length = self.model_max_length
            facts.tokenizer_model = self.tokenizer_model
        facts.short_rows = self.short_rows
        facts.short_examples = self.ex["short"].result()
        cross = self._cross_split_rows()
        return QualityReport(
            row_count=total,
            column_count=column_count,
            columns=tuple(columns),
            label_distribution=facts.labels,
            char_length=facts.char_length,
            token_length=facts.token_length,
            tokenizer_model=self.tokenizer_model if self.token_counter is not None else "",
            exact_duplicate_rows=facts.exact_duplicates,
            near_duplicate_rows=facts.near_duplicates,
            cross_split_duplicate_rows=cross,
            pii=facts.pii,
            warnings=build_warnings(facts),
            had_byte_order_mark=had_bom,
        )

    def _label_distribution(self) -> tuple[LabelCount, ...]:
        if self.task is not Task.SEQUENCE_CLASSIFICATION or not self.label_names:
            return ()
        totals = self.label_counts.sum(axis=1)
        order = sorted(range(len(self.label_names)), key=lambda i: (-totals[i], self.label_names[i]))
        return tuple(
            LabelCount(
                label=self.label_names[i],
                count=int(totals[i]),
                fraction=float(totals[i]) / self.rows if self.rows else 0.0,
                split_counts={name: int(c) for name, c in zip(SPLITS, self.label_counts[i])},
            )
            for i in order
            if totals[i]
        )

    @staticmethod
    def _scale(table: KeyTable, value: int) -> int:
        """Scale a sum over a table's kept keys up to all keys (each kept key stands for
        2**level keys)."""
        return int(value) << table.level

    def _repeats(self, table: KeyTable) -> int:
        """Rows repeating an earlier row (sum of count - 1 over keys, estimated when sampled)."""
        return self._scale(table, table.rows - len(table.keys))

    def _groups(self) -> tuple[np.ndarray, np.ndarray]:
        """Per distinct text: split counts (groups × splits) and keys per text."""
        keys, counts = self.texts.keys, self.texts.counts.astype(np.int64)
        if not len(keys):
            return np.zeros((0, _NSPLITS), np.int64), np.zeros(0, np.int64)
        if self.task is not Task.SEQUENCE_CLASSIFICATION:
            return counts, np.ones(len(keys), np.int64)
        text = keys & _TEXT_MASK
        starts = np.flatnonzero(np.concatenate([[True], text[1:] != text[:-1]]))
        return np.add.reduceat(counts, starts, axis=0), np.diff(np.append(starts, len(keys)))

    def _duplicates(self, facts: ProfileFacts) -> None:
        facts.approximate = self.texts.sampled or self.near.sampled
        facts.exact_duplicates = self._repeats(self.texts)
        facts.duplicate_examples = self.ex["dup"].result()
        facts.near_duplicates = max(self._repeats(self.near), facts.exact_duplicates)
        facts.near_examples = self.ex["near"].result()
        groups, per_text = self._groups()
        if self.task is Task.SEQUENCE_CLASSIFICATION and len(groups):
            conflicting = per_text > 1
            facts.conflicting_texts = self._scale(self.texts, int(conflicting.sum()))
            facts.conflicting_rows = self._scale(self.texts, int(groups[conflicting].sum()))
            facts.conflict_examples = self.ex["conflict"].result()
        if len(groups):
            in_train = groups[:, 0] > 0
            in_val = groups[:, 1] > 0
            for s, name in ((1, "validation"), (2, "test")):
                facts.leaked[(name, "train")] = self._scale(self.texts, int(groups[in_train, s].sum()))
            facts.leaked[("test", "validation")] = self._scale(
                self.texts, int(groups[~in_train & in_val, 2].sum())
            )
            facts.leak_examples = self.ex["leak"].result()

    def _cross_split_rows(self) -> int:
        groups, _ = self._groups()
        if not len(groups):
            return 0
        multi = (groups > 0).sum(axis=1) >= 2
        return self._scale(self.texts, int(groups[multi].sum()))

    @property
    def state_bytes(self) -> int:
        """Memory held by the duplicate tables (for benchmarks)."""
        return self.texts.nbytes + self.near.nbytes
