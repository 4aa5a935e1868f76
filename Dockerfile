# Relance application image: one image for the API, the worker and the migrations.
# docker-compose.yml picks the process with `command:`; the default runs the API.
# Pinned to an exact Python release on a named Debian release, so a rebuild next month builds on
# what was tested (a floating tag changes Python, Debian and its libraries under the app). To
# upgrade: the newest 3.11.x-slim-bookworm, rebuild, run the tests (tests/test_docker_compose.py
# checks the pin).
FROM python:3.11.17-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONPATH=/app

# Unprivileged account the processes run as.
RUN groupadd --system --gid 10001 relance \
    && useradd --system --uid 10001 --gid relance --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin relance

WORKDIR /app

# The whole project is copied (see .dockerignore for what stays out). worker.py, alembic.ini,
# migrations/ and templates/ are not part of the installed package, and relance/services/migrate.py and
# relance/domain/rendering.py find them next to the relance/ directory: PYTHONPATH=/app makes the
# code in /app win over the copy pip puts in site-packages, whatever the working directory.
COPY . .

# Installed as root into the system site-packages; the app user only needs to read them.
# var/ is the default RELANCE_DATA_DIR and must be writable by the app user.
# pip and setuptools first, to releases with their published CVEs fixed (as the Makefile does).
# The bytecode of /app is compiled here, once: PYTHONDONTWRITEBYTECODE keeps the processes from
# writing it (the app user cannot write /app anyway), and the worker loads each journey's module
# again for every journey it builds or rebuilds from history, which compiles from source when
# no bytecode is there.
RUN pip install --no-cache-dir --upgrade 'pip>=25.3' 'setuptools>=78.1.1' \
    && pip install --no-cache-dir . \
    && python -m compileall -q /app \
    && mkdir -p /app/var \
    && chown relance:relance /app/var

USER relance

EXPOSE 8000

CMD ["uvicorn", "--factory", "api.main:create_app", "--host", "0.0.0.0", "--port", "8000"]
