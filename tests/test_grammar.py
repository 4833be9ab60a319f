"""Tests for the promotion condition grammar."""

from __future__ import annotations

import math

import pytest

from ensign.errors import InvalidCondition
from ensign.promotion.grammar import (
    And,
    Comparison,
    Condition,
    MetricRef,
    Not,
    Number,
    Or,
    parse_condition,
)

NAN = float("nan")
INF = float("inf")


def run(text: str, **values: float) -> tuple[bool, list[str]]:
    """Parse text and evaluate it with values keyed by str(MetricRef)."""
    return parse_condition(text).evaluate(lambda ref: values[str(ref)])


def holds(text: str, **values: float) -> bool:
    return run(text, **values)[0]


def error(text: str) -> InvalidCondition:
    with pytest.raises(InvalidCondition) as info:
        parse_condition(text)
    return info.value


# --- structure and precedence ---------------------------------------------------


def test_simple_comparison_tree() -> None:
    condition = parse_condition("val_acc >= 0.9")
    assert isinstance(condition, Condition)
    assert condition.text == "val_acc >= 0.9"
    assert str(condition) == "val_acc >= 0.9"
    assert condition.expression == Comparison(MetricRef("last", "val_acc"), ">=", Number(0.9))


def test_and_binds_tighter_than_or() -> None:
    tree = parse_condition("a > 1 or b > 1 and c > 1").expression
    assert isinstance(tree, Or)
    assert isinstance(tree.operands[0], Comparison)
    assert isinstance(tree.operands[1], And)
    # a true alone decides it; with and-first grouping it would be false
    assert holds("a > 1 or b > 1 and c > 1", a=2, b=0, c=0) is True
    assert holds("b > 1 and c > 1 or a > 1", a=2, b=0, c=0) is True


def test_not_binds_tighter_than_and() -> None:
    tree = parse_condition("not a > 1 and b > 1").expression
    assert isinstance(tree, And)
    assert isinstance(tree.operands[0], Not)
    # (not a>1) and b>1 is false here; not (a>1 and b>1) would be true
    assert holds("not a > 1 and b > 1", a=0, b=0) is False


def test_not_binds_tighter_than_or() -> None:
    assert holds("not a > 1 or b > 1", a=2, b=2) is True
    assert holds("not (a > 1 or b > 1)", a=2, b=2) is False


def test_parentheses_override_precedence() -> None:
    assert holds("(a > 1 or b > 1) and c > 1", a=2, b=0, c=0) is False
    assert holds("a > 1 or (b > 1 and c > 1)", a=2, b=0, c=0) is True
    tree = parse_condition("(a > 1 or b > 1) and c > 1").expression
    assert isinstance(tree, And)
    assert isinstance(tree.operands[0], Or)


def test_double_not_and_redundant_parentheses() -> None:
    assert holds("not not a > 1", a=2) is True
    assert holds("not (not (a > 1))", a=2) is True
    assert holds("((((a > 1))))", a=2) is True
    assert holds("not(a>1)", a=0) is True


def test_chains_of_and_or_are_flat() -> None:
    tree = parse_condition("a > 1 and b > 1 and c > 1").expression
    assert isinstance(tree, And)
    assert len(tree.operands) == 3
    tree = parse_condition("a > 1 or b > 1 or c > 1").expression
    assert isinstance(tree, Or)
    assert len(tree.operands) == 3


def test_whitespace_is_free() -> None:
    compact = parse_condition("a>1 and(b<=2)").expression
    spaced = parse_condition("  a  >  1 \t and \n ( b <= 2 )  ").expression
    assert compact == spaced


def test_keywords_are_case_sensitive() -> None:
    err = error("a > 1 AND b > 1")
    assert err.column == 7
    assert "unexpected 'AND'" in err.reason


