"""lme4 formula text -> a frozen :class:`FormulaSpec`.

This is the first stage of the pipeline. It understands the parts of lme4's syntax that
Bambi/formulae do not: correlated blocks ``(x | g)``, uncorrelated blocks ``(x || g)``,
nesting ``(1 | a/b)``, ``cbind(successes, failures)`` responses, and patsy's quoted names
``Q("my col")`` (rewritten as formulae's backtick names). Everything else, the
common (fixed) part and the expression inside each bar, is handed on as text to formulae,
which builds the design matrices in :mod:`bayesmixed.design`.

Examples
--------
>>> from bayesmixed.formula import parse_formula
>>> spec = parse_formula("Reaction ~ Days + (Days | Subject)")
>>> spec.common
'Days'
>>> [(b.expr, b.factor, b.correlated) for b in spec.blocks]
[('Days', ('Subject',), True)]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bayesmixed.errors import FormulaError

__all__ = [
    "CbindResponse",
    "Formula",
    "FormulaSpec",
    "GroupBlock",
    "ParameterSpec",
    "parse_formula",
]

# a column name: Python-like identifiers in any script (``sujeto_ñ``), dots allowed, or any
# text in backticks
_NAME = re.compile(r"^(?:[^\W\d]|\.)[\w.]*$|^`[^`]+`$")


@dataclass(frozen=True)
class GroupBlock:
    """One group-level block: the columns of ``expr`` varying over the levels of ``factor``.

    Attributes
    ----------
    expr : str
        Right-hand side for the block's design columns, in formulae syntax (``"Days"``,
        ``"0 + x"``, ``"1"``). The intercept follows R's rules: present unless removed.
    factor : tuple of str
        Variables whose combination defines the levels: ``("Subject",)``, or ``("a", "b")``
        for ``a:b``.
    correlated : bool
        ``True`` for ``(expr | g)`` (one LKJ-correlated block), ``False`` for ``(expr || g)``
        (every column independent).
    """

    expr: str
    factor: tuple[str, ...]
    correlated: bool = True

    @property
    def factor_label(self) -> str:
        """Label of the grouping factor as lme4 and brms print it (``"batch:cask"``)."""
        return ":".join(self.factor)

    def __str__(self) -> str:
        bar = "|" if self.correlated else "||"
        return f"({self.expr} {bar} {self.factor_label})"


@dataclass(frozen=True)
class CbindResponse:
    """A binomial response written ``cbind(successes, failures)``."""

    successes: str
    failures: str

    def __str__(self) -> str:
        return f"cbind({self.successes}, {self.failures})"


@dataclass(frozen=True)
class ParameterSpec:
    """The formula of one family parameter of a distributional model (``sigma ~ Days``).

    Attributes
    ----------
    name : str
        The family parameter (Bambi's name: ``"sigma"``, ``"alpha"``, ``"nu"``...).
    formula : str
        The text as the user wrote it.
    common : str
        Right-hand side of its common part in formulae syntax (``"1"`` for an intercept).
    blocks : tuple of GroupBlock
        Its group-level blocks, nesting expanded.
    """

    name: str
    formula: str
    common: str
    blocks: tuple[GroupBlock, ...] = field(default_factory=tuple)


@dataclass(frozen=True, init=False)
class Formula:
    """A model formula with formulas for family parameters (a distributional model).

    As brms's ``bf(y ~ ..., sigma ~ ...)`` and Bambi's ``bmb.Formula(...)``: the first
    formula models the family's mean, each further one a family parameter (``sigma`` of a
    Gaussian, ``alpha`` of a negative binomial, ...) on that parameter's link scale (log
    for positive parameters), with common and group terms.

    Parameters
    ----------
    main : str
        The lme4 formula of the response (``"Reaction ~ Days + (Days | Subject)"``).
    *parameters : str
        One formula per family parameter, its name on the left (``"sigma ~ Days"``,
        ``"sigma ~ Days + (1 | Subject)"``).

    Examples
    --------
    >>> import bayesmixed as bm
    >>> f = bm.Formula("Reaction ~ Days + (Days | Subject)", "sigma ~ Days")
    >>> f.parameters
    ('sigma ~ Days',)
    >>> model = bm.Model(f, bm.datasets.sleepstudy())
    """

    main: str
    parameters: tuple[str, ...]

    def __init__(self, main: str, *parameters: str) -> None:
        for text in (main, *parameters):
            if not isinstance(text, str):
                raise FormulaError(
                    "Formula takes formula strings, e.g. Formula('y ~ x + (1 | g)', "
                    f"'sigma ~ x'), got {type(text).__name__}."
                )
        object.__setattr__(self, "main", main)
        object.__setattr__(self, "parameters", tuple(parameters))

    def __str__(self) -> str:
        return "; ".join((self.main, *self.parameters))

    def __repr__(self) -> str:
        return f"Formula({', '.join(map(repr, (self.main, *self.parameters)))})"


@dataclass(frozen=True)
class FormulaSpec:
    """A parsed lme4 formula.

    Attributes
    ----------
    formula : str
        The text as the user wrote it.
    response : str or CbindResponse
        Left-hand side: formulae text (``"Reaction"``, ``"np.log(y)"``, ``"p(k, n)"``) or a
        :class:`CbindResponse`.
    common : str
        Right-hand side of the common (fixed) part in formulae syntax; ``"1"`` when only
        an intercept remains.
    blocks : tuple of GroupBlock
        Group-level blocks in the order written, nesting expanded.
    parameters : tuple of ParameterSpec
        Formulas of family parameters (a distributional model); empty otherwise.
    """

    formula: str
    response: str | CbindResponse
    common: str
    blocks: tuple[GroupBlock, ...] = field(default_factory=tuple)
    parameters: tuple[ParameterSpec, ...] = field(default_factory=tuple)

    @property
    def all_blocks(self) -> tuple[GroupBlock, ...]:
        """Group blocks of the main formula and of every parameter formula."""
        return self.blocks + tuple(b for p in self.parameters for b in p.blocks)

    @property
    def common_texts(self) -> tuple[str, ...]:
        """Right-hand sides of the common parts: the main one, then each parameter's."""
        return (self.common, *(p.common for p in self.parameters))

    @property
    def response_text(self) -> str:
        """The response as text, as written (``cbind`` kept)."""
        return str(self.response)

    @property
    def common_formula(self) -> str:
        """``response ~ common`` for formulae/Bambi (``cbind`` excluded)."""
        return f"{self.response} ~ {self.common}"

    @property
    def factors(self) -> tuple[str, ...]:
        """Distinct grouping-factor labels in order of appearance."""
        seen: dict[str, None] = {}
        for block in self.blocks:
            seen.setdefault(block.factor_label, None)
        return tuple(seen)

    @property
    def variables(self) -> tuple[str, ...]:
        """Names of grouping variables used by the blocks (for validation)."""
        seen: dict[str, None] = {}
        for block in self.all_blocks:
            for name in block.factor:
                seen.setdefault(name, None)
        return tuple(seen)


