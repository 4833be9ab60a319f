"""``autolog()``: log every scikit-learn fit without changing the training code.

``autolog()`` replaces the ``fit`` that each :class:`~sklearn.base.BaseEstimator`
subclass defines with a wrapper that logs the fit like
:func:`~ensign_sklearn.log_estimator` (training data only: scores are ``train_*``, plus a
search's ``best_cv_score`` and ``cv_*``). Classes defined later are wrapped as they are
created. ``autolog(disable=True)`` puts every original ``fit`` back, the very same objects.

Only the outermost fit is logged: the fits a ``Pipeline`` or a ``GridSearchCV`` makes
inside its own ``fit`` are not logged again (nor fits in other threads of the process
while a logged fit runs, which covers joblib's threading backend).
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sklearn.base import BaseEstimator

from ensign.errors import ConfigurationError
from ensign.names import check_project_key
from ensign.promotion.spec import Promotion, as_promotion
from ensign_sklearn import _guard
from ensign_sklearn.core import _Request, _track
from ensign_sklearn.scores import plan_metrics

__all__ = ["autolog", "is_autologging"]

_MARK = "__ensign_autolog__"


@dataclass(frozen=True)
class _Config:
    project: str | None
    tracking_uri: str | None
    promotion: Promotion | None
    log_model: bool


_lock = threading.RLock()
_config: _Config | None = None
#: Each patched class and the ``fit`` it had before.
_originals: dict[type, Any] = {}
#: ``BaseEstimator.__dict__`` had its own ``__init_subclass__``: that object, else None.
_hook_state: dict[str, Any] = {}


def is_autologging() -> bool:
    """Whether :func:`autolog` is enabled."""
    return _config is not None


def _split_data(
    original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Any] | None:
    """Return ``(X, y)`` from a ``fit`` call, or ``None`` when they cannot be told apart."""
    try:
        parameters = list(inspect.signature(original).parameters.values())
    except (TypeError, ValueError):
        return None
    positional = [
        p
        for p in parameters[1:]
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if not positional:
        return None
    names = [p.name for p in positional]
    values = dict(zip(names, args, strict=False))
    for key in names:
        if key in kwargs:
            values[key] = kwargs[key]
    if names[0] not in values:
        return None
    y_name = "y" if "y" in names else (names[1] if len(names) > 1 else None)
    return values[names[0]], values.get(y_name) if y_name else None


def _logged_fit(
    config: _Config,
    original: Callable[..., Any],
    estimator: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    data = _split_data(original, args, kwargs)
    if data is None:
        return original(estimator, *args, **kwargs)
    x, y = data
    promotion = config.promotion
    if promotion is not None:
        plan = plan_metrics(estimator, has_targets=y is not None, has_evaluation=False)
        if not plan.predictor:
            promotion = None  # transformers and clusterers log no scores to promote on
    request = _Request(
        estimator=estimator,
        x_train=x,
        y_train=y,
        x_eval=None,
        y_eval=None,
        run=None,
        project=config.project,
        tracking_uri=config.tracking_uri,
        promotion=promotion,
        name="model",
        log_model=config.log_model,
        fit=lambda: original(estimator, *args, **kwargs),
    )
    return _track(request)[1]


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        config = _config
        if config is None or _guard.busy():
            return original(self, *args, **kwargs)
        return _logged_fit(config, original, self, args, kwargs)

    setattr(fit, _MARK, True)
    return fit


def _patch_class(cls: type) -> None:
    current = cls.__dict__.get("fit")
    if cls in _originals or not inspect.isfunction(current) or getattr(current, _MARK, False):
        return
    _originals[cls] = current
    setattr(cls, "fit", _wrap(current))  # noqa: B010 (the name is the point)


def _subclasses(root: type) -> list[type]:
    seen: dict[type, None] = {}
    todo: list[type] = [root]
    while todo:
        cls = todo.pop()
        subclasses: list[type] = cls.__subclasses__()
        for sub in subclasses:
            if sub not in seen:
                seen[sub] = None
                todo.append(sub)
    return list(seen)


def _install_hook() -> None:
    if "installed" in _hook_state:
        return
    own = BaseEstimator.__dict__.get("__init_subclass__")
    _hook_state["installed"] = True
    _hook_state["own"] = own

    def init_subclass(cls: type, /, **kwargs: Any) -> None:
        if own is not None:
            getattr(own, "__func__", own)(cls, **kwargs)
        else:
            super(BaseEstimator, cls).__init_subclass__(**kwargs)
        with _lock:
            if _config is not None:
                _patch_class(cls)

    BaseEstimator.__init_subclass__ = classmethod(init_subclass)


def _remove_hook() -> None:
    if "installed" not in _hook_state:
        return
    own = _hook_state.pop("own")
    del _hook_state["installed"]
    if own is not None:
        BaseEstimator.__init_subclass__ = own
    else:
        delattr(BaseEstimator, "__init_subclass__")


def autolog(
    project: str | None = None,
    tracking_uri: str | None = None,
    promote: str | Promotion | None = None,
    disable: bool = False,
    log_model: bool = True,
) -> None:
    """Log every scikit-learn fit (the outermost one) until ``autolog(disable=True)``.

    A fit logs into the active run of :mod:`ensign.tracking` when there is one, else into a
    run of its own (named after the estimator class) that ends with the fit: ``failed``
    when the fit raises, whose exception propagates unchanged. What is logged is what
    :func:`~ensign_sklearn.log_estimator` logs, without evaluation data. Calling
    ``autolog`` again replaces the settings.

    Args:
        project: The project of the runs fits start; else ``ENSIGN_PROJECT``, else
            ``default``.
        tracking_uri: Their tracking store.
        promote: A condition or :class:`~ensign.Promotion` applied after each successful
            fit of a classifier, regressor or search (transformers and clusterers are not
            promoted). A metric such a fit never logs raises
            :class:`~ensign_sklearn.MetricNeverLogged` before it starts.
        disable: Restore every original ``fit`` and stop logging.
        log_model: Save each fitted estimator as a model ref.

    Raises:
        InvalidCondition: ``promote`` does not parse.
        InvalidName: ``project`` is not a valid project key.
        ConfigurationError: ``promote`` with ``log_model=False``.
    """
    global _config
    with _lock:
        if disable:
            _config = None
            for cls, original in _originals.items():
                setattr(cls, "fit", original)  # noqa: B010
            _originals.clear()
            _remove_hook()
            return
        promotion = as_promotion(promote)
        if promotion is not None and not log_model:
            raise ConfigurationError(
                "promote needs log_model=True: a model version carries the saved model"
            )
        if project is not None:
            check_project_key(project)
        _config = _Config(project, tracking_uri, promotion, log_model)
        _install_hook()
        for cls in [BaseEstimator, *_subclasses(BaseEstimator)]:
            _patch_class(cls)
