"""The SDK (sync and asyncio) and the LangChain integration against the real registry
service, on the versions the registry tests left behind (genres@production, prose@1)."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate

import mtw
from mtw.client.models import Classification, Generation
from mtw.errors import InvalidArgument, NotFound
from mtw.langchain import MtwClassifier, MtwLLM, runnable

pytestmark = pytest.mark.slow


@pytest.fixture
def client(registry):
    with mtw.Client(registry.endpoint, registry.key, project="alpha") as c:
        yield c


# The services run on this test's event loop, so the sync client runs in a thread.


async def test_sdk_models_versions_and_typed_predictions(client, tmp_path):
    await asyncio.to_thread(_sdk_models_versions_and_typed_predictions, client, tmp_path)


def _sdk_models_versions_and_typed_predictions(client, tmp_path):
    assert "genres" in [m.name.rsplit("/", 1)[1] for m in client.models.list()]
    assert [v.version_id for v in client.models.versions("genres", limit=1)] == ["2"]
    assert client.models.version("genres@production").name.endswith("/versions/1")
    answer = client.models.predict("genres@production", ["The senate passed the bill.", "He held her hand."],
                                   top_k=2)
    assert answer.model_version.endswith("/models/genres/versions/1")
    assert all(isinstance(p, Classification) and len(p.scores) == 2 for p in answer.predictions)
    text = client.models.predict("prose@1", "The jury said", max_new_tokens=6, temperature=0).predictions[0]
    assert isinstance(text, Generation) and text.finish_reason in ("MAX_TOKENS", "END_OF_SEQUENCE")
    deltas = list(client.models.stream("prose@1", "The jury said", max_new_tokens=6, temperature=0))
    assert "".join(d.text for d in deltas) == text.text and deltas[-1].finish_reason == text.finish_reason
    assert "## Intended use" in client.models.card("genres@1")
    folder = client.models.download("genres@production", tmp_path / "model")
    assert (folder / "adapter_config.json").is_file()
    with pytest.raises(NotFound):
        client.models.version("genres@nope")
    with pytest.raises(InvalidArgument) as info:
        client.models.predict("genres@1", ["word " * 2000])
    assert info.value.violations[0].field == "inputs[0]"


async def test_async_client_predicts_concurrently(registry):
    async with mtw.AsyncClient(registry.endpoint, registry.key, project="alpha") as client:
        answers = await asyncio.gather(*(client.models.predict("genres@production", f"The council voted {i}.")
                                         for i in range(6)))
        assert {a.predictions[0].label for a in answers} <= {"government", "fiction_romance"}
        chunks = [d async for d in client.models.stream("prose@1", "It was", max_new_tokens=5, temperature=0)]
        assert chunks[-1].finish_reason


async def test_langchain_chains_call_registered_models(client):
    await asyncio.to_thread(_langchain_chains_call_registered_models, client)


def _langchain_chains_call_registered_models(client):
    llm = runnable(client, "prose@1", temperature=0.0, max_new_tokens=8)
    assert isinstance(llm, MtwLLM)
    chain = PromptTemplate.from_template("The {subject} said") | llm | StrOutputParser()
    text = chain.invoke({"subject": "jury"})
    direct = client.models.predict("prose@1", "The jury said", max_new_tokens=8, temperature=0).predictions[0]
    assert text == direct.text
    assert "".join(chain.stream({"subject": "jury"})) == text  # streamed through StreamPredict

    classify = runnable(client, "genres@production")
    assert isinstance(classify, MtwClassifier)
    route = PromptTemplate.from_template("{headline}. {body}") | classify | (lambda r: r["label"])
    assert route.invoke({"headline": "Appropriations", "body": "The committee approved the fiscal budget."}) \
        == "government"
    batch = classify.batch(["The senate passed the bill.", "She kissed him and whispered goodbye."])
    assert [b["label"] for b in batch] == ["government", "fiction_romance"]
    assert abs(sum(batch[0]["scores"].values()) - 1) < 1e-5
