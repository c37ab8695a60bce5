"""A retrieved node as plain data: what the CLI prints, JSON carries, and answers cite."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, computed_field

from rag.items import PATH_METADATA, item_name

if TYPE_CHECKING:
    from llama_index.core.schema import BaseNode, NodeWithScore

#: Node metadata key: the ids of the results merged into this one as duplicates (see the retriever).
MERGED_DUPLICATES = "merged_duplicates"
#: Node metadata keys of a cross-encoder rerank (``rag.retrieval.rerank``): its score, and the retrieval's score
#: it replaced as the node's score.
RERANK_SCORE = "rerank_score"
RETRIEVAL_SCORE = "retrieval_score"
#: Node metadata key: the ids of a page's own text chunks merged into its page item for an answer (rag.answer.evidence).
MERGED_PASSAGES = "merged_passages"


class Evidence(BaseModel):
    """One retrieved item: rank (1-based, the citation marker in answers), score, text, image, metadata."""

    rank: int
    id: str
    score: float | None = Field(
        description="Higher is closer: a cosine (-1..1) for one vector; for a blend, its fused score (see score_scale)."
    )
    rerank_score: float | None = Field(
        default=None,
        description="The cross-encoder's score when a reranker ran (results are then sorted by it): its raw logit, "
        "or its sigmoid (0..1) with rerank_normalize; null without a reranker.",
    )
    source: str = Field(
        description="Where the item came from. From `rag serve`: its name relative to the folder it was ingested from "
        "(the upload name for uploads), unless the server shows its paths (RAG_SERVER_SHOW_PATHS)."
    )
    name: str = Field(
        default="",
        description="What to call the item: its path relative to what was ingested plus its anchor "
        "(e.g. guide/install.md#linux, spec.pdf#page=7&chunk=2); uploads by their file name. "
        "`-f source=<name>` finds it.",
    )
    text: str
    image: str | None = Field(
        default=None,
        description="Local path or URL of the item's image. From `rag serve`: URLs only, unless the server shows its "
        "paths; fetch the image from image_url.",
    )
    mime_type: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    duplicates: list[str] = Field(
        default_factory=list, description="Ids of the results merged into this one as duplicates of it."
    )
    passages: list[str] = Field(
        default_factory=list,
        description="Answers only: ids of this page's own text chunks that were retrieved too and merged into this "
        "page item, so the LLM read the page's picture once and each passage once.",
    )

    @computed_field(  # type: ignore[prop-decorator]
        description="The document (or picture) the item comes from: its name without the anchor."
    )
    @property
    def document(self) -> str:
        return self.name.partition("#")[0]

    @computed_field(  # type: ignore[prop-decorator]
        description="Where in its document the item is, e.g. #page=7 or #tracking-faults; null: all of it."
    )
    @property
    def anchor(self) -> str | None:
        _, sep, anchor = self.name.partition("#")
        return f"#{anchor}" if sep else None

    def without_paths(self) -> Evidence:
        """This evidence for someone who must not see the ingesting machine's paths: the source by its
        ``name`` (in ``metadata`` too), no local image path (URLs stay), no path metadata. A ``Citation`` stays one."""
        metadata = {k: v for k, v in self.metadata.items() if k not in PATH_METADATA}
        if "source" in metadata:
            metadata["source"] = self.name
        is_url = self.image is not None and self.image.startswith(("http://", "https://"))
        image = self.image if is_url else None
        return self.model_copy(update={"source": self.name, "image": image, "metadata": metadata})

    @classmethod
    def from_node(cls, rank: int, result: NodeWithScore) -> Evidence:
        from llama_index.core.schema import ImageNode  # loaded already: the node is one of its objects

        from connectors.milvus.schema import SOURCE

        node = result.node
        metadata = dict(node.metadata)
        duplicates = metadata.pop(MERGED_DUPLICATES, [])
        passages = metadata.pop(MERGED_PASSAGES, [])
        rerank_score = metadata.pop(RERANK_SCORE, None)
        score = metadata.pop(RETRIEVAL_SCORE, result.score) if rerank_score is not None else result.score
        image = mime_type = None
        if isinstance(node, ImageNode):
            image, mime_type = node.image_path or node.image_url, node.image_mimetype
        source = str(node.metadata.get(SOURCE, ""))
        return cls(
            rank=rank,
            id=node.node_id,
            score=score,
            rerank_score=rerank_score,
            source=source,
            name=item_name(source, metadata),
            text=node.get_content(),
            image=image,
            mime_type=mime_type,
            metadata=metadata,
            duplicates=duplicates,
            passages=passages,
        )


def evidence(results: list[NodeWithScore]) -> list[Evidence]:
    """The results as ``Evidence``, ranked in the order given."""
    return [Evidence.from_node(rank, result) for rank, result in enumerate(results, start=1)]


def merged_count(results: list[Evidence]) -> int:
    """How many duplicates were merged into these results."""
    return sum(len(result.duplicates) for result in results)


def annotate(node: BaseNode, key: str, value: Any) -> None:
    """Add a metadata entry for people and callers, kept out of what the LLM reads and what is embedded."""
    node.metadata[key] = value
    for excluded in (node.excluded_llm_metadata_keys, node.excluded_embed_metadata_keys):
        if key not in excluded:
            excluded.append(key)
