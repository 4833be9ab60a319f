"""The errors ``ensign_sklearn`` raises, part of ensign's one exception tree."""

from __future__ import annotations

from collections.abc import Iterable

from ensign.errors import EnsignError, NotFound, UnknownMetric

__all__ = ["EstimatorNotSaved", "MetricNeverLogged"]


class EstimatorNotSaved(EnsignError, TypeError):
    """The estimator cannot be pickled, so its model file cannot be written.

    Raised before fitting when the unfitted estimator already cannot be pickled (a lambda,
    a lock, an open file among its attributes), else after fitting. The run it was logging
    to is left open and usable.

    Attributes:
        estimator: The estimator's class name.
    """

    def __init__(self, estimator: str, reason: BaseException) -> None:
        self.estimator = estimator
        super().__init__(
            f"cannot save the {estimator} estimator: it cannot be pickled ({reason}). "
            "Replace lambdas and local functions with module-level functions and drop "
            "locks, connections or open files from its attributes, or pass log_model=False"
        )


class MetricNeverLogged(UnknownMetric):
    """A ``promote`` condition names a metric that the fit will never log.

    Raised before fitting. A subclass of :class:`~ensign.errors.UnknownMetric`.

    Attributes:
        metric: The metric the condition names.
        logged: The metrics the fit will log.
    """

    def __init__(self, metric: str, logged: Iterable[str], why: str) -> None:
        self.metric = metric
        self.logged = tuple(sorted(logged))
        listed = ", ".join(self.logged) if self.logged else "none"
        NotFound.__init__(
            self,
            f"promote names metric {metric!r}, which this fit never logs ({why}); "
            f"it logs: {listed}",
        )