def parse_formula(formula: str | Formula) -> FormulaSpec:
    """Parse an lme4 model formula.

    Parameters
    ----------
    formula : str or Formula
        For example ``"Reaction ~ Days + (Days | Subject)"``,
        ``"cbind(incidence, size - incidence) ~ period + (1 | herd)"`` or
        ``"y ~ x + (1 | a/b) + (0 + x || c)"``; a :class:`Formula` adds formulas of family
        parameters (``Formula("y ~ x + (1 | g)", "sigma ~ x")``).

    Returns
    -------
    FormulaSpec

    Raises
    ------
    FormulaError
        If the text is not a string, its parentheses do not balance, it has no ``~``, a bar
        has no grouping factor or no terms, or a group term is subtracted; a parameter
        formula has no plain name on its left or names a parameter twice.
    """
    if isinstance(formula, Formula):
        main = parse_formula(formula.main)
        return FormulaSpec(
            formula=main.formula,
            response=main.response,
            common=main.common,
            blocks=main.blocks,
            parameters=_parse_parameters(formula.parameters),
        )
    if not isinstance(formula, str):
        raise FormulaError(
            f"The formula must be a string such as 'y ~ x + (x | g)', got {type(formula).__name__}."
        )
    text = _unquote(" ".join(formula.split()))
    if not text:
        raise FormulaError("The formula is empty; write it as 'response ~ terms', e.g. 'y ~ x'.")
    _check_parentheses(text)
    parts = _split_top(text, "~")
    if len(parts) != 2:
        if len(parts) == 1:
            raise FormulaError(
                f"The formula {formula!r} has no '~': write it as 'response ~ terms'."
            )
        raise FormulaError(f"The formula {formula!r} has more than one '~'.")
    lhs, rhs = (p.strip() for p in parts)
    if not lhs:
        raise FormulaError(f"The formula {formula!r} has no response on the left of '~'.")
    if not rhs:
        raise FormulaError(
            f"The formula {formula!r} has nothing on the right of '~'; use '1' for an "
            "intercept-only model."
        )
    response = _parse_response(lhs)

    common_terms: list[str] = []
    blocks: list[GroupBlock] = []
    for sign, term in _split_terms(rhs):
        inner = _strip_outer_parens(term)
        if inner is not None and _find_top(inner, "|") is not None:
            if sign == "-":
                raise FormulaError(
                    f"The group term {term!r} is subtracted; group terms can only be added."
                )
            blocks.extend(_parse_bar(inner, term))
        else:
            if "|" in term:
                raise FormulaError(
                    f"The term {term!r} uses '|' outside parentheses; write group terms as "
                    "'(terms | group)'."
                )
            common_terms.append(term if sign == "+" else f"-{term}")
    common = _join_terms(common_terms)
    return FormulaSpec(formula=formula, response=response, common=common, blocks=tuple(blocks))