# --- operators ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "below", "equal", "above"),
    [
        ("<", True, False, False),
        ("<=", True, True, False),
        (">", False, False, True),
        (">=", False, True, True),
        ("==", False, True, False),
        ("!=", True, False, True),
    ],
)
def test_all_operators(op: str, below: bool, equal: bool, above: bool) -> None:
    assert holds(f"x {op} 5", x=4) is below
    assert holds(f"x {op} 5", x=5) is equal
    assert holds(f"x {op} 5", x=6) is above
    assert holds(f"x{op}5", x=5) is equal


def test_two_numbers_may_be_compared() -> None:
    assert run("1 < 2") == (True, ["1 < 2: true"])
    assert parse_condition("1 < 2").metrics == frozenset()


def test_two_metrics_may_be_compared() -> None:
    ok, reasons = run("val_acc > train_acc", val_acc=0.95, train_acc=0.97)
    assert ok is False
    assert reasons == ["val_acc = 0.95 > train_acc = 0.97: false"]


# --- numbers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("1", 1.0),
        ("-2", -2.0),
        ("+3", 3.0),
        ("0.5", 0.5),
        (".5", 0.5),
        ("-.5", -0.5),
        ("1.", 1.0),
        ("1e-3", 0.001),
        ("2.5E+4", 25000.0),
        ("-1.5e2", -150.0),
        ("007", 7.0),
    ],
)
def test_number_forms(literal: str, value: float) -> None:
    tree = parse_condition(f"x > {literal}").expression
    assert tree == Comparison(MetricRef("last", "x"), ">", Number(value))
    tree = parse_condition(f"x>{literal}").expression
    assert isinstance(tree, Comparison)
    assert tree.right == Number(value)


def test_negative_number_on_the_left() -> None:
    assert holds("-1 < x", x=0) is True
    assert holds("-1e-3>x", x=-1) is True


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ("x > 1e", 5, "malformed number '1e'"),
        ("x > 1.2.3", 5, "malformed number '1.2.3'"),
        ("x > 12abc", 5, "malformed number '12abc'"),
        ("x>1and y>1", 3, "malformed number '1and'"),
        ("x > 1e999", 5, "number out of range"),
        ("x > - 1", 5, "unexpected character '-'"),
        ("x > --1", 5, "unexpected character '-'"),
    ],
)
def test_bad_numbers(text: str, column: int, reason: str) -> None:
    err = error(text)
    assert err.column == column
    assert reason in err.reason


# --- metrics and functions ---------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["val/acc", "train.loss", "eval:f1", "top-5", "_private", "a/b.c:d-e_f9", "A1"],
)
def test_metric_name_characters(name: str) -> None:
    condition = parse_condition(f"{name} > 1")
    assert condition.metrics == {MetricRef("last", name)}


@pytest.mark.parametrize("function", ["best", "min", "max", "last"])
def test_functions(function: str) -> None:
    condition = parse_condition(f"{function}(val/loss) < 0.3")
    ref = next(iter(condition.metrics))
    assert ref.function == function
    assert ref.metric == "val/loss"
    assert condition.evaluate(lambda r: 0.25) == (
        True,
        [f"{ref} = 0.25 < 0.3: true"],
    )


def test_function_with_spaces() -> None:
    condition = parse_condition("best ( val_acc ) >= 0.9")
    assert condition.metrics == {MetricRef("best", "val_acc")}


def test_function_words_without_parenthesis_are_metric_names() -> None:
    condition = parse_condition("best > 1 and max >= min and last != 0")
    assert condition.metrics == {
        MetricRef("last", "best"),
        MetricRef("last", "max"),
        MetricRef("last", "min"),
        MetricRef("last", "last"),
    }


def test_keyword_prefixes_are_metric_names() -> None:
    condition = parse_condition("android > 1 and order < 2 and nothing == 3")
    names = {ref.metric for ref in condition.metrics}
    assert names == {"android", "order", "nothing"}
    assert parse_condition("not/x > 1").metrics == {MetricRef("last", "not/x")}


def test_metric_ref_str() -> None:
    assert str(MetricRef("last", "val_acc")) == "val_acc"
    assert str(MetricRef("best", "val_acc")) == "best(val_acc)"
    assert str(MetricRef("max", "epoch")) == "max(epoch)"


