# The application image: one image for every app process of docker-compose.yml
# (web, worker, beat, sessions, migrate); the compose file picks the command.
FROM python:3.11-slim-bookworm

# PYTHONPATH: run the code from /app, not from the copy `pip install .` puts in
# site-packages: settings find templates/, static/ and locale/ next to the config
# package, and the wheel holds only the Python modules.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONPATH=/app

# libmagic1: media type detection; ffmpeg: voice notes and media conversion;
# curl: the health check in docker-compose.yml.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmagic1 ffmpeg curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first, in their own layer: a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
RUN pip install --no-cache-dir . \
    && rm -rf build ./*.egg-info

# Works without a database or Redis (APP_ENV defaults to development at build time).
# WhiteNoise serves these, and with WHITENOISE_USE_FINDERS the apps' own files too.
RUN python manage.py collectstatic --noinput --verbosity 0

RUN useradd --system --create-home --home-dir /home/app --uid 10001 --user-group app \
    && mkdir -p /app/media /app/metrics && chown app:app /app/media /app/metrics
USER app

EXPOSE 8000

# The web server. docker-compose.yml overrides the command for the other processes.
CMD ["uvicorn", "config.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--lifespan", "off", "--proxy-headers", "--forwarded-allow-ips=*"]