def _parse_parameters(texts: tuple[str, ...]) -> tuple[ParameterSpec, ...]:
    out: list[ParameterSpec] = []
    for text in texts:
        part = parse_formula(text)
        name = part.response_text.strip()
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise FormulaError(
                f"The parameter formula {text!r} must name a family parameter on the left of "
                "'~', e.g. 'sigma ~ x'."
            )
        if any(p.name == name for p in out):
            raise FormulaError(
                f"The family parameter {name!r} has more than one formula; give it one."
            )
        out.append(ParameterSpec(name=name, formula=text, common=part.common,
                                 blocks=part.blocks))
    return tuple(out)


# -- helpers ---------------------------------------------------------------------------------

# patsy's Q("my col") quotes a column name; formulae writes it `my col`
_Q_CALL = re.compile(r"""\bQ\(\s*(["'])([^"'`]*?)\1\s*\)""")


def _unquote(text: str) -> str:
    """Rewrite ``Q("my col")`` as formulae's backtick name ```my col```."""
    return _Q_CALL.sub(lambda m: f"`{m.group(2)}`", text)



def _check_parentheses(text: str) -> None:
    depth = 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise FormulaError(
                    f"Unbalanced parentheses in {text!r}: a ')' at position {i} has no '('."
                )
    if depth:
        raise FormulaError(f"Unbalanced parentheses in {text!r}: {depth} '(' never closed.")


def _split_top(text: str, sep: str) -> list[str]:
    """Split on a one-character separator outside parentheses, brackets and quotes."""
    out, depth, start, quote = [], 0, 0, None
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = None
            continue
        if char in "'\"`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == sep and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return out


def _find_top(text: str, char: str) -> int | None:
    pieces = _split_top(text, char)
    return None if len(pieces) == 1 else len(pieces[0])


