"""Conditional promotion: the condition grammar, the decision, and registering a version."""

from ensign.promotion.grammar import Condition, MetricRef, parse_condition
from ensign.promotion.spec import Promotion, as_promotion

__all__ = ["Condition", "MetricRef", "Promotion", "as_promotion", "parse_condition"]
