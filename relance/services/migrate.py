"""Bring the app database schema up to date: ``python -m relance.services.migrate``.

Runs Alembic's ``upgrade head`` on ``RELANCE_DATABASE_URL`` (creating the SQLite file's folder
when needed). The API, the worker and the tests all use this, so the migrations are what runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config

from relance.domain.settings import get_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("relance.services.migrate")


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str) -> None:
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), "head")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    url = get_settings().database_url
    log.info("migrate: bringing the database schema up to date (%s)", url.split("@")[-1])
    upgrade(url)
    log.info("migrate: schema is up to date")


if __name__ == "__main__":
    main()
