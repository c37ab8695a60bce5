"""What :meth:`KnowledgeBase.ingest <rag.knowledge.KnowledgeBase.ingest>` reads: paths, folders, URLs, LlamaIndex
documents and nodes, or a mix, read with the same options as ``rag ingest``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Union

from connectors.sources import SourceOptions, SourceResult, iter_llama_nodes, open_source
from rag.settings import Settings

if TYPE_CHECKING:
    from llama_index.core.schema import BaseNode

#: One thing to ingest: a file, folder or URL, or a LlamaIndex document or node.
Source = Union[str, "os.PathLike[str]", "BaseNode"]


def source_options(settings: Settings, *, allow_urls: bool = False, **overrides: Any) -> SourceOptions:
    """How sources are read for ``settings`` (``SourceOptions.from_settings``), with text chunked to the encoder's
    window with its own tokenizer (loaded without the model). ``rag ingest`` and the Python API share it."""
    from rag.embeddings.registry import load_text_window

    return SourceOptions.from_settings(
        settings,
        text_window=load_text_window(settings),
        allow_urls=allow_urls or settings.allow_urls,
        decode_check=False,  # the preprocessing workers decode every image and report the broken ones
        **overrides,
    )


def as_sources(sources: Source | Iterable[Source]) -> list[Source]:
    """``sources`` as a list: one path, URL or node stands for itself (a string is never read letter by letter)."""
    if isinstance(sources, (str, os.PathLike)) or _is_node(sources):
        return [sources]  # type: ignore[list-item]
    return list(sources)  # type: ignore[arg-type]


def paths_of(sources: Iterable[Source]) -> list[str]:
    """The paths and URLs among ``sources``."""
    return [os.fspath(s) for s in sources if isinstance(s, (str, os.PathLike))]


def read_sources(sources: Iterable[Source], options: SourceOptions) -> Iterator[SourceResult]:
    """Items and errors from every source in turn: paths by the reader their type calls for, LlamaIndex documents
    and nodes as ``connectors.sources.iter_llama_nodes`` reads them (runs of them together)."""
    nodes: list[BaseNode] = []
    for source in sources:
        if isinstance(source, (str, os.PathLike)):
            if nodes:
                yield from iter_llama_nodes(nodes, options)
                nodes = []
            yield from open_source(source, options)
        elif _is_node(source):
            nodes.append(source)
        else:
            raise TypeError(
                f"cannot ingest a {type(source).__name__}: give paths, folders, URLs, or LlamaIndex documents or nodes"
            )
    if nodes:
        yield from iter_llama_nodes(nodes, options)


def _is_node(value: object) -> bool:
    from llama_index.core.schema import BaseNode

    return isinstance(value, BaseNode)
