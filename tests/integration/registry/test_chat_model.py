"""A chat model in the registry: the tiny GPT-2 fine-tuned on chatterbot conversations is
registered, answers a conversation through Predict and StreamPredict alike, becomes a
LangChain chat model in a chain with a chat prompt template, and its downloaded folder,
loaded with plain transformers and peft and prompted with its own chat template,
gives the answer Predict gave."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
import pytest_asyncio
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

import mtw
from mtw.common.v1 import task_pb2
from mtw.langchain import MtwChatModel, runnable
from mtw.registry.v1 import registered_model_pb2
from mtw.registry.v1 import registry_service_pb2 as rpb
from mtw.training.v1 import training_service_pb2 as tpb

from .test_registry import _download

pytestmark = pytest.mark.slow

ASSISTANT = "projects/alpha/models/assistant"
SYSTEM = "You answer in one short sentence."
CONVERSATION = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is your name?"}]
GREEDY = {"max_new_tokens": 10, "temperature": 0.0}


@pytest_asyncio.fixture(scope="module")
async def assistant(registry):
    """The chat job's version, registered on a model of its own."""
    await registry.stub.CreateRegisteredModel(rpb.CreateRegisteredModelRequest(
        parent="projects/alpha", registered_model_id="assistant",
        registered_model=registered_model_pb2.RegisteredModel(description="answers small talk")),
        metadata=registry.auth())
    return await registry.register(registry.chat_job, ASSISTANT)


async def test_a_chat_version_answers_conversations_in_predict_and_stream_alike(registry, assistant):
    assert assistant.task == task_pb2.TASK_CHAT_SFT
    async with mtw.AsyncClient(registry.endpoint, registry.key, project="alpha") as client:
        answer = await client.models.predict(assistant.name, CONVERSATION, **GREEDY)
        assert answer.model_version == assistant.name
        generated = answer.predictions[0]
        assert generated.input_tokens > 0 and generated.output_tokens > 0
        streamed = [d async for d in client.models.stream(assistant.name, CONVERSATION, **GREEDY)]
        assert "".join(d.text for d in streamed) == generated.text
        # A bare text to a chat model is one user turn of a conversation.
        as_turn = await client.models.predict(assistant.name, [{"role": "user", "content": "What is your name?"}],
                                              **GREEDY)
        as_text = await client.models.predict(assistant.name, "What is your name?", **GREEDY)
        assert as_text.predictions[0].text == as_turn.predictions[0].text


async def test_a_chat_version_is_a_langchain_chat_model(registry, assistant):
    await asyncio.to_thread(_langchain_chat, registry, assistant.name)


def _langchain_chat(registry, name: str) -> None:
    with mtw.Client(registry.endpoint, registry.key, project="alpha") as client:
        chat = runnable(client, name, **GREEDY)
        assert isinstance(chat, MtwChatModel)
        prompt = ChatPromptTemplate.from_messages([("system", SYSTEM), ("human", "What is your {thing}?")])
        message = (prompt | chat).invoke({"thing": "name"})
        assert isinstance(message, AIMessage) and message.response_metadata["model_version"] == name
        direct = client.models.predict(name, CONVERSATION, **GREEDY).predictions[0]
        assert message.content == direct.text
        chain = prompt | chat | StrOutputParser()
        assert "".join(chain.stream({"thing": "name"})) == direct.text  # through StreamPredict


async def test_the_downloaded_chat_folder_answers_like_predict_with_plain_transformers(registry, assistant):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = await registry.stack.stub.GetBaseModel(tpb.GetBaseModelRequest(name=assistant.base_model),
                                                  metadata=registry.auth())
    urls = await registry.stub.GetDownloadUrls(rpb.GetDownloadUrlsRequest(name=assistant.name),
                                               metadata=registry.auth())
    async with mtw.AsyncClient(registry.endpoint, registry.key, project="alpha") as client:
        served = (await client.models.predict(assistant.name, CONVERSATION, **GREEDY)).predictions[0].text
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        await asyncio.to_thread(_download, urls.files, folder)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        assert tokenizer.chat_template, "the folder carries the chat template the model was tuned with"
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base.uri.removeprefix("file://")),
                                          str(folder)).eval()
        prompt = tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
        local = _greedy(model, tokenizer, prompt, GREEDY["max_new_tokens"])
    assert local == served


def _greedy(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    import torch

    with torch.inference_mode():
        enc = tokenizer(prompt, return_tensors="pt")
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
