"""Conversations over the answer engine: each follow-up is condensed with the history into a standalone query
(its text, plus the picture of an earlier turn when the follow-up is about it), retrieved for, and answered with
citations, like a fresh question.

The history is LlamaIndex ``Memory``, bounded by a token budget: text is counted with the LLM's own tokenizer
where LlamaIndex knows it (``llm._tokenizer``: tiktoken for OpenAI models, the Hugging Face tokenizer named on
``OpenAILike(tokenizer=...)``), else estimated at one token per four characters (the average of OpenAI's
tokenizers on English); each picture counts as ``IMAGE_TOKENS``. The oldest turns leave first.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from pathlib import Path
from typing import Any, cast

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.chat_engine.types import BaseChatEngine
from llama_index.core.llms import LLM, ChatMessage, ImageBlock, MessageRole, TextBlock
from llama_index.core.memory import Memory
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import QueryBundle

from .engine import answer_engine
from .llm import LLMError, achat_text, chat_text
from .response import AnswerResponse, AnswerStatus
from .streaming import AsyncStreamingAnswerResponse, StreamingAnswerResponse

logger = logging.getLogger(__name__)

IMAGE_TOKENS = 765  # what OpenAI counts for a 1024 x 1024 picture in detail; a fixed amount per picture
CHARS_PER_TOKEN = 4
HISTORY_TOKENS = 3000
CONDENSE_INSTRUCTIONS = (
    "Rewrite the user's follow-up as one standalone question that can be understood without the conversation: "
    "say what words such as 'it', 'there' or 'that one' refer to. Reply with the question alone, on one line. "
    "If the follow-up is about a picture the user attached earlier, add a second line: PICTURE: <its number>."
)
_PICTURE_LINE = re.compile(r"^\s*PICTURE\s*:\s*#?(\d+)\s*$", re.IGNORECASE)


def estimated_tokens(text: str) -> list[int]:
    """A stand-in tokenization: one token per four characters."""
    return [0] * math.ceil(len(text) / CHARS_PER_TOKEN)


def history_tokenizer(llm: LLM | None) -> Callable[[str], list]:
    """The LLM's tokenizer where LlamaIndex knows it, else ``estimated_tokens``."""
    try:
        tokenizer = getattr(llm, "_tokenizer", None)
    except Exception as e:  # e.g. tiktoken offline without its vocabulary, or a model name it does not know
        logger.info("the LLM's tokenizer is unavailable (%s); history tokens are estimated", e)
        tokenizer = None
    return tokenizer.encode if tokenizer is not None and hasattr(tokenizer, "encode") else estimated_tokens