def test_metric_ref_is_frozen_and_hashable() -> None:
    ref = MetricRef("min", "loss")
    with pytest.raises(AttributeError):
        ref.metric = "other"  # type: ignore[misc]
    assert {ref, MetricRef("min", "loss")} == {ref}


def test_metrics_property_collects_every_reference() -> None:
    condition = parse_condition(
        "not (best(val_acc) < 0.8) or max(epoch) >= 10 and val_acc > train_acc and val_acc > 0.5"
    )
    assert condition.metrics == frozenset(
        {
            MetricRef("best", "val_acc"),
            MetricRef("max", "epoch"),
            MetricRef("last", "val_acc"),
            MetricRef("last", "train_acc"),
        }
    )
    assert isinstance(condition.metrics, frozenset)


def test_plain_and_function_refs_of_one_metric_are_distinct() -> None:
    condition = parse_condition("loss < 1 and min(loss) < 1 and last(loss) < 1")
    assert condition.metrics == {MetricRef("last", "loss"), MetricRef("min", "loss")}


# --- evaluation and reasons ----------------------------------------------------


def test_reasons_text() -> None:
    assert run("val_acc >= 0.9", val_acc=0.95) == (
        True,
        ["val_acc = 0.95 >= 0.9: true"],
    )
    assert run("best(val_loss) < 0.3", **{"best(val_loss)": 0.41}) == (
        False,
        ["best(val_loss) = 0.41 < 0.3: false"],
    )


def test_reasons_are_in_source_order_and_nothing_short_circuits() -> None:
    ok, reasons = run(
        "a > 1 and b > 1 or not (c == 3) or max(d) != 0",
        a=0,
        b=5,
        c=3,
        **{"max(d)": 1},
    )
    assert ok is True
    assert reasons == [
        "a = 0 > 1: false",
        "b = 5 > 1: true",
        "c = 3 == 3: true",
        "max(d) = 1 != 0: true",
    ]


def test_or_evaluates_everything_even_when_first_is_true() -> None:
    seen: list[str] = []

    def resolve(ref: MetricRef) -> float:
        seen.append(str(ref))
        return 1.0

    ok, reasons = parse_condition("a > 0 or b > 0 or c > 0").evaluate(resolve)
    assert ok is True
    assert seen == ["a", "b", "c"]
    assert len(reasons) == 3


def test_and_evaluates_everything_even_when_first_is_false() -> None:
    ok, reasons = run("a > 1 and b > 1", a=0, b=2)
    assert ok is False
    assert reasons == ["a = 0 > 1: false", "b = 2 > 1: true"]


def test_value_formatting() -> None:
    assert run("x > 0", x=1e-05)[1] == ["x = 1e-05 > 0: true"]
    assert run("x > 0", x=INF)[1] == ["x = inf > 0: true"]
    assert run("x > 0", x=-INF)[1] == ["x = -inf > 0: false"]
    assert run("x > 0", x=12)[1] == ["x = 12 > 0: true"]
    assert run("x < 1e-3", x=0.1)[1] == ["x = 0.1 < 0.001: false"]
    assert run("x == 2.5E+4", x=25000.0)[1] == ["x = 25000 == 25000: true"]


@pytest.mark.parametrize(
    ("op", "expected"),
    [("<", False), ("<=", False), (">", False), (">=", False), ("==", False), ("!=", True)],
)
def test_nan_is_only_unequal(op: str, expected: bool) -> None:
    ok, reasons = run(f"x {op} 1", x=NAN)
    assert ok is expected
    assert reasons == [f"x = nan {op} 1: {'true' if expected else 'false'}"]
    assert holds(f"x {op} y", x=NAN, y=NAN) is expected


def test_not_of_nan_comparison_is_true() -> None:
    assert holds("not (x > 1)", x=NAN) is True
    assert math.isnan(NAN)


def test_resolve_errors_propagate() -> None:
    class MissingError(Exception):
        pass

    def resolve(ref: MetricRef) -> float:
        raise MissingError(str(ref))

    with pytest.raises(MissingError, match=r"best\(x\)"):
        parse_condition("best(x) > 1").evaluate(resolve)


