"""Personal data detection: e-mail, phone, payment card, IBAN and IP addresses.

Two layers share one set of patterns:

* ``find_pii`` / ``redact`` / ``mask_pii`` / ``scan_texts`` work on Python strings and
  are reusable anywhere (e.g. masking free text in a survey answer).
* ``scan_array`` works on a whole Arrow string array: RE2 (pyarrow.compute) picks the
  few candidate rows in one vectorised pass, and only those go through the Python
  patterns and checksums (Luhn, ISO 7064 mod-97, octet ranges). E-mails need no
  checksum, so they are counted and replaced by RE2 alone.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from services.dataset_svc.domain.model import PiiKind

PLACEHOLDERS: dict[PiiKind, str] = {
    PiiKind.EMAIL: "[EMAIL]",
    PiiKind.PHONE: "[PHONE]",
    PiiKind.PAYMENT_CARD: "[CARD]",
    PiiKind.IBAN: "[IBAN]",
    PiiKind.IP_ADDRESS: "[IP]",
}

# Order in which overlapping matches win: the more specific (checksummed) kinds first.
KINDS: tuple[PiiKind, ...] = (
    PiiKind.EMAIL,
    PiiKind.IBAN,
    PiiKind.PAYMENT_CARD,
    PiiKind.IP_ADDRESS,
    PiiKind.PHONE,
)
_PRIORITY = {kind: i for i, kind in enumerate(KINDS)}

# Valid both as Python `re` and as RE2 (no look-arounds), so the vectorised count and
# the per-string scan agree.
EMAIL_PATTERN = (
    r"[A-Za-z0-9_%+-](?:[A-Za-z0-9._%+-]*[A-Za-z0-9_%+-])?"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"\.[A-Za-z]{2,24}"
)

# A row can hold a non-e-mail match only if this RE2 pattern matches somewhere in it:
# a 9+ digit run with phone/card separators, a dotted quad, two colons with hex
# around them, or the start of an IBAN. It is a superset of the Python patterns.
_CANDIDATE_RE2 = (
    r"\d(?:[ ().\-/]{0,3}\d){8}"
    r"|\d{1,3}\.\d{1,3}\.\d{1,3}\.\d"
    r"|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}"
    r"|[A-Z]{2}\d\d ?[A-Z0-9]{4}"
)

_EMAIL_RE = re.compile(EMAIL_PATTERN)
_CARD_RE = re.compile(r"(?<![\w\-.])\d(?:[ \-]?\d){12,18}(?![\w]|[\-.]\d)")
_IBAN_LOOSE_RE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}")
_IPV4_RE = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6_RE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:])"
)
# Phone candidates: optional international prefix, then digits with the separators
# people type. The layout is judged afterwards in `_is_phone`.
_PHONE_RE = re.compile(
    r"(?<![\w+\-./])(?:\+|00(?=[1-9]))?(?:\(\d{1,5}\)|\d)(?:[ .\-/]{0,2}(?:\(\d{1,5}\)|\d)){7,17}(?![\w]|[\-./]\d)"
)
_DIGIT_GROUPS_RE = re.compile(r"\d+")
_DATE_RE = re.compile(r"(?<!\d)\d{1,2}([./-])\d{1,2}\1(?:19|20)\d\d(?!\d)")

# ISO 13616 IBAN lengths of the countries that use one most often.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
    "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22,
    "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29,
    "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


@dataclass(frozen=True)
class PiiMatch:
    """One validated match: `text[start:end]` is `value`."""

    kind: PiiKind
    start: int
    end: int
    value: str


@dataclass(frozen=True)
class TextMatch:
    """A match inside the `index`-th string given to `scan_texts`."""

    index: int
    match: PiiMatch


# --- checksums ----------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """Luhn (mod 10) check of a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(compact: str) -> bool:
    """ISO 7064 mod-97 check (and the country's length, when known) of an IBAN
    without spaces."""
    if len(compact) < 15 or len(compact) > 34 or not compact[:2].isalpha():
        return False
    expected = IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(ch, 36)) for ch in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