def history_memory(llm: LLM | None, token_limit: int = HISTORY_TOKENS, image_tokens: int = IMAGE_TOKENS) -> Memory:
    """A LlamaIndex ``Memory`` that keeps the latest turns within ``token_limit`` (pictures count ``image_tokens``)."""
    return Memory.from_defaults(
        token_limit=token_limit,
        tokenizer_fn=history_tokenizer(llm),
        chat_history_token_ratio=1.0,
        token_flush_size=max(1, token_limit // 20),
        image_token_size_estimate=image_tokens,
    )


def user_message(text: str, image_path: str | None = None) -> ChatMessage:
    """A user turn: its text, and its picture (a local file or an http(s) URL) if any."""
    blocks: list[Any] = [TextBlock(text=text)]
    if image_path and image_path.startswith(("http://", "https://")):
        blocks.append(ImageBlock(url=image_path))
    elif image_path:
        blocks.append(ImageBlock(path=image_path))
    return ChatMessage(role=MessageRole.USER, blocks=blocks)


def pictures(history: Sequence[ChatMessage]) -> list[str]:
    """The pictures the user attached in ``history``, in order (picture n is ``[n - 1]``)."""
    return [
        str(block.path or block.url)
        for message in history
        if message.role == MessageRole.USER
        for block in message.blocks
        if isinstance(block, ImageBlock) and (block.path or block.url)
    ]


def condense_messages(message: str, history: Sequence[ChatMessage], new_picture: bool) -> list[ChatMessage]:
    """The request that turns a follow-up into a standalone question: the conversation as text, pictures numbered."""
    lines, number = ["Conversation so far:"], 0
    for turn in history:
        speaker = "User" if turn.role == MessageRole.USER else "Assistant"
        text = " ".join(b.text for b in turn.blocks if isinstance(b, TextBlock))
        attached = [b for b in turn.blocks if isinstance(b, ImageBlock)] if turn.role == MessageRole.USER else []
        notes = []
        for _ in attached:
            number += 1
            notes.append(f"[attached picture {number}]")
        lines.append(f"{speaker}: {text} {' '.join(notes)}".rstrip())
    with_picture = " (with a new picture attached)" if new_picture else ""
    lines.append(f"\nFollow-up{with_picture}: {message}")
    return [
        ChatMessage(role=MessageRole.SYSTEM, content=CONDENSE_INSTRUCTIONS),
        ChatMessage(role=MessageRole.USER, content="\n".join(lines)),
    ]


def parse_condensed(reply: str) -> tuple[str, int | None]:
    """The standalone question and the number of the earlier picture it is about, if any."""
    question, picture = [], None
    for line in reply.strip().splitlines():
        found = _PICTURE_LINE.match(line)
        if found:
            picture = int(found.group(1))
        elif line.strip():
            question.append(line.strip())
    return " ".join(question).strip().strip('"'), picture


class MultimodalChatEngine(BaseChatEngine):
    """A LlamaIndex chat engine over a retriever: condense, retrieve, answer with citations (see the module).

    The answering options are ``answer_engine``'s; ``history_tokens`` and ``image_tokens`` bound the history.

    ``chat`` returns an ``AnswerResponse``, ``stream_chat`` a ``StreamingAnswerResponse`` (the turn joins the
    history once its tokens are consumed); both take the follow-up's own picture as ``image_path``. The
    standalone query is the response's ``metadata["query"]`` (and ``["query_image"]``). Without an LLM the
    follow-up is retrieved for as written and the answers list the evidence.
    """

    def __init__(
        self,
        retriever: BaseRetriever,
        llm: LLM | None = None,
        *,
        memory: Memory | None = None,
        history_tokens: int = HISTORY_TOKENS,
        image_tokens: int = IMAGE_TOKENS,
        max_image_side: int | None = None,
        max_evidence_tokens: int | None = None,
        rerank_top_n: int | None = None,
    ) -> None:
        self._retriever = retriever
        self._llm = llm
        self._memory = memory or history_memory(llm, history_tokens, image_tokens)
        self._max_image_side = max_image_side
        self._max_evidence_tokens = max_evidence_tokens
        self._rerank_top_n = rerank_top_n

    @property
    def chat_history(self) -> list[ChatMessage]:
        return self._memory.get()

    def reset(self) -> None:
        self._memory.reset()

    def condense(self, message: str, history: Sequence[ChatMessage], image_path: str | None = None) -> QueryBundle:
        """The standalone query for ``message`` (as written when there is no history, no LLM, or the LLM fails)."""
        if not history or self._llm is None:
            return QueryBundle(message, image_path=image_path)
        try:
            reply = chat_text(self._llm, condense_messages(message, history, image_path is not None))
        except LLMError as e:
            logger.warning("the follow-up is searched as written: condensing it failed (%s)", e)
            return QueryBundle(message, image_path=image_path)
        return _standalone(message, reply, history, image_path)

    async def acondense(
        self, message: str, history: Sequence[ChatMessage], image_path: str | None = None
    ) -> QueryBundle:
        if not history or self._llm is None:
            return QueryBundle(message, image_path=image_path)
        try:
            reply = await achat_text(self._llm, condense_messages(message, history, image_path is not None))
        except LLMError as e:
            logger.warning("the follow-up is searched as written: condensing it failed (%s)", e)
            return QueryBundle(message, image_path=image_path)
        return _standalone(message, reply, history, image_path)

    def chat(  # type: ignore[override]  # answers with citations, not AgentChatResponse
        self, message: str, chat_history: list[ChatMessage] | None = None, image_path: str | None = None
    ) -> AnswerResponse:
        query = self.condense(message, self._history(chat_history), image_path)
        response = cast(AnswerResponse, self._engine(False).query(query))
        _describe(response, query)
        self._remember(message, image_path, response)
        return response

    def stream_chat(  # type: ignore[override]  # answers with citations, not AgentChatResponse
        self, message: str, chat_history: list[ChatMessage] | None = None, image_path: str | None = None
    ) -> StreamingAnswerResponse:
        query = self.condense(message, self._history(chat_history), image_path)
        stream = cast(StreamingAnswerResponse, self._engine(True).query(query))
        _describe(stream, query)
        tokens = stream.response_gen

        def recorded() -> Generator[str, None, None]:
            yield from tokens
            if stream.answer is not None:
                _describe(stream.answer, query)
                self._remember(message, image_path, stream.answer)

        stream.response_gen = recorded()
        return stream

    async def achat(  # type: ignore[override]  # answers with citations, not AgentChatResponse
        self, message: str, chat_history: list[ChatMessage] | None = None, image_path: str | None = None
    ) -> AnswerResponse:
        query = await self.acondense(message, await self._ahistory(chat_history), image_path)
        response = cast(AnswerResponse, await self._engine(False).aquery(query))
        _describe(response, query)
        await self._memory.aput_messages(_turn(message, image_path, response))
        return response

    async def astream_chat(  # type: ignore[override]  # answers with citations, not AgentChatResponse
        self, message: str, chat_history: list[ChatMessage] | None = None, image_path: str | None = None
    ) -> AsyncStreamingAnswerResponse:
        query = await self.acondense(message, await self._ahistory(chat_history), image_path)
        stream = cast(AsyncStreamingAnswerResponse, await self._engine(True).aquery(query))
        _describe(stream, query)
        tokens = stream.response_gen

        async def recorded() -> AsyncGenerator[str, None]:
            async for token in tokens:
                yield token
            answer = stream.answer
            if answer is not None:
                _describe(answer, query)
                await self._memory.aput_messages(_turn(message, image_path, answer))

        stream.response_gen = recorded()
        return stream

    def _engine(self, streaming: bool) -> RetrieverQueryEngine:
        return answer_engine(
            self._retriever,
            self._llm,
            max_image_side=self._max_image_side,
            max_evidence_tokens=self._max_evidence_tokens,
            rerank_top_n=self._rerank_top_n,
            streaming=streaming,
        )

    def _history(self, chat_history: list[ChatMessage] | None) -> list[ChatMessage]:
        """The bounded history: the memory's, or ``chat_history`` (as a client sent it) fitted into the budget."""
        if chat_history is not None:
            self._memory.reset()
            if chat_history:
                self._memory.put_messages(list(chat_history))
        return self._memory.get()

    async def _ahistory(self, chat_history: list[ChatMessage] | None) -> list[ChatMessage]:
        if chat_history is not None:
            await self._memory.areset()
            if chat_history:
                await self._memory.aput_messages(list(chat_history))
        return await self._memory.aget()

    def _remember(self, message: str, image_path: str | None, response: AnswerResponse) -> None:
        self._memory.put_messages(_turn(message, image_path, response))


def _standalone(message: str, reply: str, history: Sequence[ChatMessage], image_path: str | None) -> QueryBundle:
    question, number = parse_condensed(reply)
    earlier = pictures(history)
    if image_path is None and number is not None and 1 <= number <= len(earlier):
        image_path = earlier[number - 1]
    return QueryBundle(question or message, image_path=image_path)


def _describe(response: Any, query: QueryBundle) -> None:
    response.metadata = {**(response.metadata or {}), "query": query.query_str, "query_image": query.image_path}


def _turn(message: str, image_path: str | None, response: AnswerResponse) -> list[ChatMessage]:
    """The turn as the history keeps it: the follow-up as asked (with its picture, unless that file is gone: a
    server's temporary copy), and the answer (a note when there was none)."""
    if image_path and not image_path.startswith(("http://", "https://")) and not Path(image_path).is_file():
        image_path = None
    if response.status in (AnswerStatus.ANSWERED, AnswerStatus.PARTIAL):
        said = response.response or ""
    else:
        said = f"(no answer: {response.status.value})"
    return [user_message(message, image_path), ChatMessage(role=MessageRole.ASSISTANT, content=said)]
