"""PostgreSQL for the tests: the admin URL, whether a server answers, scratch databases.

Every database a test creates has a random name, so that xdist workers (and two test
sessions on one server) never share one.
"""

from __future__ import annotations

import os
import uuid

import sqlalchemy as sa

#: An existing database on the server the tests use; they create their own beside it.
POSTGRES_ADMIN_URL = os.environ.get(
    "SAMPLEPLAN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def postgres_problem() -> str | None:
    """Why no PostgreSQL server can be tested against, or None when one answers."""
    try:
        engine = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure means: no server to test against
        return f"{type(exc).__name__}: {exc}"
    return None


def create_database(prefix: str) -> str:
    """Create an empty database named ``{prefix}_{random}``; return its URL (with password)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return (
        sa.engine.make_url(POSTGRES_ADMIN_URL)
        .set(database=name)
        .render_as_string(hide_password=False)
    )


def drop_database(url: str) -> None:
    """Drop the database of ``url`` if it is still there, whoever is connected to it."""
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
