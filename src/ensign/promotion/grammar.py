"""Parse and evaluate promotion conditions like ``val_acc >= 0.9 and val_loss < 0.3``.

A hand-written tokenizer and recursive-descent parser; nothing is handed to ``eval``::

    expr       := or_expr EOF
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | primary
    primary    := "(" or_expr ")" | comparison
    comparison := operand OP operand        OP in < <= > >= == !=
    operand    := number | metric | FUNC "(" metric ")"   FUNC in best min max last

Every syntax error raises :class:`~ensign.errors.InvalidCondition` with the 1-based
column of the offending token.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, cast

from ensign.errors import InvalidCondition

__all__ = [
    "And",
    "Comparison",
    "Condition",
    "Expression",
    "MetricRef",
    "Not",
    "Number",
    "Or",
    "format_value",
    "parse_condition",
]

_MAX_LENGTH = 4096  # characters
_MAX_DEPTH = 100  # parentheses and "not", together
_Function = Literal["last", "best", "min", "max"]
_Resolve = Callable[["MetricRef"], float]
_FUNCTIONS = frozenset({"last", "best", "min", "max"})
_KEYWORDS = frozenset({"and", "or", "not"})
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_./:-]*")
_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_NUMBER_TAIL = re.compile(r"[A-Za-z0-9_.]+")


def format_value(value: float) -> str:
    """Format a value in its shortest round-trip form, ``12`` rather than ``12.0``."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True)
class MetricRef:
    """A metric of a run through a summary function (``last`` for a plain name)."""

    function: Literal["last", "best", "min", "max"]
    metric: str

    def __str__(self) -> str:
        """Return ``val_acc`` for ``last`` and ``best(val_acc)`` otherwise."""
        if self.function == "last":
            return self.metric
        return f"{self.function}({self.metric})"


@dataclass(frozen=True)
class Number:
    """A number literal."""

    value: float


class Expression:
    """Base of the condition tree nodes."""

    def refs(self) -> Iterator[MetricRef]:
        """Yield every metric reference below this node, in source order."""
        raise NotImplementedError

    def evaluate(self, resolve: _Resolve, reasons: list[str]) -> bool:
        """Evaluate every comparison below this node, appending one reason line each."""
        raise NotImplementedError


@dataclass(frozen=True)
class Comparison(Expression):
    """``left OP right`` with OP one of ``< <= > >= == !=``."""

    left: MetricRef | Number
    op: str
    right: MetricRef | Number

    def refs(self) -> Iterator[MetricRef]:
        """Yield the metric operands, left first."""
        yield from (x for x in (self.left, self.right) if isinstance(x, MetricRef))

    def evaluate(self, resolve: _Resolve, reasons: list[str]) -> bool:
        """Compare the two operands (IEEE: NaN is only ``!=`` to anything)."""
        values: list[float] = []
        shown: list[str] = []
        for side in (self.left, self.right):
            if isinstance(side, MetricRef):
                values.append(float(resolve(side)))
                shown.append(f"{side} = {format_value(values[-1])}")
            else:
                values.append(side.value)
                shown.append(format_value(side.value))
        holds = _OPERATORS[self.op](values[0], values[1])
        reasons.append(f"{shown[0]} {self.op} {shown[1]}: {'true' if holds else 'false'}")
        return holds


@dataclass(frozen=True)
class Not(Expression):
    """``not operand``."""

    operand: Expression

    def refs(self) -> Iterator[MetricRef]:
        """Yield the operand's references."""
        return self.operand.refs()

    def evaluate(self, resolve: _Resolve, reasons: list[str]) -> bool:
        """Return the negation of the operand."""
        return not self.operand.evaluate(resolve, reasons)


@dataclass(frozen=True)
class _Junction(Expression):
    operands: tuple[Expression, ...]

    def refs(self) -> Iterator[MetricRef]:
        for item in self.operands:
            yield from item.refs()

    def _each(self, resolve: _Resolve, reasons: list[str]) -> list[bool]:
        results = []
        for item in self.operands:  # no short-circuit, and no comprehension frame
            results.append(item.evaluate(resolve, reasons))
        return results


@dataclass(frozen=True)
class And(_Junction):
    """``a and b and ...``; every operand is evaluated, there is no short-circuit."""

    def evaluate(self, resolve: _Resolve, reasons: list[str]) -> bool:
        """Return whether every operand holds."""
        return all(self._each(resolve, reasons))


@dataclass(frozen=True)
class Or(_Junction):
    """``a or b or ...``; every operand is evaluated, there is no short-circuit."""

    def evaluate(self, resolve: _Resolve, reasons: list[str]) -> bool:
        """Return whether any operand holds."""
        return any(self._each(resolve, reasons))


@dataclass(frozen=True)
class Condition:
    """A parsed promotion condition: the text as written and the root of its tree."""

    text: str
    expression: Expression

    def __str__(self) -> str:
        """Return the condition as written."""
        return self.text

    @property
    def metrics(self) -> frozenset[MetricRef]:
        """Every metric reference in the condition."""
        return frozenset(self.expression.refs())

    def evaluate(self, resolve: _Resolve) -> tuple[bool, list[str]]:
        """Evaluate the condition, recording one reason line per comparison.

        Args:
            resolve: Returns the value of a reference; whatever it raises propagates.

        Returns:
            Whether the condition holds, and lines like ``val_acc = 0.95 >= 0.9: true``
            for every comparison (none is skipped) in source order.
        """
        reasons: list[str] = []
        return self.expression.evaluate(resolve, reasons), reasons


@dataclass(frozen=True)
class _Token:
    kind: str  # num name func op ( ) and or not end error
    text: str
    column: int


