"""Format detection from the requested format, the file name and the first bytes."""

from __future__ import annotations

import pytest

from services.dataset_svc.domain.encoding import guess_encoding, sniff_binary
from services.dataset_svc.domain.formats import detect_format, format_from_name
from services.dataset_svc.domain.model import DataFormat as F


@pytest.mark.parametrize(("name", "head", "expected"), [
    ("a.csv", b"text,label\n", F.CSV),
    ("a.TSV", b"text\tlabel\n", F.TSV),
    ("a.tab", b"x", F.TSV),
    ("a.jsonl", b'{"a": 1}\n', F.JSONL),
    ("a.ndjson", b'{"a": 1}\n', F.JSONL),
    ("a.json", b'[{"a": 1}]', F.JSON),
    ("a.json", b'{"a": 1}\n{"a": 2}\n', F.JSONL),  # JSON Lines saved as .json
    ("a.json", b'{\n "a": 1\n}', F.JSON),  # a pretty object: JSON (rejected later)
    ("a.parquet", b"PAR1....", F.PARQUET),
    ("upload", b"PAR1....", F.PARQUET),
    ("a.csv", b"PAR1....", F.PARQUET),  # magic wins over the name
    ("a.txt", b"text,label\n", F.TEXT),
    ("", b"  [\n{}]", F.JSON),
    ("", b'{"messages": []}\n', F.JSONL),
    ("", b"\xef\xbb\xbftext\tlabel\n", F.TSV),
    ("", b"text,label\nx,y\n", F.CSV),
    ("", b"Once upon a time\nthere was\n", F.TEXT),
])
def test_detect(name, head, expected) -> None:
    assert detect_format(F.UNSPECIFIED, name, head) == expected


def test_explicit_format_wins() -> None:
    assert detect_format(F.TSV, "a.csv", b"a,b\n") == F.TSV


def test_format_from_name() -> None:
    assert format_from_name("Data.CSV") == F.CSV
    assert format_from_name("data") == F.UNSPECIFIED


@pytest.mark.parametrize(("head", "needle"), [
    (b"\x89PNG\r\n\x1a\n\x00", "PNG"),
    (b"%PDF-1.7", "PDF"),
    (b"PK\x03\x04", "ZIP"),
    (b"\xff\xfet\x00e\x00", "UTF-16"),
    ("text,label\n".encode("utf-16-be"), "UTF-16"),
    (b"abc\x00\x01\x02\x03binary", "NUL"),
])
def test_sniff_binary(head, needle) -> None:
    assert needle in (sniff_binary(head) or "")


def test_text_is_not_binary() -> None:
    assert sniff_binary("héllo, wörld\n".encode()) is None


def test_guess_encoding_names_latin1_family() -> None:
    sample = ("Le café était très animé; élèves et enseignants discutaient à côté "
              "de la fenêtre, près du théâtre.\n" * 5).encode("latin-1")
    guess = guess_encoding(sample)
    assert guess and "utf_8" not in guess
