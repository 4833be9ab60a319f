"""ensign: track what a training run consumes and produces, and promote what earns it.

The public surface::

    from ensign import tracking                 # tracking.init(), log_*, promote_*, end()
    from ensign.client import ProjectClient, RunClient
    from ensign import Promotion, Stages
"""

from ensign import errors
from ensign.errors import EnsignError
from ensign.promotion.spec import Promotion
from ensign.records import (
    ArtifactRef,
    ArtifactVersion,
    MetricPoint,
    Project,
    PromotionDecision,
    Run,
    RunStatus,
    StageCondition,
    Stages,
)

__version__ = "0.1.0"

__all__ = [
    "ArtifactRef",
    "ArtifactVersion",
    "EnsignError",
    "MetricPoint",
    "Project",
    "Promotion",
    "PromotionDecision",
    "Run",
    "RunStatus",
    "StageCondition",
    "Stages",
    "__version__",
    "errors",
    "tracking",
]


def __getattr__(name: str) -> object:
    # ``ensign.tracking`` opens databases on use; import it only when asked for.
    if name == "tracking":
        import importlib

        return importlib.import_module("ensign.tracking")
    raise AttributeError(f"module 'ensign' has no attribute {name!r}")