# --- per-kind validators on a regex candidate -----------------------------------


def _card(m: re.Match[str]) -> tuple[int, int] | None:
    s = m.group()
    digits = s.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or digits[0] not in "23456":
        return None
    if " " in s and "-" in s:  # mixed separators: a list of numbers, not one card
        return None
    return (m.start(), m.end()) if luhn_valid(digits) else None


def _iban(m: re.Match[str]) -> tuple[int, int] | None:
    s = m.group()
    compact = s.replace(" ", "")
    expected = IBAN_LENGTHS.get(compact[:2])
    # The pattern may run on into a following upper-case word ("… 00 AND"): try the
    # country's length first, then any length that checks out.
    lengths = [expected] if expected else range(min(len(compact), 34), 14, -1)
    for n in lengths:
        if n > len(compact) or not iban_valid(compact[:n]):
            continue
        seen = 0
        for i, ch in enumerate(s):
            if ch != " ":
                seen += 1
                if seen == n:
                    end = m.start() + i + 1
                    # A cut in the middle of a word is not an IBAN.
                    if end < m.end() and s[i + 1] != " ":
                        return None
                    return (m.start(), end)
    return None


def _ipv4(m: re.Match[str]) -> tuple[int, int] | None:
    try:
        ipaddress.IPv4Address(m.group())
    except ValueError:
        return None
    return (m.start(), m.end())


def _ipv6(m: re.Match[str]) -> tuple[int, int] | None:
    s = m.group()
    groups = [g for g in s.split(":") if g]
    # Prose has "1954::" and "3:20::"; a real address has several groups, and hex
    # letters unless it is long.
    if len(groups) < 2 or (len(groups) < 4 and not any(c.isalpha() for c in s)):
        return None
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return None
    return (m.start(), m.end())


def _is_phone(s: str) -> bool:
    groups = _DIGIT_GROUPS_RE.findall(s)
    digits = "".join(groups)
    if s.startswith(("+", "00")):
        if s.startswith("00"):
            digits = digits[2:]
        return 9 <= len(digits) <= 15 and digits[0] != "0"
    if _DATE_RE.search(s):
        return False
    if not 9 <= len(digits) <= 12:
        return False
    if len(groups) == 1 and "(" not in s:
        return False  # a bare run of digits is more often an id or an amount
    if all(len(g) == 4 and g[:2] in ("19", "20") for g in groups):
        return False  # a list of years
    if digits[0] == "0" and digits[:2] != "00":
        # National trunk prefix (most of Europe, Asia, Africa): 0xx xxx xxxx and friends.
        return max(len(g) for g in groups[:-1]) <= 5
    # North American layout: (NXX) NXX-XXXX, NXX-NXX-XXXX, 1-NXX-NXX-XXXX.
    lens = [len(g) for g in groups]
    if lens == [1, 3, 3, 4] and groups[0] == "1":
        groups, lens = groups[1:], lens[1:]
    return lens == [3, 3, 4] and groups[0][0] in "23456789"


def _phone(m: re.Match[str]) -> tuple[int, int] | None:
    s = m.group()
    return (m.start(), m.end()) if _is_phone(s) else None


_NO_DIGITS = str.maketrans("", "", "0123456789")
_MIN_DIGITS = {_IBAN_LOOSE_RE: 2, _CARD_RE: 13, _IPV4_RE: 4, _IPV6_RE: 1, _PHONE_RE: 9}

_CHECKS = (
    (PiiKind.IBAN, _IBAN_LOOSE_RE, _iban),
    (PiiKind.PAYMENT_CARD, _CARD_RE, _card),
    (PiiKind.IP_ADDRESS, _IPV4_RE, _ipv4),
    (PiiKind.IP_ADDRESS, _IPV6_RE, _ipv6),
    (PiiKind.PHONE, _PHONE_RE, _phone),
)


# --- string API -------------------------------------------------------------------


