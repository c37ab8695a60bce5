"""Evidence within a token budget: pictures counted by the provider's rule, texts cut fairly in what is left.

Text tokens are counted with LlamaIndex's global tokenizer (``llama_index.core.Settings.tokenizer``:
tiktoken's ``cl100k_base`` unless the application sets another), an estimate for LLMs that
tokenize otherwise. A picture costs what its provider charges for it (``PictureCost``):

- OpenAI, ``detail: high``: the picture is fitted into 2048 x 2048, then scaled so that its shorter side is
  768 px (still within 2048 px; smaller pictures count as scaled up, the docs' wording and the upper bound),
  and costs 170 tokens per 512 px tile it covers, plus 85 (a 1024 x 1024 picture: 765; at most 1445).
  ``detail: low``: 85 whatever its size. A picture known by URL only counts as the largest, 1445.
- Ollama: a fixed count per picture, 576 by default: LLaVA-1.5's CLIP ViT-L/14 at 336 px gives
  (336 / 14)² = 576 image tokens. LLaVA-1.6's "anyres" adds up to four 336 px crops (up to 2880), and
  Qwen2.5-VL takes one token per 28 x 28 px: set ``RAG_LLM_IMAGE_TOKENS`` for such models, or for an
  OpenAI-compatible server whose model counts its own way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

#: The evidence text sent with one question when nothing else is set (as ``RAG_LLM_MAX_EVIDENCE_TOKENS``).
DEFAULT_EVIDENCE_TOKENS = 6000
#: What Ollama's models are counted per picture unless told (LLaVA-1.5: 24 x 24 patches of 14 px at 336 px).
LLAVA_IMAGE_TOKENS = 576
Detail = Literal["high", "low"]


@dataclass(frozen=True)
class PictureCost:
    """Tokens one picture costs the LLM: ``fixed`` per picture, else OpenAI's rule for ``detail``."""

    fixed: int | None = None
    detail: Detail = "high"

    @classmethod
    def for_llm(cls, llm: object, fixed: int | None = None, detail: Detail = "high") -> PictureCost:
        """The rule of ``llm``'s provider: Ollama's fixed count, else OpenAI's; ``fixed`` (RAG_LLM_IMAGE_TOKENS)
        wins."""
        if fixed is None and type(llm).__module__.startswith("llama_index.llms.ollama"):
            fixed = LLAVA_IMAGE_TOKENS
        return cls(fixed=fixed, detail=detail)

    def tokens(self, size: tuple[int, int] | None) -> int:
        """The cost of a picture of ``size`` (width, height) as sent; None: a URL whose size is not known here."""
        if self.fixed is not None:
            return self.fixed
        if self.detail == "low":
            return 85
        return openai_high_detail_tokens(*(size or (768, 2048)))


def openai_high_detail_tokens(width: int, height: int) -> int:
    """OpenAI's count for a picture sent with ``detail: high`` (see the module)."""
    fit = min(1.0, 2048 / max(width, height))
    fitted = (width * fit, height * fit)
    scale = min(768 / min(fitted), 2048 / max(fitted))
    tiles = math.ceil(round(fitted[0] * scale) / 512) * math.ceil(round(fitted[1] * scale) / 512)
    return 170 * tiles + 85


def count_tokens(text: str) -> int:
    """Tokens in ``text`` by LlamaIndex's global tokenizer."""
    from llama_index.core import Settings

    return len(Settings.tokenizer(text))


def fair_shares(sizes: Sequence[int], budget: int) -> list[int]:
    """Tokens each text may keep so that together they fit ``budget``: short texts whole, the long ones an equal
    share of what is left (water-filling), so one long text never crowds out the others."""
    shares = [0] * len(sizes)
    left, waiting = budget, len(sizes)
    # Among equal sizes the better ranked come last, so that they keep what the division leaves over.
    for index in sorted(range(len(sizes)), key=lambda i: (sizes[i], -i)):
        shares[index] = min(sizes[index], left // waiting)
        left -= shares[index]
        waiting -= 1
    return shares


def cut(text: str, tokens: int, allowed: int) -> str:
    """The longest start of ``text`` (``tokens`` long) found within ``allowed`` tokens, ended at a word boundary."""
    if tokens <= allowed:
        return text
    keep = len(text) * allowed // max(tokens, 1)
    while keep > 0 and count_tokens(text[:keep]) > allowed:
        keep = keep * 9 // 10
    start = text[:keep]
    space = start.rfind(" ")
    return (start[:space] if space > keep // 2 else start).rstrip()


def within_budget(texts: Sequence[str], budget: int) -> list[str]:
    """The texts, each cut to its fair share of ``budget`` tokens, saying so where a text was cut or left out."""
    sizes = [count_tokens(text) for text in texts]
    out = []
    for text, size, share in zip(texts, sizes, fair_shares(sizes, budget)):
        if share >= size:
            out.append(text)
        elif share == 0:
            out.append("(its text is left out: the evidence budget is spent)")
        else:
            out.append(f"{cut(text, size, share)} … (cut to {share} of its {size} tokens to fit the evidence budget)")
    return out


def pictures_within(costs: Sequence[int | None], budget: int) -> list[bool]:
    """Which pictures are sent: best ranked first, as long as their costs together fit ``budget``; a picture that
    does not fit is left out, and so is every one ranked after it (lowest score first). None: no picture."""
    kept, spent, full = [], 0, False
    for cost in costs:
        fits = cost is not None and not full and spent + cost <= budget
        full = full or (cost is not None and not fits)
        spent += cost if fits and cost is not None else 0
        kept.append(fits)
    return kept
