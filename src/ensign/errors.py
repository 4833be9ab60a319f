"""The one exception tree of ensign and the table that maps it to HTTP statuses.

Every error ensign raises on purpose derives from :class:`EnsignError`. Errors that are
also a lookup failure or a bad value derive from :class:`LookupError` or
:class:`ValueError` too, so code that already catches those keeps working::

    EnsignError
    ├── ConfigurationError (ValueError)
    │   └── StoreNotAvailable            a store URL whose fsspec package is missing
    ├── InvalidName (ValueError)         project or version names
    ├── InvalidStage (ValueError)        lists the valid stages
    ├── InvalidMetric (ValueError)
    ├── InvalidCondition (ValueError)    carries the column of a syntax error
    ├── InvalidQuery (ValueError)        a list filter or sort that cannot be used
    ├── NotFound (LookupError)
    │   ├── ProjectNotFound
    │   ├── RunNotFound
    │   ├── VersionNotFound
    │   ├── ArtifactNotFound             a ref to a missing path or a missing ref name
    │   └── UnknownMetric                names the metric and lists the logged ones
    ├── Conflict
    │   ├── VersionExists
    │   └── TargetNotEmpty               pulling into a non-empty folder without force
    ├── IntegrityError
    │   └── DigestMismatch               names the file whose bytes do not match
    ├── RunEnded                         logging after ``end()``
    ├── BackgroundError                  what the writer or upload pool failed with
    ├── InvalidRequest (ValueError)      a request body with unknown or malformed fields
    │   └── PayloadTooLarge              a body or bundle over the server's size limit
    ├── InvalidBundle (ValueError)       a pushed bundle: unsafe entry, bad config or goals
    ├── Unauthorized                     no token, or a token the server does not know
    ├── Forbidden                        a token without the role or project, a bad signed URL
    ├── ServerUnavailable (ConnectionError)  the server cannot be reached (after retries)
    └── ArtifactsException               the artifact helper (``ensign.artifacts``)
        ├── NoAdvertisedProviders        the store advertises no artifact provider
        ├── UnsupportedArtifactsType     a provider type ensign has no helper for
        ├── NoDefaultConfig              a config key neither given nor advertised
        ├── InvalidProviderConfig (ValueError)
        ├── InvalidArtifactArgument (ValueError)   an object name, URI or expiry refused
        └── ProviderSpecificException    the store itself failed (missing bucket, denied)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = [
    "HTTP_STATUS",
    "ArtifactNotFound",
    "ArtifactsException",
    "BackgroundError",
    "ConfigurationError",
    "Conflict",
    "DigestMismatch",
    "EnsignError",
    "Forbidden",
    "IntegrityError",
    "InvalidArtifactArgument",
    "InvalidBundle",
    "InvalidCondition",
    "InvalidMetric",
    "InvalidName",
    "InvalidProviderConfig",
    "InvalidQuery",
    "InvalidRequest",
    "InvalidStage",
    "NoAdvertisedProviders",
    "NoDefaultConfig",
    "NotFound",
    "PayloadTooLarge",
    "ProjectNotFound",
    "ProviderSpecificException",
    "RunEnded",
    "RunNotFound",
    "ServerUnavailable",
    "StoreNotAvailable",
    "TargetNotEmpty",
    "Unauthorized",
    "UnknownMetric",
    "UnsupportedArtifactsType",
    "VersionExists",
    "VersionNotFound",
    "http_status_for",
]


class EnsignError(Exception):
    """Root of every error ensign raises on purpose."""


class ConfigurationError(EnsignError, ValueError):
    """A tracking URI, artifacts URI or option that cannot be used."""


class StoreNotAvailable(ConfigurationError):
    """A store URL whose protocol needs a package that is not installed.

    Attributes:
        protocol: The URL scheme, e.g. ``gs``.
        extra: The ensign extra that installs support for it, e.g. ``gcs``.
    """

    def __init__(self, protocol: str, extra: str | None, detail: str = "") -> None:
        self.protocol = protocol
        self.extra = extra
        hint = f"pip install 'ensign[{extra}]'" if extra else "install an fsspec package for it"
        message = f"storage protocol {protocol!r} is not available: {hint}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class InvalidName(EnsignError, ValueError):
    """A project key or version name that breaks the naming rules."""


class InvalidStage(EnsignError, ValueError):
    """A stage that is not one of the known stages.

    Attributes:
        stage: The stage that was asked for.
        valid: The stages that exist.
    """

    def __init__(self, stage: str, valid: Sequence[str]) -> None:
        self.stage = stage
        self.valid = tuple(valid)
        super().__init__(f"unknown stage {stage!r}; valid stages: {', '.join(self.valid)}")


class InvalidMetric(EnsignError, ValueError):
    """A metric name or value that cannot be logged."""


class InvalidCondition(EnsignError, ValueError):
    """A promotion condition that cannot be parsed.

    Attributes:
        text: The whole condition.
        column: The 1-based column where parsing failed.
    """

    def __init__(self, reason: str, text: str, column: int) -> None:
        self.reason = reason
        self.text = text
        self.column = column
        pointer = " " * (column - 1) + "^"
        super().__init__(f"{reason} at column {column}\n  {text}\n  {pointer}")


class InvalidQuery(EnsignError, ValueError):
    """A ``query`` or ``sort`` of a ``list_*`` call that names an unknown field or is malformed."""


class NotFound(EnsignError, LookupError):
    """Something that was asked for by name or id does not exist."""


class ProjectNotFound(NotFound):
    """No project has this key or id."""


class RunNotFound(NotFound):
    """No run has this id."""


class VersionNotFound(NotFound):
    """No artifact or model version has this name in the project."""


class ArtifactNotFound(NotFound):
    """A path that does not exist, or a lineage entry the run does not have."""


class UnknownMetric(NotFound):
    """A condition names a metric the run never logged.

    Attributes:
        metric: The metric that was asked for.
        logged: The metrics the run did log.
    """

    def __init__(self, metric: str, logged: Iterable[str]) -> None:
        self.metric = metric
        self.logged = tuple(sorted(logged))
        listed = ", ".join(self.logged) if self.logged else "none"
        super().__init__(f"unknown metric {metric!r}; the run logged: {listed}")


class Conflict(EnsignError):
    """The request clashes with what already exists."""


class VersionExists(Conflict):
    """A version name is taken and ``force`` was not given."""


class TargetNotEmpty(Conflict):
    """A pull into a folder that already holds files, without ``force``."""


class IntegrityError(EnsignError):
    """Stored bytes or records are not what they claim to be."""


class DigestMismatch(IntegrityError):
    """The bytes of a file do not hash to the digest recorded for them.

    Attributes:
        path: The file (or object) whose bytes do not match.
        expected: The recorded sha256.
        actual: The sha256 of the bytes found.
    """

    def __init__(self, path: str, expected: str, actual: str) -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(f"digest mismatch for {path}: expected sha256 {expected}, got {actual}")


class RunEnded(EnsignError):
    """A log call on a run that has already ended."""


class BackgroundError(EnsignError):
    """Work that the background writer or upload pool could not do.

    Raised by ``end()`` (or ``flush()``) with the first failure as ``__cause__``;
    ``errors`` holds every failure in the order they happened.
    """

    def __init__(self, errors: Sequence[BaseException]) -> None:
        self.errors = tuple(errors)
        first = self.errors[0] if self.errors else None
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        super().__init__(f"background work failed: {first!r}{more}")


class InvalidRequest(EnsignError, ValueError):
    """A request the server refuses as malformed: unknown fields, wrong types, bad JSON."""


class PayloadTooLarge(InvalidRequest):
    """A request body or pushed bundle over the server's size limit.

    Attributes:
        limit: The limit in bytes.
    """

    def __init__(self, message: str, limit: int | None = None) -> None:
        self.limit = limit
        super().__init__(message)


class InvalidBundle(EnsignError, ValueError):
    """A pushed bundle that cannot be evaluated.

    The message names what is wrong: the tar entry that is unsafe (absolute, ``..``, a
    link or a device), the config field or goal that is malformed, the measurement that
    is unknown (with the known ones), the dataset or column that is missing.

    Attributes:
        where: The entry, file or field at fault, when one is.
    """

    def __init__(self, message: str, where: str | None = None) -> None:
        self.where = where
        super().__init__(message)


class Unauthorized(EnsignError):
    """No bearer token was sent, or the server knows no such (unexpired) token."""


class Forbidden(EnsignError):
    """The token lacks the role or the project, or a signed URL was tampered with or expired."""


class ServerUnavailable(EnsignError, ConnectionError):
    """The server could not be reached, or kept answering 5xx, after every retry."""


# --- the artifact helper (ensign.artifacts); names as in openEO's artifacts API ------------


class ArtifactsException(EnsignError):
    """Family of the errors of the artifact helper (:mod:`ensign.artifacts`)."""


class NoAdvertisedProviders(ArtifactsException):
    """The store (or server) advertises no provider for artifact storage.

    Attributes:
        where: The tracking URI or store that was asked.
    """

    def __init__(self, where: str, detail: str = "") -> None:
        self.where = where
        message = f"{where} does not advertise providers for managing artifacts"
        super().__init__(f"{message}: {detail}" if detail else message)


class UnsupportedArtifactsType(ArtifactsException):
    """A provider type that has no helper here, or whose package is not installed.

    Attributes:
        type_id: The provider type, e.g. ``S3Config``.
    """

    def __init__(self, type_id: str, detail: str = "") -> None:
        self.type_id = type_id
        message = f"artifacts provider type {type_id!r} is not supported"
        super().__init__(f"{message}: {detail}" if detail else message)


class NoDefaultConfig(ArtifactsException):
    """A config key that the caller did not give and the provider does not advertise.

    Attributes:
        key: The missing key.
    """

    def __init__(self, key: str, type_id: str = "") -> None:
        self.key = key
        self.type_id = type_id
        of = f" of {type_id}" if type_id else ""
        super().__init__(
            f"no value for {key!r}{of}: the provider advertises none and the config gives none"
        )


class InvalidProviderConfig(ArtifactsException, ValueError):
    """A provider config that cannot be used (missing fields, wrong types, unknown keys)."""


class InvalidArtifactArgument(ArtifactsException, ValueError):
    """An object name, storage URI or expiry that the artifact helper refuses."""


class ProviderSpecificException(ArtifactsException):
    """The store behind a provider failed: a missing bucket, refused credentials, ...

    The message names the store; the provider's own error is the ``__cause__``.
    """


# One table maps the tree to HTTP statuses; the most specific class wins.
HTTP_STATUS: dict[type[EnsignError], int] = {
    EnsignError: 500,
    ConfigurationError: 400,
    InvalidName: 400,
    InvalidStage: 400,
    InvalidMetric: 400,
    InvalidCondition: 400,
    InvalidQuery: 400,
    NotFound: 404,
    Conflict: 409,
    IntegrityError: 422,
    RunEnded: 409,
    InvalidRequest: 400,
    PayloadTooLarge: 413,
    InvalidBundle: 400,
    Unauthorized: 401,
    Forbidden: 403,
    ServerUnavailable: 503,
    BackgroundError: 500,
    ArtifactsException: 500,
    NoAdvertisedProviders: 501,
    UnsupportedArtifactsType: 400,
    NoDefaultConfig: 400,
    InvalidProviderConfig: 500,
    InvalidArtifactArgument: 400,
    ProviderSpecificException: 502,
}


def http_status_for(error: EnsignError) -> int:
    """Return the HTTP status for an error, from the most specific class in the table."""
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500
