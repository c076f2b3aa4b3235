# syntax=docker/dockerfile:1
# One image for the API, the worker and the one-shots (migrate, temporal-setup): see docs/deploy.md.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with the service and its dependencies (wheels only; nothing is compiled)
FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=bedrock
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY . .
RUN /opt/venv/bin/pip install ".[${EXTRAS}]" \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

# --- runtime: the virtualenv and the two files run from the working directory; no pip, no compilers
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin mandala
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY alembic.ini worker.py ./
USER 10001
EXPOSE 8000 9464 9465
CMD ["uvicorn", "api.asgi:app", "--host", "0.0.0.0", "--port", "8000", "--no-access-log"]
