"""Exception handlers: every error leaves in the envelope (spec 5.1) with no internal text: no stack trace,
driver or SDK message reaches the client."""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from api.envelope import error_response
from api.fields import InvalidFields
from api.log_context import log_event
from db.engine import db_error
from domain.enums import Language
from domain.errors import AppError, ErrorCode


def request_language(request: Request) -> Language:
    """Set for every request by RequestContextMiddleware."""
    lang: Language = request.state.lang
    return lang


def as_app_error(exc: Exception) -> AppError:
    """An exception no handler took: database failures get their catalogue code, the rest INTERNAL_ERROR."""
    if isinstance(exc, SQLAlchemyError | psycopg.Error):
        return db_error(exc)
    return AppError(ErrorCode.INTERNAL_ERROR, internal=type(exc).__name__)


def render_app_error(exc: AppError, lang: Language) -> JSONResponse:
    details = exc.details_in(lang) if isinstance(exc, InvalidFields) else exc.details
    if exc.entry.http_status >= 500:
        log_event(
            logging.ERROR, "request_failed", "request failed", errorCode=exc.code.value, cause=exc.internal
        )
    if exc.code is ErrorCode.PROMPT_INJECTION_DETECTED and isinstance(exc, InvalidFields):
        for f in exc.fields:
            log_event(
                logging.WARNING,
                "prompt_injection_detected",
                "prompt injection detected",
                field=f.field,
                patternId=f.pattern_id,
            )
    return error_response(exc.code, lang, details, exc.headers)


_ROUTING_ERRORS = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return render_app_error(exc, request_language(request))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _ROUTING_ERRORS.get(exc.status_code, ErrorCode.INTERNAL_ERROR)
    return error_response(code, request_language(request), headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(HTTPException, _http_error)
