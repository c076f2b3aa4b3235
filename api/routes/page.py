"""The web page at ``/`` (static HTML, CSS and one script under /static) and the development sign-in.

The page calls only the documented API. Minting a token (``POST /api/dev/token``) exists only while the
server verifies tokens with the built-in development secret (AUTH_MODE=hs256, JWT_SECRET unset, not
production): that secret is public, so anyone can already sign a token with it, and the endpoint grants
nothing new. With a real secret or JWKS the route is absent (404) and the page offers only pasting a token.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from api.bodies import parse_optional_object
from api.deps import Lang, ServicesDep, read_body
from api.dev_tokens import dev_token_for, dev_tokens_allowed
from api.envelope import success
from domain.enums import Language
from domain.errors import AppError, ErrorCode
from settings import Settings

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
DEV_TOKEN_PATH = "/api/dev/token"
DEV_TOKEN_SECONDS = 3600
DEFAULT_SUBJECT = "demo-user"
SUBJECT_MAX = 255
_SUBJECT_MESSAGE = {
    Language.JA: "subは1から255文字の文字列である必要があります",
    Language.EN: "sub must be a string of 1 to 255 characters.",
}
# Everything from this origin only: no inline script or style, no CDN, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_FLAG = 'data-dev-tokens="off"'

router = APIRouter()


@cache
def _page(dev_tokens: bool) -> str:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return html.replace(_FLAG, 'data-dev-tokens="on"') if dev_tokens else html


@router.get("/", include_in_schema=False)
async def page(svc: ServicesDep) -> HTMLResponse:
    return HTMLResponse(
        _page(dev_tokens_allowed(svc.settings)),
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"},
    )


async def dev_token(request: Request, svc: ServicesDep, lang: Lang) -> JSONResponse:
    params: dict[str, Any] = parse_optional_object(await read_body(request, svc.settings.max_body_bytes))
    subject = params.get("sub", DEFAULT_SUBJECT)
    if set(params) - {"sub"} or not isinstance(subject, str) or not 0 < len(subject.strip()) <= SUBJECT_MAX:
        raise AppError(
            ErrorCode.VALIDATION_ERROR, {"fields": [{"field": "sub", "message": _SUBJECT_MESSAGE[lang]}]}
        )
    subject = subject.strip()
    token = dev_token_for(svc.settings, subject, DEV_TOKEN_SECONDS)
    return success({"token": token, "sub": subject, "expiresIn": DEV_TOKEN_SECONDS})


def install_page(app: FastAPI, settings: Settings) -> None:
    """Serve the page, its assets and, where allowed, the development sign-in."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if dev_tokens_allowed(settings):
        app.add_api_route(DEV_TOKEN_PATH, dev_token, methods=["POST"], include_in_schema=False)
