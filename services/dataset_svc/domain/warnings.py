"""Plain-language quality warnings, written for someone who has never trained a model."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.dataset_svc.domain.model import (
    LabelCount,
    LengthHistogram,
    PiiFinding,
    PiiKind,
    QualityWarning,
    Severity,
    Task,
)

# Order of importance within one severity (most important first).
CODES = (
    "FEW_ROWS",
    "EMPTY_SPLIT",
    "SPLIT_LEAKAGE",
    "CONFLICTING_LABELS",
    "DUPLICATE_ROWS",
    "PII_FOUND",
    "CLASS_IMBALANCE",
    "CLASS_MISSING_FROM_SPLIT",
    "FEW_ROWS_PER_CLASS",
    "LONG_TEXTS",
    "NEAR_DUPLICATES",
    "SHORT_TEXTS",
)
_RANK = {code: i for i, code in enumerate(CODES)}

MIN_ROWS = {Task.SEQUENCE_CLASSIFICATION: 100, Task.CAUSAL_LM: 100, Task.CHAT_SFT: 200}
MIN_ROWS_PER_CLASS = 10
IMBALANCE_RATIO = 10
SMALL_CLASS_FRACTION = 0.01
LONG_CHARS = 8_000
SHORT_WORDS = 3

_PII_NAMES = {
    PiiKind.EMAIL: ("e-mail address", "e-mail addresses"),
    PiiKind.PHONE: ("phone number", "phone numbers"),
    PiiKind.PAYMENT_CARD: ("payment card number", "payment card numbers"),
    PiiKind.IBAN: ("bank account number (IBAN)", "bank account numbers (IBAN)"),
    PiiKind.IP_ADDRESS: ("IP address", "IP addresses"),
}
_PLACEHOLDER = {
    PiiKind.EMAIL: "[EMAIL]",
    PiiKind.PHONE: "[PHONE]",
    PiiKind.PAYMENT_CARD: "[CARD]",
    PiiKind.IBAN: "[IBAN]",
    PiiKind.IP_ADDRESS: "[IP]",
}


@dataclass
class ProfileFacts:
    """What the profiler measured, in the terms the warnings need."""

    task: Task
    row_count: int
    split_rows: dict[str, int] = field(default_factory=dict)
    labels: tuple[LabelCount, ...] = ()
    exact_duplicates: int = 0
    duplicate_examples: tuple[int, ...] = ()
    near_duplicates: int = 0  # includes exact duplicates
    near_examples: tuple[int, ...] = ()
    conflicting_texts: int = 0
    conflicting_rows: int = 0
    conflict_examples: tuple[int, ...] = ()
    # (split, other split) -> rows of `split` whose text also appears in `other`.
    leaked: dict[tuple[str, str], int] = field(default_factory=dict)
    leak_examples: tuple[int, ...] = ()
    pii: tuple[PiiFinding, ...] = ()
    char_length: LengthHistogram = field(default_factory=LengthHistogram)
    long_char_rows: int = 0
    long_examples: tuple[int, ...] = ()
    token_length: LengthHistogram | None = None
    tokens_over_limit: int = 0  # among token_length.rows_measured
    token_examples: tuple[int, ...] = ()
    model_max_length: int | None = None
    tokenizer_model: str = ""
    short_rows: int = 0
    short_examples: tuple[int, ...] = ()
    approximate: bool = False  # duplicate counts estimated from a hash sample


def n(value: int) -> str:
    """1234567 -> '1,234,567'."""
    return f"{value:,}"


def pct(part: float, whole: float) -> str:
    """Share as a readable percentage: '38 %', '4.2 %', 'less than 0.1 %'."""
    if whole <= 0:
        return "0 %"
    p = 100.0 * part / whole
    if p >= 10 or p == 0:
        return f"{round(p):d} %"
    if p < 0.1:
        return "less than 0.1 %"
    return f"{p:.1f} %"


def rows(count: int) -> str:
    return f"{n(count)} row" if count == 1 else f"{n(count)} rows"


def _names(items: list[str], limit: int = 5) -> str:
    quoted = [f'"{s}"' for s in items[:limit]]
    if len(items) > limit:
        quoted.append(f"{n(len(items) - limit)} more")
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _w(code: str, severity: Severity, message: str, examples=()) -> QualityWarning:
    return QualityWarning(code, severity, message, tuple(int(r) for r in list(examples)[:10]))


def build_warnings(f: ProfileFacts) -> tuple[QualityWarning, ...]:
    """Every warning that applies, most important first."""
    out: list[QualityWarning] = []
    total = f.row_count
    about = "about " if f.approximate else ""

    minimum = MIN_ROWS.get(f.task, 100)
    if total < minimum:
        out.append(_w(
            "FEW_ROWS", Severity.WARNING,
            f"The dataset has only {rows(total)}. Fine-tuning usually needs at least "
            f"{n(minimum)} examples, and results improve with a few thousand.",
        ))

    if total > 0:
        for split in ("train", "validation", "test"):
            if f.split_rows.get(split, 0) == 0:
                why = {
                    "train": "there is nothing to train on",
                    "validation": "training progress cannot be checked on unseen examples",
                    "test": "the final model cannot be scored on unseen examples",
                }[split]
                out.append(_w(
                    "EMPTY_SPLIT", Severity.WARNING if split != "test" else Severity.INFO,
                    f"The {split} split is empty, so {why}. Add more rows or change the "
                    "split settings.",
                ))
            elif f.labels:
                missing = [lc.label for lc in f.labels if lc.split_counts.get(split, 0) == 0]
                if missing:
                    # Group splits keep documents whole, so a class can miss a split entirely.
                    out.append(_w(
                        "CLASS_MISSING_FROM_SPLIT", Severity.WARNING,
                        f"{n(len(missing))} {'class has' if len(missing) == 1 else 'classes have'} "
                        f"no rows in the {split} split ({', '.join(missing[:5])}"
                        f"{', …' if len(missing) > 5 else ''}), so "
                        f"{'training cannot learn' if split == 'train' else 'the scores cannot show'} "
                        f"{'it' if len(missing) == 1 else 'them'}. Add rows of "
                        f"{'that class' if len(missing) == 1 else 'those classes'} or change the "
                        "split settings.",
                    ))

    for (split, other), count in sorted(f.leaked.items(), key=lambda kv: -kv[1]):
        if count <= 0:
            continue
        share = pct(count, f.split_rows.get(split, 0))
        out.append(_w(
            "SPLIT_LEAKAGE", Severity.WARNING,
            f"{about.capitalize()}{rows(count)} of the {split} split ({share}) also "
            f"{'appears' if count == 1 else 'appear'} in "
            f"{other}, so scores on {split} will look better than they really are. Remove the "
            "repeated texts or split by a group column.",
            f.leak_examples,
        ))

    if f.conflicting_texts:
        texts = "text appears" if f.conflicting_texts == 1 else "texts appear"
        out.append(_w(
            "CONFLICTING_LABELS", Severity.WARNING,
            f"{about.capitalize()}{n(f.conflicting_texts)} {texts} with different labels "
            f"({rows(f.conflicting_rows)} in all). The model cannot learn a label that "
            "changes for the same text; fix or remove these rows.",
            f.conflict_examples,
        ))

    if f.exact_duplicates:
        share = 100.0 * f.exact_duplicates / max(total, 1)
        out.append(_w(
            "DUPLICATE_ROWS", Severity.WARNING if share >= 5 else Severity.INFO,
            f"{about.capitalize()}{pct(f.exact_duplicates, total)} of rows are duplicates "
            f"({n(f.exact_duplicates)} of {n(total)}). Repeated rows make the model over-learn "
            "them; consider removing the copies.",
            f.duplicate_examples,
        ))

    for finding in f.pii:
        one, many = _PII_NAMES.get(finding.kind, ("personal detail", "personal details"))
        what = f"{n(finding.match_count)} {one if finding.match_count == 1 else many}"
        where = rows(finding.row_count)
        if finding.redacted:
            out.append(_w(
                "PII_FOUND", Severity.INFO,
                f"Found {what} in {where} and replaced them with "
                f"{_PLACEHOLDER.get(finding.kind, '[PII]')} in the training copy.",
                finding.example_rows,
            ))
        else:
            out.append(_w(
                "PII_FOUND", Severity.WARNING,
                f"Found {what} in {where}. A model can repeat personal data it was trained "
                "on; turn on PII redaction to replace them with "
                f"{_PLACEHOLDER.get(finding.kind, '[PII]')} before training.",
                finding.example_rows,
            ))

    if f.task is Task.SEQUENCE_CLASSIFICATION and len(f.labels) >= 2:
        largest, smallest = f.labels[0], f.labels[-1]
        small = [lc for lc in f.labels if lc.fraction < SMALL_CLASS_FRACTION]
        ratio = largest.count / max(smallest.count, 1)
        if ratio >= IMBALANCE_RATIO or small:
            msg = (
                f'The classes are unbalanced: "{largest.label}" has {rows(largest.count)} but '
                f'"{smallest.label}" only {n(smallest.count)} ({ratio:,.0f} times fewer).'
            )
            if small:
                parts = [f'"{lc.label}" ({pct(lc.count, total)})' for lc in small[:5]]
                more = f" and {n(len(small) - 5)} more" if len(small) > 5 else ""
                msg += f" Classes under 1 % of the data: {', '.join(parts)}{more}."
            msg += " The model may rarely predict the small classes; add examples of them."
            out.append(_w("CLASS_IMBALANCE", Severity.WARNING, msg))

    if f.task is Task.SEQUENCE_CLASSIFICATION and f.labels:
        few = [lc for lc in reversed(f.labels) if lc.split_counts.get("train", lc.count) < MIN_ROWS_PER_CLASS]
        if few:
            items = [f'"{lc.label}" ({n(lc.split_counts.get("train", lc.count))})' for lc in few[:5]]
            more = f" and {n(len(few) - 5)} more" if len(few) > 5 else ""
            classes = "class has" if len(few) == 1 else "classes have"
            out.append(_w(
                "FEW_ROWS_PER_CLASS", Severity.WARNING,
                f"{n(len(few))} {classes} fewer than {MIN_ROWS_PER_CLASS} training rows: "
                f"{', '.join(items)}{more}. The model can hardly learn a class from so few "
                "examples.",
            ))

    th = f.token_length
    if th is not None and th.rows_measured and f.model_max_length and f.tokens_over_limit:
        share = f.tokens_over_limit / th.rows_measured
        if share >= 0.01 or th.p95 > f.model_max_length:
            sample = "" if th.rows_measured >= total else f" (measured on {rows(th.rows_measured)})"
            model = f" that {f.tokenizer_model} reads" if f.tokenizer_model else ""
            out.append(_w(
                "LONG_TEXTS", Severity.WARNING if th.p95 > f.model_max_length else Severity.INFO,
                f"{pct(f.tokens_over_limit, th.rows_measured)} of rows are longer than the "
                f"{n(f.model_max_length)} tokens{model}{sample}; they will be truncated "
                "(cut off) during training.",
                f.token_examples,
            ))
    elif f.long_char_rows and (th is None or not f.model_max_length):
        out.append(_w(
            "LONG_TEXTS", Severity.WARNING if f.char_length.p95 > LONG_CHARS else Severity.INFO,
            f"{pct(f.long_char_rows, total)} of rows ({n(f.long_char_rows)}) are longer than "
            f"{n(LONG_CHARS)} characters; most models will truncate (cut off) such texts "
            "during training.",
            f.long_examples,
        ))

    near_only = max(f.near_duplicates - f.exact_duplicates, 0)
    if near_only and near_only / max(total, 1) >= 0.001:
        out.append(_w(
            "NEAR_DUPLICATES", Severity.WARNING if near_only / total >= 0.1 else Severity.INFO,
            f"{about.capitalize()}{pct(near_only, total)} of rows ({n(near_only)}) are near "
            "duplicates: they differ from an earlier row only in capital letters, spacing, "
            "punctuation or numbers.",
            f.near_examples,
        ))

    if f.short_rows and f.short_rows / max(total, 1) >= 0.01:
        out.append(_w(
            "SHORT_TEXTS", Severity.WARNING if f.short_rows / total >= 0.1 else Severity.INFO,
            f"{pct(f.short_rows, total)} of rows ({n(f.short_rows)}) have fewer than "
            f"{SHORT_WORDS} words; very short texts give the model little to learn from.",
            f.short_examples,
        ))

    out.sort(key=lambda w: (w.severity is not Severity.WARNING, _RANK.get(w.code, len(CODES))))
    return tuple(out)
