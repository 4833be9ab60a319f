"""API tokens of ``ensign server``: stored as sha256 hashes, each with a role and a project.

A token is shown once, when it is made; only its hash is kept, so a stolen database
gives no working token. A token with no project covers every project (the
administrator's token that the first start prints is one).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid as uuidlib
from dataclasses import dataclass

import sqlalchemy as sa

from ensign.errors import ConfigurationError
from ensign.registry.sql.runs import project_row
from ensign.registry.sql.schema import projects, tokens

__all__ = [
    "ROLES",
    "TOKEN_PREFIX",
    "TokenRecord",
    "create_token",
    "find_token",
    "has_admin_token",
    "hash_token",
    "role_rank",
]

#: Roles, weakest first: each one may do what the ones before it may.
ROLES = ("read", "write", "admin")
#: Every token starts with this, so secret scanners can spot one.
TOKEN_PREFIX = "ens_"


@dataclass(frozen=True)
class TokenRecord:
    """What the server knows of a token.

    Attributes:
        id: The token's id (not the secret).
        project_id: The project it covers; ``None`` for every project.
        project_key: That project's key, when it has one.
        role: ``read``, ``write`` or ``admin``.
        expires_at: Seconds since the epoch, or ``None`` for a token that never expires.
    """

    id: str
    project_id: str | None
    project_key: str | None
    role: str
    expires_at: float | None


def role_rank(role: str) -> int:
    """Return the strength of a role (``read`` 0, ``write`` 1, ``admin`` 2).

    Raises:
        ConfigurationError: for an unknown role; lists the valid ones.
    """
    try:
        return ROLES.index(role)
    except ValueError:
        raise ConfigurationError(
            f"unknown role {role!r}; valid roles: {', '.join(ROLES)}"
        ) from None


def hash_token(token: str) -> str:
    """Return the sha256 hex digest a token is stored as."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    conn: sa.Connection,
    *,
    role: str,
    project: str | None = None,
    name: str | None = None,
    expires_in: float | None = None,
) -> str:
    """Store a new token and return it (the only time it is seen).

    Args:
        conn: A connection inside a write transaction.
        role: ``read``, ``write`` or ``admin``.
        project: The project key or id it covers; ``None`` for every project.
        name: A label for people.
        expires_in: Seconds until it expires; ``None`` for never.

    Raises:
        ConfigurationError: an unknown role or a non-positive lifetime.
        ProjectNotFound: ``project`` does not exist.
    """
    role_rank(role)
    if expires_in is not None and expires_in <= 0:
        raise ConfigurationError(f"a token's lifetime must be positive, got {expires_in}")
    project_id = project_row(conn, project).id if project is not None else None
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = time.time()
    conn.execute(
        tokens.insert().values(
            id=uuidlib.uuid4().hex,
            token_hash=hash_token(token),
            project_id=project_id,
            role=role,
            name=name,
            created_at=now,
            expires_at=None if expires_in is None else now + expires_in,
        )
    )
    return token


def find_token(conn: sa.Connection, token: str) -> TokenRecord | None:
    """Return the record of a token, ``None`` when no stored token has its hash."""
    row = conn.execute(
        sa.select(tokens, projects.c.key.label("project_key"))
        .outerjoin(projects, projects.c.id == tokens.c.project_id)
        .where(tokens.c.token_hash == hash_token(token))
    ).first()
    if row is None:
        return None
    return TokenRecord(row.id, row.project_id, row.project_key, row.role, row.expires_at)


def has_admin_token(conn: sa.Connection) -> bool:
    """Return whether an unexpired administrator token for every project exists."""
    row = conn.execute(
        sa.select(tokens.c.id)
        .where(tokens.c.project_id.is_(None), tokens.c.role == "admin")
        .where(sa.or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > time.time()))
        .limit(1)
    ).first()
    return row is not None
