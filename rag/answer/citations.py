"""Checks of an answer's citation markers against the evidence it was shown; the answer itself is never changed.

A marker is ``[n]`` or a group such as ``[1, 2]``; it names item ``n`` of the ``count`` items shown.
Sentences are told apart by a plain rule: they end at ``.``, ``!`` or ``?`` followed by white space,
or at a line break; markers written after the full stop (``... red. [2]``) belong to the sentence
before them. Fragments without a letter or digit (rules, bullets) are not sentences.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

_MARKERS = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
_LEADING_MARKERS = re.compile(r"^(?:\[\d+(?:\s*[,;]\s*\d+)*\]\s*[.,;:]?\s*)+")


class CitationCheck(BaseModel):
    """What the answer's markers say about the evidence shown (see ``check_citations``)."""

    unknown_citations: list[int] = Field(
        default_factory=list, description="Marker numbers that name no item the answer was shown, in order."
    )
    uncited_sentences: list[str] = Field(
        default_factory=list, description="The answer's sentences that carry no citation marker, as written."
    )
    uncited: bool = Field(default=False, description="True: evidence was given, and the answer cites none of it.")

    @property
    def clean(self) -> bool:
        return not (self.unknown_citations or self.uncited_sentences or self.uncited)


def marker_numbers(answer: str) -> list[int]:
    """Every number written in a marker, in order of first appearance."""
    numbers = (int(n) for group in _MARKERS.findall(answer) for n in re.split(r"[,;]", group))
    return list(dict.fromkeys(numbers))


def cited_markers(answer: str, count: int) -> set[int]:
    """The markers ``[n]`` (also ``[1, 2]``) in ``answer`` that name one of ``count`` items."""
    return {n for n in marker_numbers(answer) if 1 <= n <= count}


def sentences(answer: str) -> list[str]:
    """The answer's sentences, each with the markers that follow its full stop."""
    out: list[str] = []
    for fragment in _SENTENCE_END.split(answer.strip()):
        leading = _LEADING_MARKERS.match(fragment)
        if leading and out:
            out[-1] = f"{out[-1]} {leading.group().strip()}"
            fragment = fragment[leading.end() :]
        if any(ch.isalnum() for ch in _MARKERS.sub("", fragment)):
            out.append(fragment.strip())
    return out


def check_citations(answer: str, count: int) -> CitationCheck:
    """Markers naming none of the ``count`` items shown, sentences without a marker, and whether nothing is cited."""
    numbers = marker_numbers(answer)
    return CitationCheck(
        unknown_citations=[n for n in numbers if not 1 <= n <= count],
        uncited_sentences=[s for s in sentences(answer) if not _MARKERS.search(s)],
        uncited=count > 0 and not any(1 <= n <= count for n in numbers),
    )
