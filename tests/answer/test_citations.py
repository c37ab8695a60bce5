"""The check of an answer's citation markers: unknown numbers, sentences without a marker, nothing cited."""

from __future__ import annotations

from rag.answer import check_citations
from rag.answer.citations import cited_markers, sentences


def test_unknown_numbers_are_flagged_in_order() -> None:
    check = check_citations("Red [1]. Blue [7]. Green [2, 9; 0].", 5)
    assert check.unknown_citations == [7, 9, 0] and not check.uncited and check.uncited_sentences == []
    assert cited_markers("Red [1]. Blue [7]. Green [2, 9; 0].", 5) == {1, 2}


def test_sentences_without_a_marker_are_listed_as_written() -> None:
    answer = "The carriage is red [1]. It has two wheels.\nIt stands in a yard! Is it old? Yes. [2]\n- a bullet [3]\n-"
    check = check_citations(answer, 3)
    assert check.uncited_sentences == ["It has two wheels.", "It stands in a yard!", "Is it old?"]
    assert sentences(answer)[-2:] == ["Yes. [2]", "- a bullet [3]"]  # a marker after the full stop belongs to it


def test_an_answer_citing_nothing_while_evidence_was_given_is_uncited() -> None:
    assert check_citations("The evidence does not say.", 3).uncited
    assert check_citations("Only an unknown item [4].", 3).uncited
    assert not check_citations("Nothing was found.", 0).uncited  # no evidence: nothing to cite
    assert check_citations("All cited [1].", 1).clean
