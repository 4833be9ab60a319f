"""The ASGI application of ``ensign server``: the native API, the push API and workers.

Routes live in :mod:`ensign.server.routes`; each module there holds one ``router``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request

from ensign import __version__
from ensign.artifacts.base import ProviderConfig
from ensign.artifacts.capabilities import provider_for_store
from ensign.server.auth import Access, Token, server_state
from ensign.server.errors import install_error_handlers
from ensign.server.limits import BodyLimit
from ensign.server.routes import push
from ensign.server.settings import ServerSettings
from ensign.server.state import ServerState, open_state

__all__ = ["UPLOAD_PATHS", "create_app"]

#: Paths whose bodies are bundles or blobs (the bundle limit), not JSON (the JSON limit):
#: a blob's own signed URL and the signed bundle uploads.
UPLOAD_PATHS = re.compile(r"/api/v1/blobs/[0-9a-f]{64}|/v1/storage/uploads/.+")


def create_app(settings: ServerSettings, *, state: ServerState | None = None) -> FastAPI:
    """Build the application for ``settings`` (opening the store unless ``state`` is given).

    Raises:
        ConfigurationError: the tracking URI cannot be served or its schema is behind.
    """
    opened = state if state is not None else open_state(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        from ensign.server.worker import start_workers

        workers = start_workers(opened)
        try:
            yield
        finally:
            workers.stop()
            opened.close()

    app = FastAPI(
        title="ensign",
        version=__version__,
        description="Runs, lineage, versions and pushes of an ensign store.",
        lifespan=lifespan,
    )
    app.state.ensign = opened
    app.state.access = Access(opened)
    install_error_handlers(app)

    def limit_for(path: str) -> int:
        if UPLOAD_PATHS.fullmatch(path):
            return settings.max_bundle_bytes
        return settings.max_json_bytes

    app.add_middleware(BodyLimit, limit_for=limit_for)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str]:
        """Answer 200 once the server serves."""
        return {"status": "ok", "version": __version__}

    @app.get("/api/v1/capabilities", tags=["meta"])
    def capabilities(request: Request, _token: Token) -> dict[str, Any]:
        """Advertise the artifact providers of the store (for ``build_artifact_helper``)."""
        served = server_state(request)
        provider: ProviderConfig = provider_for_store(served.backend.store.uri)
        return {"version": __version__, "artifacts": {"providers": [provider.to_dict()]}}

    _include_routes(app)
    return app


def _include_routes(app: FastAPI) -> None:
    # One line per routes module.
    from ensign.server.routes import blobs, projects, runs, versions

    app.include_router(projects.router)
    app.include_router(runs.router)
    app.include_router(versions.router)
    app.include_router(blobs.router)
    app.include_router(push.router)
