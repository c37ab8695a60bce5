"""A retrieved node as plain data: what the CLI prints, JSON carries, and answers cite."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from llama_index.core.schema import NodeWithScore


class Evidence(BaseModel):
    """One retrieved item: rank (1-based, the citation marker in answers), score, text, image, metadata."""

    rank: int
    id: str
    score: float | None
    source: str
    text: str
    image: str | None = Field(default=None, description="Local path or URL of the item's image.")
    mime_type: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_node(cls, rank: int, result: "NodeWithScore") -> "Evidence":
        from llama_index.core.schema import ImageNode  # loaded already: the node is one of its objects

        from connectors.milvus.schema import SOURCE

        node = result.node
        image = mime_type = None
        if isinstance(node, ImageNode):
            image, mime_type = node.image_path or node.image_url, node.image_mimetype
        return cls(
            rank=rank,
            id=node.node_id,
            score=result.score,
            source=str(node.metadata.get(SOURCE, "")),
            text=node.get_content(),
            image=image,
            mime_type=mime_type,
            metadata=dict(node.metadata),
        )


def evidence(results: "list[NodeWithScore]") -> list[Evidence]:
    """The results as ``Evidence``, ranked in the order given."""
    return [Evidence.from_node(rank, result) for rank, result in enumerate(results, start=1)]
