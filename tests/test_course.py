"""check_answer: the exercises' checker says right or wrong without printing the expected value."""

import pytest

import interp_widgets as iw


def test_numbers_match_within_tolerance_and_the_expected_value_is_not_printed(capsys):
    assert iw.check_answer(0.263, 0.2612345, tol=0.01) is True
    assert iw.check_answer(0.30, 0.2612345, tol=0.01, hint="mean over prompts") is False
    out = capsys.readouterr().out
    assert "0.2612" not in out and "Hint: mean over prompts" in out
    assert iw.check_answer(105.0, 100.0, rtol=0.1) is True
    assert iw.check_answer(float("nan"), 1.0, tol=1.0) is False


def test_strings_sequences_booleans_and_unanswered(capsys):
    assert iw.check_answer(" Mary", " Mary") is True
    assert iw.check_answer("Mary", " Mary") is False  # the leading space is part of the token
    assert iw.check_answer([2, 0], (2, 0)) is True
    assert iw.check_answer([2, 1], (2, 0)) is False
    assert iw.check_answer(True, True) is True
    assert iw.check_answer(1, True) is False  # a boolean question needs a boolean
    assert iw.check_answer(None, 3) is None
    assert "Not answered yet" in capsys.readouterr().out


def test_negative_tolerance_is_refused():
    with pytest.raises(ValueError, match="tol and rtol must be >= 0"):
        iw.check_answer(1.0, 1.0, tol=-1)