def _split_terms(rhs: str) -> list[tuple[str, str]]:
    """Split the right-hand side into signed top-level terms."""
    terms: list[tuple[str, str]] = []
    depth, start, sign, quote = 0, 0, "+", None
    for i, char in enumerate(rhs):
        if quote:
            if char == quote:
                quote = None
            continue
        if char in "'\"`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char in "+-" and depth == 0:
            prev = rhs[:i].rstrip()
            # a sign right after an operator or at the start is unary (e.g. "-1")
            if prev and prev[-1] not in "+-*/:~^":
                terms.append((sign, rhs[start:i].strip()))
                sign, start = char, i + 1
            elif not prev:
                sign, start = char, i + 1
    terms.append((sign, rhs[start:].strip()))
    for _, term in terms:
        if not term:
            raise FormulaError(f"Empty term in {rhs!r}: check for doubled or trailing '+'.")
    return terms


def _strip_outer_parens(term: str) -> str | None:
    """Return the inside of ``( ... )`` if the parentheses wrap the whole term."""
    if not (term.startswith("(") and term.endswith(")")):
        return None
    depth = 0
    for i, char in enumerate(term):
        depth += char == "("
        depth -= char == ")"
        if depth == 0 and i < len(term) - 1:
            return None
    return term[1:-1].strip()


def _parse_bar(inner: str, term: str) -> list[GroupBlock]:
    pieces = _split_top(inner, "|")
    if len(pieces) == 2:
        expr, group, correlated = pieces[0], pieces[1], True
    elif len(pieces) == 3 and pieces[1].strip() == "":
        expr, group, correlated = pieces[0], pieces[2], False
    else:
        raise FormulaError(
            f"Cannot read the group term {term!r}: use '(terms | group)' or '(terms || group)'."
        )
    expr, group = expr.strip(), group.strip()
    if not expr:
        raise FormulaError(
            f"The group term {term!r} has nothing before the bar; write '(1 | {group or 'g'})' "
            "for a group intercept."
        )
    if not group:
        raise FormulaError(
            f"The group term {term!r} has no grouping factor after the bar; write e.g. "
            f"'({expr} | subject)'."
        )
    if "(" in group or "+" in group:
        raise FormulaError(
            f"The grouping factor {group!r} in {term!r} must be a column name, 'a:b' or 'a/b'."
        )
    factors = _expand_nesting(group, term)
    expr = _normalise_expr(expr)
    return [GroupBlock(expr=expr, factor=f, correlated=correlated) for f in factors]


def _expand_nesting(group: str, term: str) -> list[tuple[str, ...]]:
    """``a/b`` -> [(a,), (a, b)]; ``a/b:c`` -> [(a,), (a, b, c)]; ``a:b`` -> [(a, b)]."""
    levels = [lvl.strip() for lvl in group.split("/")]
    out: list[tuple[str, ...]] = []
    prefix: tuple[str, ...] = ()
    for level in levels:
        names = tuple(n.strip() for n in level.split(":"))
        for name in names:
            if not _NAME.match(name):
                raise FormulaError(
                    f"The grouping factor {name!r} in {term!r} is not a column name."
                )
        prefix = prefix + names
        out.append(prefix)
    return [tuple(n.strip("`") for n in f) for f in out]


def _normalise_expr(expr: str) -> str:
    """Turn R's ``-1`` into formulae's ``0 +`` and tidy spaces."""
    terms = _split_terms(expr)
    keep = []
    removed_intercept = False
    for sign, term in terms:
        if sign == "-" and term in ("1", "0"):
            removed_intercept = True
            continue
        keep.append(term if sign == "+" else f"-{term}")
    if removed_intercept:
        keep = ["0", *[t for t in keep if t not in ("0", "1")]]
    return _join_terms(keep)


def _join_terms(terms: list[str]) -> str:
    if not terms:
        return "1"
    text = terms[0]
    for term in terms[1:]:
        text += f" - {term[1:]}" if term.startswith("-") else f" + {term}"
    return text


def _parse_response(lhs: str) -> str | CbindResponse:
    match = re.fullmatch(r"cbind\s*\((.*)\)", lhs)
    if not match:
        return lhs
    args = [a.strip() for a in _split_top(match.group(1), ",")]
    if len(args) != 2 or not all(args):
        raise FormulaError(
            f"'{lhs}' must have exactly two arguments: cbind(successes, failures)."
        )
    return CbindResponse(successes=args[0], failures=args[1])
