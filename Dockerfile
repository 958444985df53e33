# syntax=docker/dockerfile:1
# The application image. web (gunicorn), worker, beat and flower all run from it, each with
# its Procfile line as the command (see docker-compose.yml). Every setting comes from the
# environment when the container starts (config.settings.prod); the image holds no secret.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=config.settings.prod \
    DJANGO_READ_DOT_ENV=0

WORKDIR /app

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app

# Dependencies first, so that a code change does not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .

# Static files are collected into the image (whitenoise serves them). The production settings
# refuse to load without their variables, so this one RUN line gets throwaway values that exist
# only for its duration: none is kept as ENV or ARG, and no container ever sees them.
# var/ is created for the app user: the settings create it at import when it is missing.
RUN DJANGO_SECRET_KEY=collectstatic-build-only-not-a-secret \
    ALLOWED_HOSTS=localhost \
    DATABASE_URL=sqlite:////tmp/collectstatic.sqlite3 \
    CELERY_BROKER_URL=memory:// \
    REDIS_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput -v 0 \
 && mkdir -p var \
 && chown app:app var

USER app

EXPOSE 8000 5555

# Like honcho with the Procfile: the arguments are one shell command line, expanded by
# /bin/sh (so ${WEB_BIND:-127.0.0.1} works) and exec'd, so the process is PID 1 and gets
# SIGTERM from `docker stop` itself. Run one command per container; `a && b` needs
# `--entrypoint /bin/sh -c` (as the compose migrate service does).
ENTRYPOINT ["/bin/sh", "-c", "eval \"exec $*\"", "sh"]
CMD ["gunicorn -c gunicorn.conf.py config.wsgi"]
