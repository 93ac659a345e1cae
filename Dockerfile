# Loopline's app image: one image, several processes (serve, ingest, worker, migrate),
# chosen by the command (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Why: the screens find assets/ beside the source folders, so the code runs from /app;
    # the installed copy supplies the dependencies and the `loopline` command.
    PYTHONPATH=/app

WORKDIR /app
COPY . .
# The planner's numba kernels compile here, once, into the image (about a minute); the app
# user cannot write beside the code, so at run time they only load.
RUN pip install --constraint requirements.lock . \
    && python -c "from loopline.models.planning.optimize import warm_up; warm_up(ahead_of_time=True)" \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin loopline \
    && mkdir -p /app/var \
    && chown loopline:loopline /app/var

USER loopline
EXPOSE 8050
CMD ["loopline", "serve"]
