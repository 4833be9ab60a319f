"""Clients for projects (versions, stages, lineage) and runs."""

from ensign.client.project import ProjectClient
from ensign.client.run import RunClient

__all__ = ["ProjectClient", "RunClient"]
