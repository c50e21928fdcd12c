"""lme4 formula text -> blocks, without data or sampling."""

from __future__ import annotations

import pytest

from bayesmixed.errors import FormulaError
from bayesmixed.formula import CbindResponse, GroupBlock, parse_formula


def blocks(formula):
    return [(b.expr, b.factor, b.correlated) for b in parse_formula(formula).blocks]


@pytest.mark.parametrize(
    ("formula", "common", "expected"),
    [
        ("y ~ x + (x | g)", "x", [("x", ("g",), True)]),
        ("y ~ x + (1 + x | g)", "x", [("1 + x", ("g",), True)]),
        ("y ~ x + (x || g)", "x", [("x", ("g",), False)]),
        ("y ~ (1 | g)", "1", [("1", ("g",), True)]),
        ("y ~ x + (0 + x | g)", "x", [("0 + x", ("g",), True)]),
        ("y ~ x + (-1 + x | g)", "x", [("0 + x", ("g",), True)]),
        ("y ~ 1 + (1 | a/b)", "1", [("1", ("a",), True), ("1", ("a", "b"), True)]),
        ("y ~ (1 | a/b/c)", "1", [("1", ("a",), True), ("1", ("a", "b"), True),
                                  ("1", ("a", "b", "c"), True)]),
        ("y ~ (1 | a:b)", "1", [("1", ("a", "b"), True)]),
        ("y ~ (1 | a) + (1 | b)", "1", [("1", ("a",), True), ("1", ("b",), True)]),
        ("y ~ x + (1 | g) + (0 + x | g)", "x", [("1", ("g",), True), ("0 + x", ("g",), True)]),
        ("y ~ C + (C | g)", "C", [("C", ("g",), True)]),
        ("y ~ x*z + (x*z | g)", "x*z", [("x*z", ("g",), True)]),
        ("np.log(y) ~ np.log(x) + (1 | g)", "np.log(x)", [("1", ("g",), True)]),
        ("y ~ 0 + x + (1|g)", "0 + x", [("1", ("g",), True)]),
        ("y ~ x - 1 + (1|g)", "x - 1", [("1", ("g",), True)]),
        ("y~x+(x|g)", "x", [("x", ("g",), True)]),
    ],
)
def test_block_structure(formula, common, expected):
    spec = parse_formula(formula)
    assert spec.common == common
    assert blocks(formula) == expected


def test_cbind_response():
    spec = parse_formula("cbind(incidence, size - incidence) ~ period + (1 | herd)")
    assert spec.response == CbindResponse("incidence", "size - incidence")
    assert spec.common == "period"
    assert spec.factors == ("herd",)


def test_factor_label_and_text():
    block = parse_formula("y ~ (1 | batch/cask)").blocks[1]
    assert isinstance(block, GroupBlock)
    assert block.factor_label == "batch:cask"
    assert str(block) == "(1 | batch:cask)"
    assert str(parse_formula("y ~ (x || g)").blocks[0]) == "(x || g)"


@pytest.mark.parametrize(
    ("formula", "words"),
    [
        (3, "must be a string"),
        ("", "empty"),
        ("y ~ x + (1 | g", "Unbalanced parentheses"),
        ("y ~ x + 1 | g)", "Unbalanced parentheses"),
        ("y ~ (1 | )", "no grouping factor"),
        ("y ~ ( | g)", "nothing before the bar"),
        ("y x", "no '~'"),
        ("y ~ x ~ z", "more than one '~'"),
        (" ~ x", "no response"),
        ("y ~ ", "nothing on the right"),
        ("y ~ x | g", "outside parentheses"),
        ("y ~ x - (1 | g)", "subtracted"),
        ("y ~ (1 | g + h)", "must be a column name"),
        ("cbind(a) ~ x", "exactly two arguments"),
        ("y ~ (1 | 3g)", "not a column name"),
        ("y ~ (1 ||| g)", "Cannot read the group term"),
    ],
)
def test_formula_errors(formula, words):
    with pytest.raises(FormulaError, match=words):
        parse_formula(formula)
