"""What chunking needs of an encoder: its tokenizer and its text window, without the model (no torch here).

A :class:`TextWindow` counts tokens with the encoder's own tokenizer (its fast ``tokenizers`` backend, with no
truncation, so a long text is counted whole and quietly) and knows the window, special tokens included: a chunk
of ``window - specials`` tokens becomes exactly one full input. Without a tokenizer it estimates, erring high: a
word counts one token per four characters, a punctuation mark one.
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any

#: Chunks default to at most this many tokens even where the encoder reads more (bge-m3 reads 8192).
DEFAULT_WINDOW = 512

_PIECES = re.compile(r"\w{1,4}|[^\w\s]")


class TextWindow:
    """A token counter and the window a chunk must fit, special tokens included."""

    def __init__(self, tokenizer: Any | None, window: int, specials: int | None = None) -> None:
        self.window = window
        self._backend = None
        if tokenizer is not None:
            backend = getattr(tokenizer, "backend_tokenizer", None)
            if backend is not None:  # a copy without truncation or padding: counts whole texts, warns about nothing
                from tokenizers import Tokenizer

                backend = Tokenizer.from_str(backend.to_str())
                backend.no_truncation()
                backend.no_padding()
            self._backend = backend
            specials = tokenizer.num_special_tokens_to_add() if specials is None else specials
        self.specials = 2 if specials is None else specials

    @property
    def exact(self) -> bool:
        """Whether tokens are counted with the encoder's tokenizer (else estimated)."""
        return self._backend is not None

    @property
    def text_tokens(self) -> int:
        """Tokens of text a chunk may hold: the window less the special tokens."""
        return max(1, self.window - self.specials)

    def tokens(self, text: str) -> list[Any]:
        """The text's tokens (ids, or estimated pieces), special tokens left out."""
        if self._backend is None:
            return _PIECES.findall(text)
        return self._backend.encode(text, add_special_tokens=False).ids

    def count(self, text: str) -> int:
        return len(self.tokens(text))

    def capped(self, limit: int | None) -> TextWindow:
        """This counter with the window cut to ``limit`` tokens (itself when ``limit`` is None or not smaller)."""
        if limit is None or limit >= self.window:
            return self
        capped = copy.copy(self)
        capped.window = limit
        return capped

    def __repr__(self) -> str:
        how = "tokenizer" if self.exact else "estimate"
        return f"TextWindow(window={self.window}, specials={self.specials}, {how})"

    def __reduce__(self) -> tuple[Any, ...]:  # picklable: rebuilt from the backend's JSON
        return (_rebuild, (self._backend.to_str() if self._backend else None, self.window, self.specials))


def _rebuild(backend: str | None, window: int, specials: int) -> TextWindow:
    text_window = TextWindow(None, window, specials)
    if backend is not None:
        from tokenizers import Tokenizer

        text_window._backend = Tokenizer.from_str(backend)
    return text_window


def window_of(tokenizer: Any, max_tokens: int, limit: int | None = None) -> TextWindow:
    """The window of an encoder that reads ``max_tokens`` (special tokens included), capped at ``limit``
    (default :data:`DEFAULT_WINDOW`)."""
    return TextWindow(tokenizer, min(max_tokens, limit or DEFAULT_WINDOW))


def load_tokenizer_window(
    source: str | os.PathLike[str], *, local_only: bool = True, limit: int | None = None
) -> TextWindow:
    """The window of the text model at ``source`` (a folder or hub id) from its tokenizer and config alone."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    config = AutoConfig.from_pretrained(source, local_files_only=local_only)
    text_config = getattr(config, "text_config", None) or config
    positions = getattr(text_config, "max_position_embeddings", None) or DEFAULT_WINDOW
    if getattr(text_config, "model_type", "") in ("roberta", "xlm-roberta", "bridgetower_text_model", "bridgetower"):
        positions -= (getattr(text_config, "pad_token_id", 1) or 1) + 1  # positions numbered from padding_idx + 1
    model_max = tokenizer.model_max_length if tokenizer.model_max_length < 1_000_000 else positions
    return window_of(tokenizer, min(positions, model_max), limit)
