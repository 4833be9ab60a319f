"""What the integration needs from Lightning, for either of its two package names."""

from __future__ import annotations

from lightning.pytorch.utilities import rank_zero_only

__all__ = ["global_rank", "is_a"]

_NAMESPACES = ("lightning.pytorch.", "pytorch_lightning.")


def is_a(thing: object, name: str) -> bool:
    """Whether ``thing`` is a Lightning ``name`` of either namespace, without importing them.

    ``lightning.pytorch`` and ``pytorch_lightning`` hold twin classes of the same names.
    """
    return any(
        cls.__name__ == name and cls.__module__.startswith(_NAMESPACES)
        for cls in type(thing).__mro__
    )


def global_rank() -> int:
    """The process's global rank, as Lightning sets it (0 outside distributed training)."""
    return int(getattr(rank_zero_only, "rank", 0))
