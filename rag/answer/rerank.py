"""LLM rerank of retrieved candidates from one numbered grid picture of them, with the LLM's reasons kept.

The candidates' pictures are tiled into a grid, each numbered in its corner, and sent with their
texts, the question and the question's own picture; the LLM replies with a JSON ranking and a
reason per candidate. When the call or its reply fails, the retrieval order is kept.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from llama_index.core.bridge.pydantic import Field
from llama_index.core.llms import LLM, ChatMessage, MessageRole, TextBlock
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle
from PIL import Image

from rag.retrieval.evidence import annotate

from .images import grid, image_block, load_image, node_picture
from .llm import LLMError, chat_text
from .response import RERANK_ERROR, RERANK_REASON

logger = logging.getLogger(__name__)

RERANK_INSTRUCTIONS = (
    "You rank search results by how well they help answer a question. Reply with JSON only, in this form: "
    '{"ranking": [candidate numbers, most helpful first], "reasons": {"<number>": "one short sentence"}}'
)


class GridReranker(BaseNodePostprocessor):
    """Reorders the candidates as a vision LLM ranks them, keeps the best ``top_n``, and notes its reasons.

    Each kept node's metadata gets ``rerank_reason``; on failure every node gets ``rerank_error``
    and the order is left as retrieved. Both keys are hidden from the answering LLM.
    """

    llm: LLM = Field(description="A chat LLM that accepts images.")
    top_n: int = Field(default=5, ge=1, description="How many candidates to keep, best first.")
    cell_size: int = Field(default=256, ge=64, description="Pixels per grid cell.")
    max_image_side: int = Field(default=1024, ge=64, description="Longer side of the question's picture.")

    @classmethod
    def class_name(cls) -> str:
        return "GridReranker"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("GridReranker needs the query")
        if len(nodes) < 2:
            return nodes
        try:
            order, reasons = parse_ranking(chat_text(self.llm, self.messages(query_bundle, nodes)), len(nodes))
        except (LLMError, OSError) as e:  # OSError: the question's picture cannot be read
            # Not a warning of its own: the error goes with the response, and whoever shows it says it once.
            logger.info("rerank skipped, retrieval order kept: %s", e)
            for result in nodes:
                annotate(result.node, RERANK_ERROR, f"rerank skipped: {e}")
            return nodes[: self.top_n]
        ranked = [nodes[number - 1] for number in order][: self.top_n]
        for number, result in zip(order, ranked):
            if number in reasons:
                annotate(result.node, RERANK_REASON, reasons[number])
        return ranked

    def messages(self, query: QueryBundle, nodes: list[NodeWithScore]) -> list[ChatMessage]:
        texts = "\n".join(f"[{i}] {_one_line(r.node.get_content())}" for i, r in enumerate(nodes, start=1))
        blocks: list[Any] = [TextBlock(text=f"Question: {query.query_str}\n")]
        if query.image_path:
            blocks += [
                TextBlock(text="The question is about this picture:\n"),
                image_block(query.image_path, self.max_image_side),
            ]
        blocks += [
            TextBlock(
                text=f"\nThe next picture shows the {len(nodes)} candidates, each numbered in its top-left corner "
                f"(a candidate without a picture shows its text). Their texts:\n{texts}\n"
            ),
            grid([self._tile(r) for r in nodes], cell=self.cell_size),
            TextBlock(text="\nRank all the candidates. Reply with the JSON only."),
        ]
        return [
            ChatMessage(role=MessageRole.SYSTEM, content=RERANK_INSTRUCTIONS),
            ChatMessage(role=MessageRole.USER, blocks=blocks),
        ]

    def _tile(self, result: NodeWithScore) -> Image.Image | str:
        picture = node_picture(result.node)
        if picture is not None and not (isinstance(picture, str) and picture.startswith(("http://", "https://"))):
            try:
                return load_image(picture, self.cell_size)
            except OSError as e:
                logger.warning("rerank grid: cannot read the picture of %s: %s", result.node.node_id, e)
        return result.node.get_content() or "(no text)"


def parse_ranking(reply: str, count: int) -> tuple[list[int], dict[int, str]]:
    """Every candidate number 1..count in the LLM's order (ones it left out follow in retrieval order), and its reasons.

    Raises ``LLMError`` when the reply holds no JSON object with a ``ranking`` list.
    """
    start, end = reply.find("{"), reply.rfind("}")
    try:
        data = json.loads(reply[start : end + 1]) if 0 <= start < end else None
    except json.JSONDecodeError:
        data = None
    ranking = data.get("ranking") if isinstance(data, dict) else None
    if not isinstance(ranking, list):
        raise LLMError(f"the rerank reply is not the JSON asked for: {_one_line(reply)[:200]!r}")
    order: list[int] = []
    for value in ranking:
        number = int(value) if isinstance(value, (int, str)) and str(value).strip().isdigit() else 0
        if 1 <= number <= count and number not in order:
            order.append(number)
    order += [n for n in range(1, count + 1) if n not in order]
    given = data.get("reasons") if isinstance(data, dict) else None
    raw_reasons = given if isinstance(given, dict) else {}
    reasons = {int(k): str(v) for k, v in raw_reasons.items() if str(k).strip().isdigit() and 1 <= int(k) <= count}
    return order, reasons


def _one_line(text: str) -> str:
    return " ".join(text.split())
