"""The ASGI application: ``uvicorn api.app:create_app --factory``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.telemetry import TelemetryConfig
from fastapi_offline import FastAPIOffline

from api.errors import install_error_handlers
from api.middleware import RequestContextMiddleware
from api.openapi import install_openapi, operation_id
from api.routes import goals, health, jobs
from api.routes.page import install_page
from api.services import open_services
from api.stopping import on_stop_signal
from observability import metrics
from observability.tracing import init_tracing
from settings import AppEnv, Settings, get_settings

API_VERSION = version("goal-mandala")
EXPOSED_HEADERS = [
    "X-Request-ID",
    "Location",
    "Retry-After",
    "RateLimit-Policy",
    "RateLimit",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Idempotent-Replayed",
]


def create_app(settings: Settings | None = None) -> FastAPI:
    cfg = settings or get_settings()
    production = cfg.app_env is AppEnv.PRODUCTION
    metrics.init_metrics("api", cfg)
    init_tracing("api", cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(cfg) as services:
            app.state.services = services
            with on_stop_signal(services.stopping.set):
                yield

    # RequestContextMiddleware opens the server span and records http.server.duration (spec 8.3).
    no_telemetry: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
    if production:
        app = FastAPI(
            lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None, telemetry=no_telemetry
        )
    else:  # Swagger UI from the package's own files: /docs works without internet
        app = FastAPIOffline(
            title="Goal mandala generation API",
            version=API_VERSION,
            lifespan=lifespan,
            docs_url="/docs",
            redoc_url=None,
            openapi_url="/openapi.json",
            generate_unique_id_function=operation_id,
            telemetry=no_telemetry,
        )
        install_openapi(app)
    app.include_router(jobs.router)
    app.include_router(goals.router)
    app.include_router(health.router)
    install_page(app, cfg)
    install_error_handlers(app)
    if cfg.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cfg.cors_allow_origins,
            allow_methods=["GET", "POST"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Accept-Language",
                "X-Request-ID",
                "Last-Event-ID",
                "Idempotency-Key",
            ],
            expose_headers=EXPOSED_HEADERS,
        )
    # Outermost of ours: its span, http.server.duration and log line see every response, 500s included.
    app.add_middleware(RequestContextMiddleware)
    return app