def find_pii(text: str, *, emails: bool = True) -> list[PiiMatch]:
    """Validated, non-overlapping personal-data matches in `text`, in text order."""
    found: list[tuple[int, int, int, PiiKind]] = []
    if emails and "@" in text:
        for m in _EMAIL_RE.finditer(text):
            found.append((_PRIORITY[PiiKind.EMAIL], m.start(), m.end(), PiiKind.EMAIL))
    digits = len(text) - len(text.translate(_NO_DIGITS))
    for kind, pattern, check in _CHECKS:
        if digits < _MIN_DIGITS[pattern] or (pattern is _IPV6_RE and ":" not in text):
            continue
        if pattern is _IPV4_RE and "." not in text:
            continue
        pos = 0
        while (m := pattern.search(text, pos)) is not None:
            span = check(m)
            if span is not None:
                found.append((_PRIORITY[kind], span[0], span[1], kind))
                pos = span[1]
            else:
                # An IBAN candidate may have swallowed the start of the next one.
                pos = m.start() + 1 if kind is PiiKind.IBAN else m.end()
    if not found:
        return []
    found.sort()
    kept: list[tuple[int, int, int, PiiKind]] = []
    for item in found:  # higher priority first; drop anything overlapping a kept match
        if all(item[2] <= k[1] or item[1] >= k[2] for k in kept):
            kept.append(item)
    kept.sort(key=lambda k: k[1])
    return [PiiMatch(kind, start, end, text[start:end]) for _, start, end, kind in kept]


def _replace(text: str, matches: Sequence[PiiMatch]) -> str:
    parts: list[str] = []
    pos = 0
    for m in matches:
        parts.append(text[pos : m.start])
        parts.append(PLACEHOLDERS[m.kind])
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts)


def redact(text: str) -> str:
    """`text` with every personal-data match replaced by its placeholder ([EMAIL]…)."""
    matches = find_pii(text)
    return _replace(text, matches) if matches else text


def mask_pii(text: str) -> str:
    """Mask personal data in free text (same detector as dataset profiling)."""
    return redact(text)


def scan_texts(texts: Sequence[str | None]) -> dict[PiiKind, list[TextMatch]]:
    """Matches per kind over many strings (only kinds with matches appear)."""
    arr = pa.array(texts, type=pa.string())
    result = scan_array(arr)
    out: dict[PiiKind, list[TextMatch]] = {}
    for index in result.candidate_rows(arr):
        text = texts[index] or ""
        for m in find_pii(text):
            out.setdefault(m.kind, []).append(TextMatch(index, m))
    return out


# --- vectorised API ---------------------------------------------------------------


@dataclass
class ArrayScan:
    """Result of `scan_array`: per-kind match counts per row, and the redacted array."""

    match_counts: dict[PiiKind, np.ndarray] = field(default_factory=dict)  # int32 per row
    redacted: pa.Array | None = None
    email_rows: np.ndarray | None = None
    other_rows: np.ndarray | None = None

    def candidate_rows(self, arr: pa.Array) -> list[int]:
        rows: set[int] = set()
        for r in (self.email_rows, self.other_rows):
            if r is not None:
                rows.update(r.tolist())
        return sorted(rows)


def _indices(mask: pa.Array) -> np.ndarray:
    return np.flatnonzero(mask.to_numpy(zero_copy_only=False))


