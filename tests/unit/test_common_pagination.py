import pytest

from services.common.errors import InvalidArgument
from services.common.pagination import (
    decode_page_token,
    encode_page_token,
    page_size,
    request_fingerprint,
)

S = "secret"


def test_round_trip():
    fp = request_fingerprint("projects/p", "filter", "order")
    tok = encode_page_token(S, {"after": "x", "n": 3}, fp)
    assert decode_page_token(S, tok, fp) == {"after": "x", "n": 3}
    assert "=" not in tok and "+" not in tok and "/" not in tok


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: ("e" if t[0] != "e" else "f") + t[1:],
        lambda t: t.replace(".", ""),
        lambda t: "garbage",
        lambda t: "",
        lambda t: t + ".x",
    ],
)
def test_tampered(mutate):
    tok = encode_page_token(S, {"after": "x"}, "fp")
    with pytest.raises(InvalidArgument) as err:
        decode_page_token(S, mutate(tok), "fp")
    assert err.value.violations[0].field == "page_token"
    assert "different request" in err.value.violations[0].description


def test_other_request_or_secret():
    tok = encode_page_token(S, {"after": "x"}, "fp1")
    with pytest.raises(InvalidArgument):
        decode_page_token(S, tok, "fp2")
    with pytest.raises(InvalidArgument):
        decode_page_token("other", tok, "fp1")


def test_page_size():
    assert (
        page_size(0) == 50
        and page_size(None) == 50
        and page_size(7) == 7
        and page_size(1000) == 1000
    )
    with pytest.raises(InvalidArgument) as err:
        page_size(-1)
    assert err.value.violations[0].field == "page_size"
    with pytest.raises(InvalidArgument):
        page_size(1001)
    assert page_size(5, default=2, maximum=5, field="n") == 5