def test_resolve_may_return_an_int() -> None:
    condition = parse_condition("max(epoch) >= 10")
    assert condition.evaluate(lambda ref: 12) == (True, ["max(epoch) = 12 >= 10: true"])


def test_condition_can_be_evaluated_twice() -> None:
    condition = parse_condition("a > 1 and b > 1")
    first = condition.evaluate(lambda ref: 2.0)
    second = condition.evaluate(lambda ref: 2.0)
    assert first == second == (True, ["a = 2 > 1: true", "b = 2 > 1: true"])


# --- syntax errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ("val_acc >= ", 12, "expected a metric or number"),
        ("val_acc >> 0.9", 10, "expected a metric or number"),
        ("val_acc >= 0.9 and", 19, "expected a metric or number"),
        ("val_acc >= 0.9 or ", 19, "expected a metric or number"),
        ("(val_acc > 1", 1, "unbalanced parenthesis"),
        ("((a > 1) and (b > 1)", 1, "unbalanced parenthesis"),
        ("(a > 1 and (b > 1)", 1, "unbalanced parenthesis"),
        ("val_acc > 1)", 12, "unbalanced parenthesis"),
        ("(a > 1))", 8, "unbalanced parenthesis"),
        ("a > )", 5, "unbalanced parenthesis"),
        ("val_acc $ 1", 9, "unexpected character '$'"),
        ("val_acc > 1 & b > 1", 13, "unexpected character '&'"),
        ("val_acc = 1", 9, "unexpected character '='"),
        ("val_acc ! 1", 9, "unexpected character '!'"),
        ("val_acc => 1", 9, "unexpected character '='"),
        ("val_acc > 'x'", 11, "unexpected character"),
        ("avg(x) > 1", 1, "unknown function 'avg'"),
        ("x > mean (y)", 5, "unknown function 'mean'"),
        ("a < b < c", 7, "chained comparisons are not supported"),
        ("1 < 2 <= 3", 7, "chained comparisons are not supported"),
        ("", 1, "empty condition"),
        ("   \t ", 1, "empty condition"),
        ("val_acc", 8, "expected a comparison operator after 'val_acc'"),
        ("0.9", 4, "expected a comparison operator after '0.9'"),
        ("best(x)", 8, "expected a comparison operator after 'best(x)'"),
        ("val_acc 0.9", 9, "expected a comparison operator after 'val_acc'"),
        ("a > 1 and b", 12, "expected a comparison operator after 'b'"),
        ("and a > 1", 1, "unexpected 'and'"),
        ("a > 1 and and b > 1", 11, "unexpected 'and'"),
        ("a > 1 and or b > 1", 11, "unexpected 'or'"),
        ("a > and", 5, "unexpected 'and'"),
        ("not", 4, "expected a metric or number"),
        ("a > 1 not b > 1", 7, "unexpected 'not'"),
        ("a > 1 b > 1", 7, "unexpected 'b'"),
        ("(a > 1 b)", 8, "unexpected 'b'"),
        ("(a > 1) > 2", 9, "unexpected '>'"),
        ("()", 2, "expected a metric or number"),
        ("> 1", 1, "expected a metric or number"),
        ("best() > 1", 6, "expected a metric name in best()"),
        ("best(1) > 1", 6, "expected a metric name in best()"),
        ("best(max(x)) > 1", 6, "expected a metric name in best()"),
        ("x > best(", 10, "expected a metric name in best()"),
        ("best(x > 1", 8, "expected ')' after 'x'"),
        ("best(x y) > 1", 8, "expected ')' after 'x'"),
        ("best(x", 1, "unbalanced parenthesis"),
        ("val_acc > 0.9 and val_acc € 1", 27, "unexpected character '€'"),
    ],
)
def test_syntax_errors(text: str, column: int, reason: str) -> None:
    err = error(text)
    assert err.column == column, err
    assert reason in err.reason, err
    assert err.text == text


