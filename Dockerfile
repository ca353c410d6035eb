# The API server for production: DATABASE_URL points at a PostgreSQL server, so the embedded
# one is never started. ENVIRONMENT=production makes the app refuse to start without
# DATABASE_URL, JWT_SECRET (32+ random characters), WECHAT_SECRET and the NOTIFY_TEMPLATE_* ids.
#
#   docker build -t village-points .
#   docker run -p 8000:8000 -e DATABASE_URL=postgresql://… -e JWT_SECRET=… \
#     -e WECHAT_APPID=… -e WECHAT_SECRET=… -e NOTIFY_TEMPLATE_PERIOD_PUBLISHED=… (etc.) village-points
#
# The first district admin, once (README, "Running it for real"); backups the same way:
#
#   docker exec -it <container> village-points create-admin chief
#   docker exec <container> village-points backup /tmp/vp.dump && docker cp <container>:/tmp/vp.dump .
#
# /metrics is served on the same port: keep it off the public network at the proxy.
#
# Behind a reverse proxy, set FORWARDED_ALLOW_IPS to its address: uvicorn then takes the
# client address from X-Forwarded-For, which the per-address login throttling relies on.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    ENVIRONMENT=production \
    DATA_DIR=/tmp/village-points

RUN pip install --no-cache-dir uv

WORKDIR /app

# Dependencies first, in their own layer, so a change to the code does not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

# The project is installed editable (uv's default): app.migrate finds alembic.ini and
# migrations/ next to the app package, here in /app.
COPY alembic.ini ./
COPY migrations ./migrations
COPY app ./app
RUN uv sync --frozen --no-dev

RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent app
USER app
ENV PATH="/app/.venv/bin:$PATH"

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]

# DATA_DIR holds nothing lasting here (the database is elsewhere): the workers' shared metrics
# folder (--workers above 1) and photos unless PHOTO_DIR points at a volume.
# `serve` applies pending migrations before it starts uvicorn. Exec form, so the server is
# PID 1 and receives the SIGTERM of `docker stop` itself.
CMD ["village-points", "serve", "--host", "0.0.0.0", "--port", "8000"]