def _tokenize(text: str) -> list[_Token]:
    """Split text into tokens; a lexical error becomes the last token, of kind error."""
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch, col = text[i], i + 1
        if ch.isspace():
            i += 1
        elif ch in "()":
            tokens.append(_Token(ch, ch, col))
            i += 1
        elif text.startswith(("<=", ">=", "==", "!="), i) or ch in "<>":
            size = 1 if ch in "<>" and text[i + 1 : i + 2] != "=" else 2
            tokens.append(_Token("op", text[i : i + size], col))
            i += size
        elif number := _NUMBER.match(text, i):
            tail = _NUMBER_TAIL.match(text, number.end())
            word = text[i : tail.end() if tail else number.end()]
            if tail or not math.isfinite(float(word)):
                why = "malformed number" if tail else "number out of range"
                return [*tokens, _Token("error", f"{why} '{word}'", col)]
            tokens.append(_Token("num", word, col))
            i = number.end()
        elif name := _NAME.match(text, i):
            word, i = name.group(), name.end()
            call = text[i:].lstrip().startswith("(")
            if word in _KEYWORDS:
                tokens.append(_Token(word, word, col))
            elif call and word not in _FUNCTIONS:
                return [*tokens, _Token("error", f"unknown function '{word}'", col)]
            else:
                tokens.append(_Token("func" if call else "name", word, col))
        else:
            hint = "; did you mean '=='?" if ch == "=" else ""
            return [*tokens, _Token("error", f"unexpected character {ch!r}{hint}", col)]
    return [*tokens, _Token("end", "", n + 1)]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0
        self.parens = 0

    def fail(self, reason: str, token: _Token) -> InvalidCondition:
        return InvalidCondition(reason, self.text, token.column)

    def peek(self) -> _Token:
        token = self.tokens[self.pos]
        if token.kind == "error":
            raise self.fail(token.text, token)
        return token

    def take(self) -> _Token:
        token = self.peek()
        self.pos += 1
        return token

    def unexpected(self, token: _Token, wanted: str) -> InvalidCondition:
        if token.kind == "end":
            return self.fail(f"{wanted}, but the condition ends", token)
        if token.kind == ")" and self.parens == 0:
            return self.fail("unbalanced parenthesis: unmatched ')'", token)
        return self.fail(f"unexpected '{token.text}': {wanted}", token)

    def enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.fail(f"nesting too deep (more than {_MAX_DEPTH} levels)", token)

    def parse(self) -> Expression:
        expression = self.or_expr()
        if (token := self.peek()).kind != "end":
            raise self.unexpected(token, "expected 'and', 'or' or the end")
        return expression

    def or_expr(self) -> Expression:
        items = [self.and_expr()]
        while self.peek().kind == "or":
            self.take()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Expression:
        items = [self.not_expr()]
        while self.peek().kind == "and":
            self.take()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Expression:
        nots = 0
        while self.peek().kind == "not":
            self.enter(self.take())
            nots += 1
        expression = self.primary()
        for _ in range(nots):
            expression = Not(expression)
        self.depth -= nots
        return expression

    def primary(self) -> Expression:
        if (opening := self.peek()).kind != "(":
            return self.comparison()
        self.enter(self.take())
        self.parens += 1
        inner = self.or_expr()
        if (closing := self.peek()).kind == "end":
            reason = f"unbalanced parenthesis: '(' at column {opening.column} is not closed"
            raise self.fail(reason, opening)
        if closing.kind != ")":
            raise self.unexpected(closing, "expected 'and', 'or' or ')'")
        self.take()
        self.depth, self.parens = self.depth - 1, self.parens - 1
        return inner

    def comparison(self) -> Expression:
        left, shown = self.operand()
        if (op := self.peek()).kind != "op":
            raise self.fail(f"expected a comparison operator after '{shown}'", op)
        self.take()
        right, _ = self.operand()
        if (extra := self.peek()).kind == "op":
            raise self.fail("chained comparisons are not supported", extra)
        return Comparison(left, op.text, right)

    def operand(self) -> tuple[MetricRef | Number, str]:
        token = self.peek()
        if token.kind not in ("num", "name", "func"):
            raise self.unexpected(token, "expected a metric or number")
        self.take()
        if token.kind == "num":
            return Number(float(token.text)), token.text
        if token.kind == "name":
            return MetricRef("last", token.text), token.text
        self.take()  # the "(" the tokenizer saw after the function name
        if (name := self.peek()).kind != "name":
            if name.kind == ")":  # not an unbalanced parenthesis
                raise self.fail(f"expected a metric name in {token.text}()", name)
            raise self.unexpected(name, f"expected a metric name in {token.text}()")
        self.take()
        if (closing := self.peek()).kind == "end":
            raise self.fail(f"unbalanced parenthesis: '{token.text}(' is not closed", token)
        if closing.kind != ")":
            raise self.unexpected(closing, f"expected ')' after '{name.text}'")
        self.take()
        ref = MetricRef(cast(_Function, token.text), name.text)
        return ref, str(ref)


def parse_condition(text: str) -> Condition:
    """Parse a promotion condition.

    Args:
        text: A condition such as ``val_acc >= 0.9 and not (best(val_loss) > 0.3)``.

    Returns:
        The parsed condition.

    Raises:
        InvalidCondition: With the 1-based column of the first error.
    """
    if len(text) > _MAX_LENGTH:
        reason = f"condition is too long (more than {_MAX_LENGTH} characters)"
        raise InvalidCondition(reason, text, _MAX_LENGTH + 1)
    if not text.strip():
        raise InvalidCondition("empty condition", text, 1)
    try:
        return Condition(text, _Parser(text).parse())
    except RecursionError:  # only when the caller's own stack is already deep
        raise InvalidCondition("nesting too deep", text, 1) from None
