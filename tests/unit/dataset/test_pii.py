"""PII detection: positives, negatives, redaction, vectorised scan."""

import pyarrow as pa
import pytest

from services.dataset_svc.domain.model import PiiKind
from services.dataset_svc.domain.pii import (
    find_pii,
    iban_valid,
    luhn_valid,
    mask_pii,
    redact,
    scan_array,
    scan_texts,
)


def kinds(text):
    return [(m.kind, m.value) for m in find_pii(text)]


@pytest.mark.parametrize(
    "text, value",
    [
        ("write to john.doe+news@example.co.uk today", "john.doe+news@example.co.uk"),
        ("a@b.io", "a@b.io"),
    ],
)
def test_emails(text, value):
    assert kinds(text) == [(PiiKind.EMAIL, value)]


@pytest.mark.parametrize(
    "phone",
    [
        "+44 20 7946 0958",
        "+1 (555) 123-4567",
        "+4915123456789",
        "0044 20 7946 0958",
        "(555) 123-4567",
        "555-123-4567",
        "555.123.4567",
        "1-800-555-0199",
        "06 12 34 56 78",
        "020 7946 0958",
        "0151 23456789",
        "030/1234567",
    ],
)
def test_phones(phone):
    assert kinds(f"call {phone} now") == [(PiiKind.PHONE, phone)]


@pytest.mark.parametrize(
    "text",
    [
        "In 1999 2000 2001 2002 sales grew.",
        "Order 123456789 shipped, invoice 1234567890123.",
        "Codes 100-200-300 and 12.03.2020 14.05.2021 and 01/02/2020 3.",
        "Pi is 3.14159265358 and the total was 1,234,567,890.",
        "Version 1.2.3 at 12:30:45, std::vector, 1954:: and Revelation 3:20:: 20.",
        "Population 12 345 678 90 in 2019.",
        "invalid card 4111 1111 1111 1112 and IBAN DE89370400440532013001",
        "not an ip 256.1.1.1 or 1.2.3",
    ],
)
def test_ordinary_numbers_are_not_pii(text):
    assert find_pii(text) == []


def test_cards_need_luhn():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    found = kinds("visa 4111 1111 1111 1111, mc 5500-0055-5555-5559, amex 378282246310005")
    assert [k for k, _ in found] == [PiiKind.PAYMENT_CARD] * 3
    assert found[0][1] == "4111 1111 1111 1111"


def test_ibans_need_mod97_and_length():
    assert iban_valid("DE89370400440532013000")
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("DE89370400440532013001")  # checksum
    assert not iban_valid("DE8937040044053201300")  # German IBANs have 22 characters
    text = "pay DE89 3704 0044 0532 0130 00 AND GB82WEST12345698765432 or FR1420041010050500013M02606"
    assert kinds(text) == [
        (PiiKind.IBAN, "DE89 3704 0044 0532 0130 00"),
        (PiiKind.IBAN, "GB82WEST12345698765432"),
        (PiiKind.IBAN, "FR1420041010050500013M02606"),
    ]


def test_ip_addresses():
    text = "hosts 192.168.1.1, 10.0.0.1. and 2001:db8::1 and fe80::1ff:fe23:4567:890a"
    assert [v for k, v in kinds(text) if k is PiiKind.IP_ADDRESS] == [
        "192.168.1.1",
        "10.0.0.1",
        "2001:db8::1",
        "fe80::1ff:fe23:4567:890a",
    ]


def test_redaction_and_mask():
    text = "Mail jane@example.com, call +44 20 7946 0958, card 4111-1111-1111-1111, ip 10.1.2.3."
    expected = "Mail [EMAIL], call [PHONE], card [CARD], ip [IP]."
    assert redact(text) == expected
    assert mask_pii(text) == expected
    assert mask_pii("nothing here 2024") == "nothing here 2024"
    assert redact("IBAN: GB82 WEST 1234 5698 7654 32.") == "IBAN: [IBAN]."


def test_scan_texts_reports_index_and_kind():
    found = scan_texts(["hello", "x@y.com and a@b.org", None, "call 555-123-4567"])
    assert [(t.index, t.match.value) for t in found[PiiKind.EMAIL]] == [(1, "x@y.com"), (1, "a@b.org")]
    assert [t.index for t in found[PiiKind.PHONE]] == [3]
    assert PiiKind.IBAN not in found


def test_scan_array_counts_and_redacts_vectorised():
    arr = pa.array(
        [
            "plain text",
            "only mail: a@b.com, c@d.com",
            None,
            "mail e@f.com and phone (555) 123-4567",
            "card 4111111111111111",
        ]
    )
    scan = scan_array(arr, redact_matches=True)
    assert scan.match_counts[PiiKind.EMAIL].tolist() == [0, 2, 0, 1, 0]
    assert scan.match_counts[PiiKind.PHONE].tolist() == [0, 0, 0, 1, 0]
    assert scan.match_counts[PiiKind.PAYMENT_CARD].tolist() == [0, 0, 0, 0, 1]
    assert scan.redacted.to_pylist() == [
        "plain text",
        "only mail: [EMAIL], [EMAIL]",
        None,
        "mail [EMAIL] and phone [PHONE]",
        "card [CARD]",
    ]
    assert scan_array(arr).redacted is None


def test_vectorised_scan_agrees_with_string_scan():
    import random

    rnd = random.Random(7)
    pieces = [
        "plain words", "année 2024 – “quoted” naïve", "jane@example.com", "+44 20 7946 0958",
        "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00", "10.0.0.1", "2001:db8::1",
        "(555) 123-4567", "order 123456789", "1999 2000 2001", "über@beispiel.de",
    ]
    texts = [" ".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 8))) for _ in range(300)]
    texts[5] = None
    arr = pa.array(texts).slice(3)  # a sliced array, as batches often are
    scan = scan_array(arr, redact_matches=True)
    for i, text in enumerate(texts[3:]):
        expected = find_pii(text or "")
        for kind in PiiKind:
            if kind is PiiKind.UNSPECIFIED:
                continue
            assert scan.match_counts[kind][i] == sum(m.kind is kind for m in expected), (text, kind)
        assert scan.redacted[i].as_py() == (None if text is None else redact(text))
