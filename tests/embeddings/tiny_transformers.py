"""Tiny random CLIP and BridgeTower model folders, built offline: config, weights, tokenizer, image processor."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    BridgeTowerConfig,
    BridgeTowerForContrastiveLearning,
    CLIPConfig,
    CLIPModel,
)
from transformers.models.bridgetower.image_processing_pil_bridgetower import BridgeTowerImageProcessorPil
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

IMAGE_SIZE = 32
_MERGES = ["a t", "p h", "ph o", "t o", "s q", "sq u", "e d", "r ed", "c i", "b l"]


def _byte_alphabet() -> list[str]:
    """The 256 characters byte-level BPE uses for the 256 byte values (GPT-2's printable mapping)."""
    printable = (
        set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) | set(range(ord("®"), ord("ÿ") + 1))
    )
    shifted = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(shifted)) for b in range(256)]


def _write_bpe(folder: Path, specials: list[str], word_suffix: str) -> dict[str, int]:
    """vocab.json and merges.txt of a byte-level BPE with every byte and a few merges; returns the vocab."""
    tokens = list(specials) + _byte_alphabet()
    if word_suffix:
        tokens += [c + word_suffix for c in _byte_alphabet()]
    tokens += [m.replace(" ", "") for m in _MERGES]
    if word_suffix:
        tokens += [m.replace(" ", "") + word_suffix for m in _MERGES]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n", encoding="utf-8")
    return vocab


def build_clip(folder: Path, seed: int = 0) -> Path:
    vocab = _write_bpe(folder, [], "</w>")
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=24,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=8,
        ),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(folder).save_pretrained(folder)
    square = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, crop_size=square).save_pretrained(folder)
    return folder


def build_bridgetower(folder: Path, seed: int = 0) -> Path:
    vocab = _write_bpe(folder, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "")
    config = BridgeTowerConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=64,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=2,
            max_position_embeddings=40,
            pad_token_id=vocab["<pad>"],
            bos_token_id=vocab["<s>"],
            eos_token_id=vocab["</s>"],
        ),
        vision_config=dict(hidden_size=64, num_hidden_layers=3, patch_size=8, image_size=IMAGE_SIZE),
        hidden_size=64,
        num_attention_heads=2,
        num_hidden_layers=2,
        contrastive_hidden_size=16,
        logit_scale_init_value=2.6592,
    )
    torch.manual_seed(seed)
    BridgeTowerForContrastiveLearning(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(folder).save_pretrained(folder)
    BridgeTowerImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"shortest_edge": IMAGE_SIZE}, size_divisor=8
    ).save_pretrained(folder)
    return folder
