"""Registered models as LangChain runnables (``langchain-core``).

One line turns a model version into something a chain can call::

    from mtw.langchain import runnable
    llm = runnable(client, "prose@production")        # an LLM (causal LM) or chat model (chat SFT)
    classify = runnable(client, "genres@production")  # a classifier Runnable

    chain = PromptTemplate.from_template("Continue: {start}") | llm
    chain.invoke({"start": "The jury said"})
    (PromptTemplate.from_template("{text}") | classify).invoke({"text": "…"})  # {"label": …, "score": …}

Generation streams token by token (``chain.stream``) through StreamPredict; a classifier's
``batch`` sends one Predict for all its inputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.llms import LLM
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, GenerationChunk
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from pydantic import ConfigDict

from mtw.client.models import Classification, Generation

TASK_CLASSIFICATION, TASK_CAUSAL_LM, TASK_CHAT = 1, 2, 3
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "user": "user", "assistant": "assistant"}


class _Settings:
    """Generation settings shared by the LLM and the chat model."""

    def _generation(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        values = {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "top_p": self.top_p,
                  "seed": self.seed, "stop": stop or None}
        values.update({k: v for k, v in kwargs.items() if k in values})
        return values


class MtwLLM(_Settings, LLM):
    """A causal LM version: text in, continuation out."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    client: Any
    model_version: str
    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int | None = None

    @property
    def _llm_type(self) -> str:
        return "mtw"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_version": self.model_version, "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "top_p": self.top_p}

    def _call(self, prompt: str, stop: list[str] | None = None, run_manager: CallbackManagerForLLMRun | None = None,
              **kwargs: Any) -> str:
        answer = self.client.models.predict(self.model_version, prompt, **self._generation(stop, kwargs))
        result = answer.predictions[0]
        assert isinstance(result, Generation)
        return result.text

    def _stream(self, prompt: str, stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[GenerationChunk]:
        for delta in self.client.models.stream(self.model_version, prompt, **self._generation(stop, kwargs)):
            if not delta.text and not delta.finish_reason:
                continue
            chunk = GenerationChunk(text=delta.text, generation_info=(
                {"finish_reason": delta.finish_reason, "model_version": delta.model_version}
                if delta.finish_reason else None))
            if run_manager is not None and delta.text:
                run_manager.on_llm_new_token(delta.text, chunk=chunk)
            yield chunk


class MtwChatModel(_Settings, BaseChatModel):
    """A chat SFT version: messages in, the assistant's answer out."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    client: Any
    model_version: str
    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int | None = None

    @property
    def _llm_type(self) -> str:
        return "mtw-chat"

    @staticmethod
    def _conversation(messages: list[BaseMessage]) -> list[dict[str, str]]:
        return [{"role": _ROLES.get(m.type, "user"), "content": m.text} for m in messages]

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        answer = self.client.models.predict(self.model_version, self._conversation(messages),
                                            **self._generation(stop, kwargs))
        result = answer.predictions[0]
        assert isinstance(result, Generation)
        message = AIMessage(content=result.text, response_metadata={
            "finish_reason": result.finish_reason, "model_version": answer.model_version})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for delta in self.client.models.stream(self.model_version, self._conversation(messages),
                                               **self._generation(stop, kwargs)):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=delta.text))
            if run_manager is not None and delta.text:
                run_manager.on_llm_new_token(delta.text, chunk=chunk)
            yield chunk


class MtwClassifier(RunnableSerializable[Any, dict[str, Any]]):
    """A classification version: text (or a prompt value, or ``{"text": …}``) in,
    ``{"label", "score", "scores": {label: probability}}`` out."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    client: Any
    model_version: str

    @staticmethod
    def _text(value: Any) -> str:
        if isinstance(value, PromptValue):
            return value.to_string()
        if isinstance(value, dict):
            return str(value["text"])
        return str(value)

    @staticmethod
    def _as_dict(result: Classification) -> dict[str, Any]:
        return {"label": result.label, "score": result.score, "scores": {s.label: s.score for s in result.scores}}

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        return self._call_with_config(lambda value: self._predict([value])[0], input, config)

    def batch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None, *,
              return_exceptions: bool = False, **kwargs: Any) -> list[dict[str, Any]]:
        """One Predict call for the whole batch (the service batches further with other callers)."""
        return self._predict(inputs) if inputs else []

    def _predict(self, inputs: list[Any]) -> list[dict[str, Any]]:
        answer = self.client.models.predict(self.model_version, [self._text(i) for i in inputs])
        return [self._as_dict(r) for r in answer.predictions]


def runnable(client: Any, model_version: str, **settings: Any) -> MtwLLM | MtwChatModel | MtwClassifier:
    """The right LangChain object for a model version's task (looked up once)."""
    version = client.models.version(model_version)
    if version.task == TASK_CLASSIFICATION:
        return MtwClassifier(client=client, model_version=model_version)
    if version.task == TASK_CHAT:
        return MtwChatModel(client=client, model_version=model_version, **settings)
    return MtwLLM(client=client, model_version=model_version, **settings)


__all__ = ["MtwChatModel", "MtwClassifier", "MtwLLM", "runnable"]
