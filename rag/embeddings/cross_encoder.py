"""A text cross-encoder: scores (query, passage) pairs with a ``transformers`` sequence classifier of one label.

The BAAI rerankers (``BAAI/bge-reranker-base``, ``bge-reranker-v2-m3``) and any local folder of an
``AutoModelForSequenceClassification`` with ``num_labels == 1`` work. Pairs are built as FlagEmbedding's
``FlagReranker`` builds them: the query cut to ``query_max_length`` tokens (default three quarters of
``max_length``), the passage cut to ``max_length``, then the pair with its special tokens cut from the
passage's end to ``max_length`` (512). The score is the classifier's raw logit, or its sigmoid with
``normalize=True``. Pairs run in batches sorted by length, so short passages never pay for a long one's padding.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

from rag.runtime import Runtime
from rag.settings import Settings

from .hub import CheckpointError, pretrained_source

logger = logging.getLogger(__name__)

#: The longest pair scored, in tokens (FlagReranker's default and the BAAI rerankers' window).
MAX_LENGTH = 512


class CrossEncoder:
    """A loaded cross-encoder on its runtime's device and dtype; :meth:`score` rates passages for a query."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        *,
        name: str,
        runtime: Runtime,
        max_length: int = MAX_LENGTH,
        query_max_length: int | None = None,
    ) -> None:
        self.name = name
        self.runtime = runtime
        self.tokenizer = tokenizer
        window = getattr(getattr(model, "config", None), "max_position_embeddings", None) or max_length
        self.max_length = min(max_length, window)
        self.query_max_length = query_max_length or self.max_length * 3 // 4
        self.model = model.to(device=runtime.device, dtype=runtime.torch_dtype).eval()

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike[str], *, runtime: Runtime | None = None, settings: Settings | None = None
    ) -> CrossEncoder:
        """Load a local folder or a hub id (the Hugging Face cache first; the hub only when it can be reached).

        ``runtime`` defaults to the encoder's (``RAG_DEVICE``, ``RAG_DTYPE`` of ``settings``). Raises
        ``CheckpointError`` for anything that is not a sequence classifier with one label.
        """
        from .registry import runtime_from_settings

        runtime = runtime or runtime_from_settings(settings or Settings())
        source, local_only = pretrained_source(name_or_path)
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=local_only)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot read the reranker {source!r}: {e}") from e
        architectures = [a for a in config.architectures or [] if a.endswith("ForSequenceClassification")]
        if not architectures:
            raise CheckpointError(
                f"{source} is not a cross-encoder: its architectures are {config.architectures or 'not given'}, and a "
                "reranker must be a sequence classifier (…ForSequenceClassification) such as BAAI/bge-reranker-base"
            )
        if config.num_labels != 1:
            raise CheckpointError(
                f"{source} is a sequence classifier with {config.num_labels} labels; a reranker has one (its logit "
                "is the relevance score): use a reranker such as BAAI/bge-reranker-base"
            )
        try:
            loaded: Any = AutoModelForSequenceClassification.from_pretrained(
                source, local_files_only=local_only, dtype=torch.float32, output_loading_info=True
            )
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
            if getattr(tokenizer, "backend_tokenizer", None) is None:
                raise ValueError("its tokenizer has no fast (tokenizers) backend")
        except (OSError, ValueError) as e:
            raise CheckpointError(
                f"cannot load the reranker {source!r}: {e}. Pass a folder with config.json, the weights and the "
                "tokenizer files."
            ) from e
        model, info = loaded
        missing = sorted(info["missing_keys"]) + sorted(info["mismatched_keys"])
        if missing:
            raise CheckpointError(
                f"{source} lacks weights of its classifier ({', '.join(map(str, missing[:5]))}); is it a trained "
                "reranker?"
            )
        logger.info("loaded reranker %s on %s %s", source, runtime.device, runtime.dtype)
        return cls(model, tokenizer, name=str(name_or_path), runtime=runtime)

    def pairs(self, query: str, passages: Sequence[str]) -> list[dict[str, list[int]]]:
        """The model inputs of each (query, passage) pair, cut as the module docstring says (unpadded)."""
        backend = self.tokenizer.backend_tokenizer
        query_encoding = backend.encode(query, add_special_tokens=False)
        query_encoding.truncate(self.query_max_length)
        room = self.max_length - len(query_encoding.ids) - self.tokenizer.num_special_tokens_to_add(pair=True)
        wanted = self.tokenizer.model_input_names
        inputs = []
        for encoding in backend.encode_batch(list(passages), add_special_tokens=False):
            encoding.truncate(max(0, min(room, self.max_length)))
            pair = backend.post_process(query_encoding, encoding, add_special_tokens=True)
            given = {"input_ids": pair.ids, "token_type_ids": pair.type_ids, "attention_mask": pair.attention_mask}
            inputs.append({key: value for key, value in given.items() if key in wanted})
        return inputs

    @torch.inference_mode()
    def score(self, query: str, passages: Sequence[str], *, normalize: bool = False) -> list[float]:
        """One score per passage, in the order given: the raw logit, or its sigmoid (0..1) with ``normalize``."""
        if not passages:
            return []
        encoded = self.pairs(query, passages)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]), reverse=True)
        scores = [0.0] * len(encoded)
        step = max(1, self.runtime.batch_size)
        for start in range(0, len(order), step):
            chosen = order[start : start + step]
            batch = self.tokenizer.pad([encoded[i] for i in chosen], padding=True, return_tensors="pt")
            batch = batch.to(self.runtime.device)
            logits = self.model(**batch).logits.view(-1).float()
            values = torch.sigmoid(logits) if normalize else logits
            for index, value in zip(chosen, values.tolist()):
                scores[index] = value
        return scores
