"""The API's error answers: one body model, the handlers that produce it, and shared
parameter hygiene (bounded row ids, no NUL in any query or path parameter).

Every error the API sends is an :class:`ApiError`: ``detail`` is a sentence, or for a 422 a
list of :class:`FieldError` naming each bad field; a 503 also names the ``store`` that is
down and carries ``Retry-After``. Routes document their errors with :func:`error_responses`,
so the OpenAPI shows the bodies the handlers really send.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path, Request, WebSocketException, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection

from loopline.models.events import format_path
from loopline.models.stores import STORE_DOWN, store_down

log = logging.getLogger("loopline.api")

MAX_ROW_ID = 2**31 - 1  # the records' integer primary keys (PostgreSQL ``integer``)
RETRY_AFTER_S = 5  # what a client should wait before retrying while a store is down

Location = Literal["path", "query", "header", "cookie", "body"]


class FieldError(BaseModel):
    """One bad field: its path (``order.lines[0].qty``, ``change_id``) and why."""

    field: str
    message: str
    location: Location | None = Field(
        default=None, description="where the field was: path, query, header, cookie or body"
    )


class ApiError(BaseModel):
    """The body of every error answer."""

    # Some answers add context (a superseded change's 409 carries the ``change``).
    model_config = ConfigDict(extra="allow")
    detail: str | list[FieldError] = Field(
        description="what went wrong; for 422 the list of bad fields"
    )
    store: Literal["redis", "database"] | None = Field(
        default=None, description="503 only: the store that cannot be reached"
    )


_DESCRIPTIONS = {
    401: "No valid credentials (bearer token, signed-in browser or webhook signature)",
    403: "The caller's role may not do this",
    404: "No such resource",
    409: "The resource is in a state that forbids this (already decided, superseded)",
    413: "The body is larger than allowed",
    415: "The body's Content-Type is not JSON",
    422: "Invalid input: each bad field is named",
    502: "A CRM's API did not answer what its webhook left out; the CRM should retry",
    503: "A store (Redis or the database) cannot be reached; retry after Retry-After seconds",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` documenting these statuses with the :class:`ApiError` body."""
    documented: dict[int | str, dict[str, Any]] = {}
    for code in statuses:
        documented[code] = {"model": ApiError, "description": _DESCRIPTIONS[code]}
        if code == 503:
            documented[code]["headers"] = {
                "Retry-After": {
                    "description": "seconds to wait before retrying",
                    "schema": {"type": "integer"},
                }
            }
    return documented


RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="a record's id")]


def error_body(detail: str | list[FieldError], **extra: Any) -> dict[str, Any]:
    """An :class:`ApiError` as JSON-ready data (unset fields left out)."""
    return ApiError(detail=detail, **extra).model_dump(mode="json", exclude_none=True)


def field_errors(errors: Any) -> list[FieldError]:
    """FastAPI's / pydantic's error list as named fields."""
    named: list[FieldError] = []
    for error in errors:
        loc = list(error.get("loc") or ())
        where = loc[0] if loc and loc[0] in ("path", "query", "header", "cookie", "body") else None
        rest = loc[1:] if where else loc
        named.append(
            FieldError(
                field=format_path(rest) if rest else (where or "body"),
                message=str(error.get("msg", "invalid")),
                location=where,
            )
        )
    return named


async def refuse_nul(conn: HTTPConnection) -> None:
    """Refuse a NUL character in any query or path parameter (no store can keep one).

    async: every API request solves it, and a plain ``def`` would cost a thread-pool hop."""
    bad = [
        {"loc": (where, name), "msg": "must not contain a NUL character", "type": "nul"}
        for where, items in (
            ("path", conn.path_params.items()),
            ("query", conn.query_params.multi_items()),
        )
        for name, value in items
        if "\x00" in str(name) or "\x00" in str(value)
    ]
    if not bad:
        return
    if conn.scope["type"] == "websocket":
        raise WebSocketException(status.WS_1008_POLICY_VIOLATION, reason="NUL in a parameter")
    raise RequestValidationError(bad)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse(error_body(detail), status_code=exc.status_code, headers=exc.headers)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(error_body(field_errors(exc.errors())), status_code=422)


def store_unavailable(store: str) -> JSONResponse:
    """The 503 answer for a store that cannot be reached."""
    name = "the live state (Redis)" if store == "redis" else "the database"
    return JSONResponse(
        error_body(f"{name} cannot be reached; retry later", store=store),
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _store_down(request: Request, exc: Exception) -> JSONResponse:
    store = store_down(exc) or "database"
    log.warning("%s %s: %s unreachable: %r", request.method, request.url.path, store, exc)
    return store_unavailable(store)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every HTTP error, invalid input and store outage with an :class:`ApiError`."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    for exc_type in STORE_DOWN:
        app.add_exception_handler(exc_type, _store_down)
