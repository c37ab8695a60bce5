"""Evidence text within a token budget: each item's text for the LLM, cut fairly when they do not all fit.

Tokens are counted with LlamaIndex's global tokenizer (``llama_index.core.Settings.tokenizer``:
tiktoken's ``cl100k_base`` unless the application sets another), an estimate for LLMs that
tokenize otherwise. Pictures are not counted: they are sent beside the text as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

#: The evidence text sent with one question when nothing else is set (as ``RAG_LLM_MAX_EVIDENCE_TOKENS``).
DEFAULT_EVIDENCE_TOKENS = 6000


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