def test_error_message_points_at_the_column() -> None:
    with pytest.raises(InvalidCondition, match="expected a metric or number") as info:
        parse_condition("val_acc >= ")
    assert info.value.column == 12
    assert str(info.value).endswith("\n  " + " " * 11 + "^")


def test_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unexpected character"):
        parse_condition("a > 1 ; b > 1")


def test_first_error_wins() -> None:
    # the missing operand at column 5 comes before the bad character at column 13
    err = error("a > and b > $")
    assert err.column == 5
    # and a bad character before a grammar error is reported first
    err = error("a $ > > 1")
    assert err.column == 3


def test_unbalanced_parenthesis_reason_names_the_opening_column() -> None:
    err = error("a > 1 and (b > 1")
    assert err.column == 11
    assert "column 11" in err.reason


def test_no_eval() -> None:
    for text in (
        "__import__('os') > 1",
        "__import__('os').system('true') > 1",
        "exec('1') > 1",
        "x.__class__ > 1 or (lambda: 1)() > 0",
        "[1][0] > 0",
        "1 + 1 > 1",
        "x > 1 if True else 0",
    ):
        with pytest.raises(InvalidCondition):
            parse_condition(text)
    err = error("__import__('os') > 1")
    assert err.column == 1
    assert "unknown function '__import__'" in err.reason


def test_arithmetic_is_refused() -> None:
    err = error("val/acc > train/acc - 0.1")
    assert err.column == 21
    assert "unexpected character '-'" in err.reason
    err = error("val/acc > train/acc * 2")
    assert err.column == 21
    assert "unexpected character '*'" in err.reason


# --- limits ------------------------------------------------------------------------


def test_long_condition_is_refused() -> None:
    text = " and ".join(["a > 1"] * 1000)
    assert len(text) > 4096
    err = error(text)
    assert err.column == 4097
    assert "too long" in err.reason


def test_condition_of_exactly_4096_characters_is_accepted() -> None:
    text = "a > 1" + " " * 4091
    assert len(text) == 4096
    assert holds(text, a=2) is True
    err = error(text + " ")
    assert err.column == 4097


def test_garbage_over_the_limit_is_refused_by_length_first() -> None:
    err = error("$" * 5000)
    assert err.column == 4097


def test_nesting_at_the_limit_is_accepted() -> None:
    text = "(" * 100 + "a > 1" + ")" * 100
    condition = parse_condition(text)
    assert condition.evaluate(lambda ref: 2.0) == (True, ["a = 2 > 1: true"])
    assert condition.metrics == {MetricRef("last", "a")}


def test_deep_parentheses_are_refused() -> None:
    text = "(" * 101 + "a > 1" + ")" * 101
    err = error(text)
    assert err.column == 101
    assert "nesting too deep" in err.reason


def test_very_deep_unclosed_parentheses_never_recurse_out() -> None:
    err = error("(" * 4000)
    assert err.column == 101
    assert "nesting too deep" in err.reason


def test_deep_not_is_refused() -> None:
    assert holds("not " * 100 + "a > 1", a=2) is True
    assert holds("not " * 99 + "a > 1", a=2) is False
    err = error("not " * 101 + "a > 1")
    assert err.column == 401
    assert "nesting too deep" in err.reason


def test_mixed_not_and_parentheses_count_together() -> None:
    parse_condition("not (" * 50 + "a > 1" + ")" * 50)
    err = error("not (" * 51 + "a > 1" + ")" * 51)
    assert err.column == 251  # the 101st level is the 51st "not"
    assert "nesting too deep" in err.reason


def test_many_flat_terms_are_fine() -> None:
    text = " or ".join(f"m{i} > {i}" for i in range(250))
    assert len(text) <= 4096
    condition = parse_condition(text)
    assert len(condition.metrics) == 250
    ok, reasons = condition.evaluate(lambda ref: 0.0)
    assert ok is False
    assert len(reasons) == 250
    assert reasons[0] == "m0 = 0 > 0: false"
    assert reasons[-1] == "m249 = 0 > 249: false"