def scan_array(arr: pa.Array, *, redact_matches: bool = False) -> ArrayScan:
    """Find personal data in every string of `arr` (nulls count as empty).

    Returns match counts per kind per row; with `redact_matches`, also `arr` with the
    matches replaced by placeholders (rows without matches are untouched)."""
    n = len(arr)
    result = ArrayScan()
    if n == 0:
        result.redacted = arr if redact_matches else None
        return result
    arr_nn = pc.fill_null(arr, "") if arr.null_count else arr
    counts = {kind: np.zeros(n, dtype=np.int32) for kind in KINDS}

    offs, data = string_buffers(arr_nn)
    email_rows = _rows_of(offs, np.flatnonzero(data == _AT))
    other_rows = _prefilter_rows(offs, data)
    if len(other_rows):
        sub = arr_nn.take(pa.array(other_rows))
        other_rows = other_rows[_indices(pc.match_substring_regex(sub, _CANDIDATE_RE2))]
    result.email_rows, result.other_rows = email_rows, other_rows
    # Rows with only e-mail candidates: RE2 does the counting and the replacing.
    email_only = np.setdiff1d(email_rows, other_rows, assume_unique=True)
    replaced_idx: list[np.ndarray] = []
    replaced_val: list[pa.Array] = []
    if len(email_only):
        sub = arr_nn.take(pa.array(email_only))
        counts[PiiKind.EMAIL][email_only] = pc.count_substring_regex(sub, EMAIL_PATTERN).to_numpy(
            zero_copy_only=False
        )
        if redact_matches:
            replaced_idx.append(email_only)
            replaced_val.append(
                pc.replace_substring_regex(sub, EMAIL_PATTERN, PLACEHOLDERS[PiiKind.EMAIL])
            )
    if len(other_rows):
        sub = arr_nn.take(pa.array(other_rows))
        new_texts = _scan_windows(sub, other_rows, counts, redact_matches)
        if redact_matches:
            replaced_idx.append(other_rows)
            replaced_val.append(pa.array(new_texts, type=arr_nn.type))
    result.match_counts = counts
    if redact_matches:
        result.redacted = _put(arr, replaced_idx, replaced_val)
    return result


def _put(arr: pa.Array, idx: list[np.ndarray], values: list[pa.Array]) -> pa.Array:
    """`arr` with rows `idx` replaced by `values` (in index order)."""
    if not idx:
        return arr
    all_idx = np.concatenate(idx)
    vals = pa.concat_arrays([v.cast(arr.type) for v in values])
    order = np.argsort(all_idx, kind="stable")
    mask = np.zeros(len(arr), dtype=bool)
    mask[all_idx] = True
    return pc.replace_with_mask(arr, pa.array(mask), vals.take(pa.array(order)))


_AT, _COLON = ord("@"), ord(":")


