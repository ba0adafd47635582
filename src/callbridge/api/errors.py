"""Errors the API answers with, all in FastAPI's validation shape
`{"detail": [{"loc": [...], "msg": ..., "type": ...}]}` so a client reads
the field named in a 409 the way it reads one in a 422."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class FieldError(Exception):
    """A request that is well-formed but names a field we cannot accept."""

    def __init__(self, status: int, field: str, problem: str, kind: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.status = status
        self.field = field
        self.problem = problem
        self.kind = kind


def conflict(field: str, problem: str) -> FieldError:
    return FieldError(409, field, problem, "conflict")


def not_found_reference(field: str, problem: str) -> FieldError:
    return FieldError(422, field, problem, "not_found")


def _detail(loc: Any, msg: str, kind: str) -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg, "type": kind}


async def field_error_handler(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, FieldError)
    return JSONResponse(
        {"detail": [_detail(("body", error.field), error.problem, error.kind)]},
        status_code=error.status,
    )


async def validation_error_handler(_request: Request, error: Exception) -> JSONResponse:
    # FastAPI's default answer echoes each bad value back ("input"); for a
    # password that is the secret itself, so the answer names field and problem only.
    assert isinstance(error, RequestValidationError)
    details = [
        _detail(e.get("loc", ()), str(e.get("msg", "")), str(e.get("type", "")))
        for e in error.errors()
    ]
    return JSONResponse({"detail": details}, status_code=422)
