"""The small query language of ``list_*`` calls: ``stage:production, tags:prod, name:v1|v2``."""

from __future__ import annotations

from dataclasses import dataclass

from ensign.errors import InvalidQuery

__all__ = ["Filter", "Sort", "parse_query", "parse_sort"]


@dataclass(frozen=True)
class Filter:
    """One term: ``field`` must equal one of ``values`` (or none of them when ``negate``)."""

    field: str
    values: tuple[str, ...]
    negate: bool = False


@dataclass(frozen=True)
class Sort:
    """Order by ``field``, descending when ``descending``."""

    field: str
    descending: bool


def parse_query(query: str | None, fields: frozenset[str]) -> list[Filter]:
    """Parse ``query`` into filters over ``fields``.

    Terms are separated by ``,``; each is ``field:value`` where ``value`` may list
    alternatives with ``|``; ``field:~value`` negates.  Terms must all hold.

    Raises:
        InvalidQuery: for a malformed term or a field not in ``fields``.
    """
    if not query or not query.strip():
        return []
    filters = []
    for raw in query.split(","):
        term = raw.strip()
        if not term:
            continue
        name, sep, value = term.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise InvalidQuery(f"malformed query term {term!r}: use field:value")
        if name not in fields:
            raise InvalidQuery(
                f"unknown query field {name!r}; known fields: {', '.join(sorted(fields))}"
            )
        negate = value.startswith("~")
        values = tuple(v.strip() for v in value.lstrip("~").split("|") if v.strip())
        if not values:
            raise InvalidQuery(f"malformed query term {term!r}: no value")
        filters.append(Filter(name, values, negate))
    return filters


def parse_sort(sort: str | None, fields: frozenset[str], default: str) -> Sort:
    """Parse ``sort`` (``field`` or ``-field`` for descending) over ``fields``.

    Raises:
        InvalidQuery: for a field not in ``fields``.
    """
    text = (sort or default).strip()
    descending = text.startswith("-")
    name = text.lstrip("-+").strip()
    if name not in fields:
        raise InvalidQuery(f"cannot sort by {name!r}; sortable fields: {', '.join(sorted(fields))}")
    return Sort(name, descending)
