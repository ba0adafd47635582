"""The HTTP API: REST under /api/v1 (FastAPI), OpenAPI at /api/openapi.json."""

from .app import create_app

__all__ = ["create_app"]
