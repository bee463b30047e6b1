"""Quality profile numbers on hand-made batches, warnings text, and a real corpus."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from services.dataset_svc.domain.model import ColumnProfile, PiiKind, Severity, Task
from services.dataset_svc.domain.profile import EDGES, Histogram, QualityProfiler
from services.dataset_svc.domain.warnings import ProfileFacts, build_warnings, pct

BROWN = Path("/work/shared/data/brown_genres.csv")


def cls_batch(texts, labels, start=1):
    return pa.record_batch(
        [pa.array(texts), pa.array(labels), pa.array(range(start, start + len(texts)), pa.int64())],
        names=["text", "label", "source_row"],
    )


def splits(*values):
    return np.array(values, dtype=np.int8)


def finish(p):
    return p.finish(columns=[ColumnProfile("text", "text")], column_count=2, had_bom=False)


def codes(report):
    return [w.code for w in report.warnings]


def warning(report, code):
    return next(w for w in report.warnings if w.code == code)


def test_duplicates_near_duplicates_conflicts_and_leakage():
    p = QualityProfiler(Task.SEQUENCE_CLASSIFICATION)
    texts = [
        "The cat sat.",  # 1 train
        "the  cat SAT!",  # 2 train: near duplicate of 1
        "The cat sat.",  # 3 train: exact duplicate of 1
        "A dog barked.",  # 4 train
        "A dog barked.",  # 5 test: leakage (and a duplicate)
        "Birds sing 42 songs",  # 6 validation
        "Birds sing 7 songs",  # 7 train: near duplicate of 6 (digits)
        "The cat sat.",  # 8 train: same text, different label
    ]
    labels = ["pet", "pet", "pet", "pet", "pet", "nature", "nature", "wild"]
    p.add(cls_batch(texts, labels), splits(0, 0, 0, 0, 2, 1, 0, 0))
    r = finish(p)
    assert r.row_count == 8
    assert r.exact_duplicate_rows == 2  # rows 3 and 5
    assert r.near_duplicate_rows == 5  # rows 2, 3, 5, 7, 8 (exact copies included)
    assert r.cross_split_duplicate_rows == 2  # rows 4 and 5: the dog is in train and test
    w = {x.code: x for x in r.warnings}
    assert w["DUPLICATE_ROWS"].example_rows == (3, 5)
    assert w["CONFLICTING_LABELS"].example_rows == (1, 3, 8)
    assert "1 text appears with different labels (3 rows in all)" in w["CONFLICTING_LABELS"].message
    assert w["SPLIT_LEAKAGE"].message.startswith("1 row of the test split (100 %) also appears in train")
    assert w["SPLIT_LEAKAGE"].example_rows == (5,)
    assert w["NEAR_DUPLICATES"].example_rows == (2, 7, 8)


def test_label_distribution_per_split_most_frequent_first():
    p = QualityProfiler(Task.SEQUENCE_CLASSIFICATION)
    p.add(cls_batch([f"t{i}" for i in range(6)], ["b", "a", "b", "c", "b", "a"]), splits(0, 0, 1, 2, 0, 1))
    r = finish(p)
    got = [(lc.label, lc.count, round(lc.fraction, 3), lc.split_counts) for lc in r.label_distribution]
    assert got == [
        ("b", 3, 0.5, {"train": 2, "validation": 1, "test": 0}),
        ("a", 2, 0.333, {"train": 1, "validation": 1, "test": 0}),
        ("c", 1, 0.167, {"train": 0, "validation": 0, "test": 1}),
    ]


def test_histogram_bounds_and_percentiles():
    h = Histogram()
    h.add(np.array([0, 5, 15, 16, 100, 1000, 70_000]))
    res = h.result()
    assert (res.min, res.max, res.rows_measured) == (0, 70_000, 7)
    assert res.mean == pytest.approx(sum([0, 5, 15, 16, 100, 1000, 70_000]) / 7)
    assert [(b.lower, b.upper, b.count) for b in res.buckets][:3] == [(0, 16, 3), (16, 32, 1), (32, 64, 0)]
    assert sum(b.count for b in res.buckets) == 7
    last = res.buckets[-1]
    assert last.lower == 65_536 and last.upper > 70_000 and last.count == 1
    assert 16 <= res.p50 < 32  # the 4th value lies in [16, 32)
    assert res.min <= res.p95 <= res.max
    # Lengths spread evenly: the estimate lands close to the true percentile.
    h2 = Histogram()
    values = np.arange(1, 1001)
    h2.add(values)
    assert abs(h2.result().p50 - 500) <= 20 and abs(h2.result().p95 - 950) <= 30
    assert EDGES[0] == 0 and all(np.diff(EDGES) > 0)


def make_rows(n, seed=0):
    rng = np.random.default_rng(seed)
    words = np.array(["alpha", "beta", "Gamma", "delta", "eps", "zeta", "eta", "theta"])
    texts = [" ".join(rng.choice(words, size=rng.integers(1, 40))) for _ in range(n)]
    labels = rng.choice(["x", "y", "z"], size=n).tolist()
    split = rng.choice(3, size=n, p=[0.7, 0.2, 0.1]).astype(np.int8)
    return texts, labels, split


def same_numbers(a, b):
    """Reports equal except for example rows (which rows are noticed depends on batching)."""
    strip = lambda r: [(w.code, w.severity, w.message) for w in r.warnings]
    assert strip(a) == strip(b)
    assert a.__class__(**{**a.__dict__, "warnings": ()}) == b.__class__(**{**b.__dict__, "warnings": ()})


def test_many_batches_equal_one_batch():
    texts, labels, split = make_rows(3000)
    one = QualityProfiler(Task.SEQUENCE_CLASSIFICATION)
    one.add(cls_batch(texts, labels), split)
    many = QualityProfiler(Task.SEQUENCE_CLASSIFICATION)
    for start in range(0, 3000, 217):
        sl = slice(start, start + 217)
        many.add(cls_batch(texts[sl], labels[sl], start + 1), split[sl])
    a, b = finish(one), finish(many)
    same_numbers(a, b)
    assert a.exact_duplicate_rows > 0 and a.cross_split_duplicate_rows > 0


def test_many_batches_of_sliced_arrays():
    texts, labels, split = make_rows(1000, seed=3)
    batch = cls_batch(texts, labels)
    one = QualityProfiler(Task.SEQUENCE_CLASSIFICATION)
    one.add(batch, split)
    many = QualityProfiler(Task.SEQUENCE_CLASSIFICATION)
    for start in range(0, 1000, 99):
        many.add(batch.slice(start, 99), split[start : start + 99])
    same_numbers(finish(one), finish(many))


def test_hash_sample_keeps_estimates_close():
    rng = np.random.default_rng(5)
    texts = [f"row {i} " + "word " * int(rng.integers(1, 9)) for i in range(20_000)]
    for i in np.flatnonzero(rng.random(20_000) < 0.1):
        texts[i] = texts[int(rng.integers(0, max(i, 1)))]
    split = rng.choice(3, size=20_000, p=[0.8, 0.1, 0.1]).astype(np.int8)
    exact = QualityProfiler(Task.CAUSAL_LM)
    sampled = QualityProfiler(Task.CAUSAL_LM)
    sampled.texts.max_keys = sampled.near.max_keys = 4000
    for prof in (exact, sampled):
        for start in range(0, 20_000, 2500):
            batch = pa.record_batch([pa.array(texts[start : start + 2500])], names=["text"])
            prof.add(batch, split[start : start + 2500])
    a, b = finish(exact), finish(sampled)
    assert sampled.texts.sampled and len(sampled.texts.keys) <= 4000
    assert b.exact_duplicate_rows == pytest.approx(a.exact_duplicate_rows, rel=0.2)
    assert b.cross_split_duplicate_rows == pytest.approx(a.cross_split_duplicate_rows, rel=0.3)
    assert warning(b, "DUPLICATE_ROWS").message.startswith("About ")


def test_chat_rows_profile_and_redact():
    msgs = pa.array(
        [
            [{"role": "user", "content": "Hi, my mail is ann@example.com"}, {"role": "assistant", "content": "Noted."}],
            [{"role": "user", "content": "Hi, my mail is ann@example.com"}, {"role": "assistant", "content": "Noted."}],
            [{"role": "user", "content": "Call me on +44 20 7946 0958"}],
            None,
        ],
        type=pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])),
    )
    batch = pa.record_batch([msgs, pa.array([1, 2, 3, 4], pa.int64())], names=["messages", "source_row"])
    p = QualityProfiler(Task.CHAT_SFT, redact_pii=True)
    out = p.add(batch, splits(0, 0, 0, 1))
    r = finish(p)
    assert r.row_count == 4 and r.exact_duplicate_rows == 1
    assert r.char_length.max == len("Hi, my mail is ann@example.com\nNoted.")
    found = {f.kind: f for f in r.pii}
    assert (found[PiiKind.EMAIL].match_count, found[PiiKind.EMAIL].row_count) == (2, 2)
    assert found[PiiKind.PHONE].example_rows == (3,) and found[PiiKind.PHONE].redacted
    assert out.column("messages").type == msgs.type
    assert out.column("messages").to_pylist()[0][0]["content"] == "Hi, my mail is [EMAIL]"
    assert out.column("messages").to_pylist()[2][0]["content"] == "Call me on [PHONE]"
    assert out.column("messages").to_pylist()[3] is None
    assert "FEW_ROWS" in codes(r) and "Fine-tuning usually needs at least 200" in warning(r, "FEW_ROWS").message


def test_redaction_returns_same_batch_when_off():
    batch = cls_batch(["mail a@b.com"], ["x"])
    p = QualityProfiler(Task.SEQUENCE_CLASSIFICATION)
    assert p.add(batch, splits(0)) is batch
    r = finish(p)
    assert r.pii[0].kind is PiiKind.EMAIL and not r.pii[0].redacted
    assert "turn on PII redaction" in warning(r, "PII_FOUND").message
    p2 = QualityProfiler(Task.SEQUENCE_CLASSIFICATION, redact_pii=True)
    assert p2.add(batch, splits(0)).column("text").to_pylist() == ["mail [EMAIL]"]


def test_token_lengths_on_a_bounded_sample():
    calls = []

    def counter(texts):
        calls.append(len(texts))
        return [len(t.split()) + 2 for t in texts]

    counter.max_length = 5
    p = QualityProfiler(Task.CAUSAL_LM, token_counter=counter, tokenizer_model="fake")
    p.token_sample_rows = 25
    texts = ["one two three four"] * 10 + ["one"] * 20
    for start in range(0, 30, 10):
        p.add(pa.record_batch([pa.array(texts[start : start + 10])], names=["text"]), np.zeros(10, np.int8))
    r = finish(p)
    assert calls == [10, 10, 5]
    assert r.token_length.rows_measured == 25 and r.tokenizer_model == "fake"
    assert (r.token_length.min, r.token_length.max) == (3, 6)
    w = warning(r, "LONG_TEXTS")
    assert "40 % of rows are longer than the 5 tokens that fake reads (measured on 25 rows)" in w.message
    assert w.example_rows == tuple(range(1, 11))


def test_warnings_read_well():
    from services.dataset_svc.domain.model import LabelCount, PiiFinding

    labels = (
        LabelCount("news", 7000, 7000 / 8368, {"train": 5600}),
        LabelCount("fiction", 1300, 1300 / 8368, {"train": 1000}),
        LabelCount("humor", 60, 60 / 8368, {"train": 48}),
        LabelCount("poetry", 8, 8 / 8368, {"train": 6}),
    )
    facts = ProfileFacts(
        task=Task.SEQUENCE_CLASSIFICATION,
        row_count=8368,
        split_rows={"train": 6700, "validation": 834, "test": 834},
        labels=labels,
        exact_duplicates=3180,
        duplicate_examples=(4, 9),
        near_duplicates=3500,
        leaked={("test", "train"): 412, ("validation", "train"): 0},
        pii=(PiiFinding(PiiKind.EMAIL, 1234, 1000, (7,)),),
        short_rows=2000,
    )
    ws = build_warnings(facts)
    msgs = {w.code: w.message for w in ws}
    assert msgs["DUPLICATE_ROWS"].startswith("38 % of rows are duplicates (3,180 of 8,368).")
    assert msgs["SPLIT_LEAKAGE"].startswith("412 rows of the test split (49 %) also appear in train")
    assert '"news" has 7,000 rows but "poetry" only 8 (875 times fewer)' in msgs["CLASS_IMBALANCE"]
    assert '"humor" (0.7 %), "poetry" (less than 0.1 %)' in msgs["CLASS_IMBALANCE"]
    assert msgs["FEW_ROWS_PER_CLASS"].startswith('1 class has fewer than 10 training rows: "poetry" (6)')
    assert msgs["PII_FOUND"].startswith("Found 1,234 e-mail addresses in 1,000 rows.")
    assert "[EMAIL]" in msgs["PII_FOUND"]
    assert msgs["SHORT_TEXTS"].startswith("24 % of rows (2,000) have fewer than 3 words")
    assert msgs["NEAR_DUPLICATES"].startswith("3.8 % of rows (320) are near duplicates")
    severities = [w.severity for w in ws]
    assert severities == sorted(severities, key=lambda s: s is not Severity.WARNING)
    assert ws[0].code == "SPLIT_LEAKAGE"
    assert pct(1, 3) == "33 %" and pct(0, 5) == "0 %" and pct(1, 2000) == "less than 0.1 %"


def test_empty_split_and_few_rows():
    p = QualityProfiler(Task.CAUSAL_LM)
    p.add(pa.record_batch([pa.array(["a b c d", "e f g h"])], names=["text"]), splits(0, 0))
    r = finish(p)
    assert codes(r)[:3] == ["FEW_ROWS", "EMPTY_SPLIT", "SHORT_TEXTS"] or "EMPTY_SPLIT" in codes(r)
    assert "The validation split is empty" in " ".join(w.message for w in r.warnings)
    assert r.label_distribution == ()


def test_class_missing_from_a_split_is_named():
    p = QualityProfiler(Task.SEQUENCE_CLASSIFICATION)
    texts = [f"sentence number {i}" for i in range(6)]
    labels = ["news", "news", "news", "poetry", "poetry", "news"]
    p.add(pa.record_batch([pa.array(texts), pa.array(labels)], names=["text", "label"]),
          splits(0, 0, 0, 0, 1, 2))
    messages = [w.message for w in finish(p).warnings if w.code == "CLASS_MISSING_FROM_SPLIT"]
    assert [m.split(", so")[0] for m in messages] == [
        "1 class has no rows in the validation split (news)",
        "1 class has no rows in the test split (poetry)",
    ]


@pytest.mark.skipif(not BROWN.exists(), reason="shared corpus not present")
def test_brown_genres_corpus():
    table = pcsv.read_csv(BROWN)
    table = table.append_column("source_row", pa.array(np.arange(1, table.num_rows + 1), pa.int64()))
    rng = np.random.default_rng(42)
    p = QualityProfiler(Task.SEQUENCE_CLASSIFICATION)
    for batch in table.select(["text", "label", "source_row"]).to_batches(max_chunksize=1000):
        p.add(batch, rng.choice(3, size=batch.num_rows, p=[0.8, 0.1, 0.1]).astype(np.int8))
    r = p.finish(columns=[ColumnProfile("text", "text"), ColumnProfile("label", "label")], column_count=3, had_bom=False)
    assert r.row_count == 8368
    assert len(r.label_distribution) == 15
    assert sum(lc.count for lc in r.label_distribution) == 8368
    counts = [lc.count for lc in r.label_distribution]
    assert counts == sorted(counts, reverse=True)
    assert r.char_length.rows_measured == 8368 and r.char_length.min > 0
    assert r.char_length.p50 <= r.char_length.p95 <= r.char_length.max
    assert r.pii == ()  # no false positives in ordinary prose
    assert r.token_length is None and r.column_count == 3