def _rows_of(offs: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Distinct rows (ascending) holding the sorted byte `positions`."""
    if not len(positions):
        return np.empty(0, dtype=np.int64)
    rows = np.searchsorted(offs, positions, side="right") - 1
    return rows[np.concatenate([[True], rows[1:] != rows[:-1]])]


def _prefilter_rows(offs: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Rows that may match `_CANDIDATE_RE2` (a superset), from byte positions in numpy:
    nine digits with at most three separators between neighbours span <= 32 bytes; a
    dotted quad has four successive digits spanning 4-6 bytes (they cross a dot); an
    IBAN start has two upper-case letters then two digits; IPv6 has two colons at most
    five bytes apart. Plain years, page numbers and prose colons pass none of these."""
    digits = np.flatnonzero((data - np.uint8(48)) < 10)
    hits: list[np.ndarray] = []
    if len(digits) >= 4:
        span = digits[3:] - digits[:-3]
        hits.append(digits[:-3][(span >= 4) & (span <= 6)])
        if len(digits) >= 9:
            hits.append(digits[:-8][(digits[8:] - digits[:-8]) <= 32])
    if len(digits) >= 2:
        pairs = digits[:-1][np.diff(digits) == 1]
        pairs = pairs[pairs >= 2]
        if len(pairs):
            upper = ((data[pairs - 1] - np.uint8(65)) < 26) & ((data[pairs - 2] - np.uint8(65)) < 26)
            hits.append(pairs[upper])
    colons = np.flatnonzero(data == _COLON)
    if len(colons) >= 2:
        hits.append(colons[:-1][np.diff(colons) <= 5])
    hits = [h for h in hits if len(h)]
    if not hits:
        return np.empty(0, dtype=np.int64)
    return _rows_of(offs, np.sort(np.concatenate(hits)) if len(hits) > 1 else hits[0])


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (int64, rebased to 0) of a string array and the bytes they index, no copy."""
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    bufs = arr.buffers()
    offs = np.frombuffer(bufs[1], dtype=np.int64 if large else np.int32)
    offs = offs[arr.offset : arr.offset + len(arr) + 1].astype(np.int64)
    raw = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.empty(0, np.uint8)
    return offs - offs[0], raw[offs[0] : offs[-1]]


_SEED = np.zeros(256, dtype=bool)
_SEED[ord("0") : ord("9") + 1] = True
_SEED[ord("@")] = True
_GAP = 8  # seeds closer than this belong to one window
_PAD = 40  # context around a window, then widened to the next space
_SPACES = b" \t\n\r"


def _scan_windows(sub: pa.Array, rows: np.ndarray, counts, redact_matches: bool) -> list[str]:
    """Scan candidate rows only around digits and '@' (in numpy), running the Python
    patterns on short windows instead of whole texts. Returns the redacted texts."""
    offs, data = string_buffers(sub)
    raw = data.tobytes()
    seeds = np.flatnonzero(_SEED[data])
    found: list[list[tuple[int, int, PiiKind]]] = [[] for _ in range(len(sub))]
    if len(seeds):
        row_of = np.searchsorted(offs, seeds, side="right") - 1
        brk = np.flatnonzero((np.diff(seeds) > _GAP) | (np.diff(row_of) != 0)) + 1
        first = np.concatenate([[0], brk])
        last = np.concatenate([brk - 1, [len(seeds) - 1]])
        w_row = row_of[first]
        w_start = np.maximum(seeds[first] - _PAD, offs[w_row])
        w_end = np.minimum(seeds[last] + 1 + _PAD, offs[w_row + 1])
        # Merge windows that overlap after padding.
        prev_end = np.maximum.accumulate(w_end)
        new = np.concatenate([[True], (w_start[1:] >= prev_end[:-1]) | (np.diff(w_row) != 0)])
        groups = np.flatnonzero(new)
        g_end = np.maximum.reduceat(w_end, groups)
        for r, a, b in zip(w_row[groups].tolist(), w_start[groups].tolist(), g_end.tolist()):
            lo, hi = int(offs[r]), int(offs[r + 1])
            a, b = _widen(raw, a, b, lo, hi)
            window = raw[a:b].decode("utf-8")
            ascii_only = window.isascii()
            for m in find_pii(window):
                if ascii_only:
                    s0, s1 = m.start, m.end
                else:
                    s0 = len(window[: m.start].encode())
                    s1 = s0 + len(m.value.encode())
                found[r].append((a + s0 - lo, a + s1 - lo, m.kind))
    out: list[str] = []
    for j, matches in enumerate(found):
        row = int(rows[j])
        for _, _, kind in matches:
            counts[kind][row] += 1
        if redact_matches:
            lo, hi = int(offs[j]), int(offs[j + 1])
            text = raw[lo:hi]
            if matches:
                parts, pos = [], 0
                for s0, s1, kind in sorted(matches):
                    if s0 < pos:
                        continue
                    parts += [text[pos:s0], PLACEHOLDERS[kind].encode()]
                    pos = s1
                parts.append(text[pos:])
                text = b"".join(parts)
            out.append(text.decode("utf-8"))
    return out


def _widen(raw: bytes, a: int, b: int, lo: int, hi: int) -> tuple[int, int]:
    """Move window edges outward to whitespace (at most 200 bytes) and off the middle
    of a multi-byte character."""
    limit = max(lo, a - 200)
    while a > limit and raw[a - 1] not in _SPACES:
        a -= 1
    limit = min(hi, b + 200)
    while b < limit and raw[b] not in _SPACES:
        b += 1
    while a > lo and 0x80 <= raw[a] < 0xC0:
        a -= 1
    while b < hi and 0x80 <= raw[b] < 0xC0:
        b += 1
    return a, b
