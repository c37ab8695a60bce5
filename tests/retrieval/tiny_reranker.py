"""Tiny random cross-encoders on disk, built offline: a BERT sequence classifier (one label, or more), or a bare
BERT without a classifier head, with the parity fixtures' word-piece tokenizer."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel

from tests.conftest import parity_dir

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def build_reranker(folder: Path, *, labels: int = 1, head: bool = True, seed: int = 0) -> Path:
    """A random BERT cross-encoder in ``folder`` (``labels`` outputs; ``head=False``: no classifier at all)."""
    source = parity_dir("base") / "text_model"
    config = BertConfig.from_pretrained(source, num_labels=labels)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config) if head else BertModel(config)
    with torch.no_grad():  # a visible spread of scores: matrices larger than BERT's initial ones (norms kept at 1)
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 0.2)
    model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, folder / name)
    return folder
