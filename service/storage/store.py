"""SQLAlchemy tables and the queries the service makes of them.

Every write is one transaction: a plan created with inline labels writes its dataset and
itself together or not at all. Ids are content hashes, so creating the same thing twice
is an ``INSERT ... ON CONFLICT DO NOTHING`` that reports whether a row was added; two
replicas racing on the same plan both succeed and leave one row.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import select
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from sampleplan.service.errors import StorageUnavailable

logger = logging.getLogger("sampleplan.storage")

metadata = sa.MetaData()

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("label_kind", sa.String(8), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("classes", sa.Text, nullable=False),  # JSON list, sorted
    sa.Column("counts", sa.Text, nullable=False),  # JSON list, in class order
    sa.Column("codes_dtype", sa.String(8), nullable=False),
    # little-endian codes, NOTE [How arrays are stored]
    sa.Column("codes", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Label-set datasets (issue 10): the CSR offsets beside the dataset's row, whose ``codes``
# then hold one code per label occurrence. A table of its own, so that the datasets
# table and every single-label row stay as they were.
dataset_label_sets = sa.Table(
    "dataset_label_sets",
    metadata,
    sa.Column("dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), primary_key=True),
    sa.Column("offsets", sa.LargeBinary, nullable=False),  # zlib-compressed little-endian int64
)

plans = sa.Table(
    "plans",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column(
        "dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), nullable=False, index=True
    ),
    sa.Column("config", sa.Text, nullable=False),  # canonical JSON
    sa.Column("versions", sa.Text, nullable=False),  # JSON: what defines the streams
    # float64, sample_weights only; NOTE [How arrays are stored]
    sa.Column("weights", sa.LargeBinary, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Datasets with per-sample token lengths (schema 4): ``id`` names the labels and the
# lengths together (a dataset id of its own), ``labels_id`` the stored labels they go with.
# A table of its own, so that the datasets table and its rows stay as they were.
dataset_lengths = sa.Table(
    "dataset_lengths",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("labels_id", sa.String(64), sa.ForeignKey("datasets.id"), nullable=False, index=True),
    sa.Column("total", sa.BigInteger, nullable=False),  # the sum of the lengths
    # little-endian int64 lengths, NOTE [How arrays are stored]
    sa.Column("lengths", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Mixture plans (schema 4): a plan over several sources has no one dataset, so it cannot
# be a row of ``plans`` (whose ``dataset_id`` is a required foreign key). Its sources'
# dataset and plan ids are in its canonical config. Ids share one namespace with
# ``plans`` (both are SHA-256 of distinct canonical forms).
mixture_plans = sa.Table(
    "mixture_plans",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("config", sa.Text, nullable=False),  # canonical JSON
    sa.Column("versions", sa.Text, nullable=False),  # JSON: what defines the streams
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # always 1: a one-row table
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

#: The schema this release reads and writes. A change to the tables bumps it and adds
#: the step that brings a database from the previous version to :data:`MIGRATIONS`.
#:
#: - 1: ``datasets``, ``plans`` (zlib blobs), ``schema_version``.
#: - 2: blobs in NOTE [How arrays are stored]'s format (version-1 blobs stay readable);
#:   new tables ``dataset_label_sets`` (label-set offsets) and ``runs``,
#:   ``run_updates``, ``run_epochs`` (:mod:`sampleplan.service.storage.runs`). A version-1 release
#:   would misread both (label-set datasets as single-label codes, new blobs as zlib), so
#:   it must refuse such a database, which the bump makes it do.
#: - 3: frozen epochs stored as the updates that made them, with keyframes
#:   (NOTE [How frozen epochs are stored] in ``run_catalog.py``): new columns
#:   ``run_epochs.base_epoch`` and ``runs.kept_from``, index ``ix_run_updates_run_seq``.
#:   Every version-2 frozen epoch is a keyframe as it stands; a version-2 release would
#:   read a derived epoch (no weights) as the plan's weights, so it must refuse.
#: - 4: new tables ``dataset_lengths`` (per-sample token lengths, a dataset id of their
#:   own) and ``mixture_plans`` (plans over several sources); ``runs.plan_id`` is no
#:   longer a foreign key to ``plans`` (a run may draw from a mixture plan). A version-3
#:   release would answer 404 for a mixture plan and lose datasets' lengths, so it must
#:   refuse.
SCHEMA_VERSION = 4


def _to_v2(conn: Connection) -> None:
    """Version 1 -> 2: nothing to rewrite.

    The new tables are made by ``metadata.create_all`` in the same transaction, before the
    steps run, and version-1 blobs are read as they are.
    """


def _to_v3(conn: Connection) -> None:
    """Version 2 -> 3: two nullable columns and an index; no row is rewritten.

    A version-1 database got the run tables from ``metadata.create_all`` just before, as
    this release defines them (columns and index included): each addition is made only
    where it is missing.
    """
    inspector = sa.inspect(conn)
    for table, column in (("runs", "kept_from"), ("run_epochs", "base_epoch")):
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} BIGINT")
    conn.exec_driver_sql(
        "CREATE INDEX IF NOT EXISTS ix_run_updates_run_seq ON run_updates (run_id, seq)"
    )


def _to_v4(conn: Connection) -> None:
    """Version 3 -> 4: ``metadata.create_all`` made the two new tables (``dataset_lengths``,
    ``mixture_plans``) in the same transaction, before the steps run; here ``runs.plan_id``
    stops being a foreign key to ``plans`` (a run's plan may be a mixture plan).

    PostgreSQL drops the constraint. SQLite cannot drop a constraint: the ``runs`` table is
    made again without it, its rows copied, inside this transaction. Its children's rows
    (``run_updates``, ``run_epochs``) are set aside first and put back after, so that
    dropping the old table orphans nothing (SQLite's foreign keys stay on throughout).
    """
    inspector = sa.inspect(conn)
    keys = [fk for fk in inspector.get_foreign_keys("runs") if fk.get("referred_table") == "plans"]
    if not keys:
        return
    if conn.dialect.name == "postgresql":
        for fk in keys:
            conn.exec_driver_sql(f'ALTER TABLE runs DROP CONSTRAINT "{fk["name"]}"')
        return
    from sampleplan.service.storage.runs import run_epochs, run_updates, runs

    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(c.name) for c in runs.columns)
    children = (run_updates.name, run_epochs.name)
    for child in children:
        conn.exec_driver_sql(f"CREATE TEMP TABLE v4_{child} AS SELECT * FROM {child}")
    for child in reversed(children):
        conn.exec_driver_sql(f"DELETE FROM {child}")
    rebuilt = sa.Table("runs_v4", sa.MetaData(), *(c._copy() for c in runs.columns))
    conn.execute(sa.schema.CreateTable(rebuilt))
    conn.exec_driver_sql(f"INSERT INTO runs_v4 ({columns}) SELECT {columns} FROM runs")
    conn.exec_driver_sql("DROP TABLE runs")
    conn.exec_driver_sql("ALTER TABLE runs_v4 RENAME TO runs")
    for index in runs.indexes:
        index.create(conn, checkfirst=True)
    for child in children:
        table = run_updates if child == run_updates.name else run_epochs
        names = ", ".join(quote(c.name) for c in table.columns)
        conn.exec_driver_sql(f"INSERT INTO {child} ({names}) SELECT {names} FROM v4_{child}")
        conn.exec_driver_sql(f"DROP TABLE v4_{child}")


#: ``{n: step}``: the step from version ``n - 1`` to ``n``, run in order on start-up, in
#: the same transaction (and under the same lock) as the version bump. Version 1 is the
#: first release's tables; a database made before ``schema_version`` existed is version 1.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _to_v2, 3: _to_v3, 4: _to_v4}

#: Serialises schema creation when several replicas start against one PostgreSQL.
_SCHEMA_LOCK_KEY = 0x5A3F_1E00


# NOTE [How arrays are stored]
#     Label codes and per-sample weights are stored as blobs. This release writes a
#     13-byte header, ``b"\x00SPB"``, a codec byte and the raw length (uint64,
#     little-endian), then the payload: codec ``z`` is a zstd frame (level 1), ``r`` the
#     raw bytes. zstd is kept only when a sample of the data shrinks by an eighth or
#     more; codes of many evenly spread classes barely do, and then storing them raw
#     costs one copy where compressing would cost a pass over them. zlib level 1, what
#     the previous release wrote, ran at about 10 MB/s of codes here (1 s of the 2 s a
#     1e7-label dataset took); zstd at over 150 MB/s. Blobs without the header are the
#     previous release's zlib streams (they start with ``0x78``; a zlib stream cannot
#     start with ``0x00``), and are still read.
_BLOB_MAGIC = b"\x00SPB"
_BLOB_HEADER = struct.Struct("<4scQ")
_ZSTD, _RAW = b"z", b"r"
#: Bytes compressed first to decide whether the whole is worth compressing.
_SAMPLE_BYTES = 1 << 20
#: Compressed size, over raw size, above which the data is stored raw.
_WORTH_COMPRESSING = 7 / 8


def _zstd(data: bytes) -> bytes:
    compressed: bytes = pa.compress(data, codec="zstd", asbytes=True)
    return compressed


def compress(data: bytes) -> bytes:
    """``data`` as a blob in this release's format (NOTE [How arrays are stored])."""
    sample = data[:_SAMPLE_BYTES]
    codec, payload = _RAW, data
    if sample and len(_zstd(sample)) <= _WORTH_COMPRESSING * len(sample):
        packed = _zstd(data)
        if len(packed) <= _WORTH_COMPRESSING * len(data):
            codec, payload = _ZSTD, packed
    return b"".join([_BLOB_HEADER.pack(_BLOB_MAGIC, codec, len(data)), payload])


def decompress(data: bytes) -> bytes:
    """The bytes a blob holds, in this release's format or the previous one's (zlib)."""
    if data[: len(_BLOB_MAGIC)] != _BLOB_MAGIC:
        return zlib.decompress(data)
    _, codec, size = _BLOB_HEADER.unpack_from(data)
    payload = memoryview(data)[_BLOB_HEADER.size :]
    if codec == _RAW:
        return bytes(payload)
    if codec == _ZSTD:
        raw: bytes = pa.decompress(payload, decompressed_size=size, codec="zstd", asbytes=True)
        return raw
    raise StorageUnavailable(f"a stored array has an unknown codec {codec!r}")


@dataclass(frozen=True)
class DatasetRecord:
    id: str
    label_kind: str
    size: int
    classes: list[Any]
    counts: list[int]
    codes_dtype: str
    codes: bytes  # raw, uncompressed
    #: Label sets only: raw little-endian int64 CSR offsets (size + 1), uncompressed.
    offsets: bytes | None = None


@dataclass(frozen=True)
class LengthsRecord:
    """A dataset's per-sample token lengths: ``id`` names labels and lengths together."""

    id: str
    labels_id: str
    total: int
    lengths: bytes  # raw little-endian int64, uncompressed


@dataclass(frozen=True)
class MixturePlanRecord:
    id: str
    config: dict[str, Any]
    versions: dict[str, str]


@dataclass(frozen=True)
class PlanRecord:
    id: str
    dataset_id: str
    config: dict[str, Any]
    versions: dict[str, str]
    weights: bytes | None  # raw float64 little-endian, uncompressed


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class DatabaseTimeouts:
    """How long the service waits on its database; see NOTE [Database timeouts].

    The defaults are the settings' (``SAMPLEPLAN_DATABASE_*_TIMEOUT_SECONDS``).
    """

    connect: int = 2
    ping: float = 2.0
    statement: float = 30.0
    pool: float = 5.0


# NOTE [Database timeouts]
#     A database that stops answering (its connections open, nothing coming back) must
#     give a 503 within seconds, not hold every request to the request timeout's 504.
#     Each wait has its own bound, all well under the request timeout:
#
#     - connecting: libpq's ``connect_timeout`` (whole seconds, at least 2);
#     - a pooled connection, before a request uses it: a ``SELECT 1`` sent through
#       libpq's non-blocking calls and waited for with ``poll`` up to the ping timeout.
#       SQLAlchemy's own pre-ping waits without a bound. A ping unanswered in time drops
#       the whole pool (every connection opened before it), and the pool's one retry
#       opens a new connection, bounded by ``connect_timeout``: a silent server costs a
#       request at most ping + connect (4 s by default), then a 503;
#     - one statement: PostgreSQL's ``statement_timeout`` and ``lock_timeout``, which the
#       server enforces (a statement over it fails, the request gets a 503); SQLite's busy
#       timeout, the longest a statement waits for the database's write lock;
#     - a server that goes silent in the middle of a statement or a commit, after its
#       connection answered the ping: the server's timeout cannot fire there, so a
#       watchdog thread (:class:`_Watchdog`) shuts the connection's socket down once the
#       statement timeout and a second of grace have passed with no answer (a live
#       server would have cancelled the statement by then); the waiting thread gets a
#       disconnection error, the request a 503, and no worker thread stays stuck;
#     - a free connection: the pool's ``pool_timeout``.
#
#     Recovery needs nothing: dropped connections are reopened on demand, so the first
#     request after the server answers again succeeds.


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL: readers never block the writer, and a committed transaction survives a
        # killed process. NORMAL sync is durable against process crashes in WAL mode.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
        cursor.close()

    return on_connect


def _timed_ping(dbapi_connection: Any, timeout: float) -> None:
    """``SELECT 1`` on a psycopg 3 connection, raising ``TimeoutError`` past ``timeout`` s.

    Through libpq's non-blocking calls, so that the wait for the answer has a bound (see
    NOTE [Database timeouts]). Reads every result, leaving the connection idle.
    """
    pgconn = dbapi_connection.pgconn
    deadline = time.monotonic() + timeout
    poller = select.poll()
    fd = pgconn.socket

    def wait(events: int) -> None:
        remaining = deadline - time.monotonic()
        poller.register(fd, events)
        try:
            if remaining <= 0 or not poller.poll(remaining * 1000):
                raise TimeoutError(f"the database did not answer a ping in {timeout:g} s")
        finally:
            poller.unregister(fd)

    was_nonblocking = pgconn.nonblocking
    pgconn.nonblocking = 1
    try:
        pgconn.send_query(b"SELECT 1")
        while pgconn.flush() > 0:
            wait(select.POLLOUT)
        pgconn.consume_input()
        while pgconn.is_busy():
            wait(select.POLLIN)
            pgconn.consume_input()
        failed = None
        while (result := pgconn.get_result()) is not None:
            if result.error_message:
                failed = result.error_message.decode(errors="replace")
        if failed is not None:
            raise ConnectionError(f"the database refused a ping: {failed}")
    finally:
        pgconn.nonblocking = was_nonblocking


def _ping_on_checkout(timeout: float) -> Callable[[Any, Any, Any], None]:
    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if record.info.pop("fresh", False):
            return  # just opened: it has answered already
        try:
            _timed_ping(dbapi_connection, timeout)
        except Exception as exc:
            logger.warning("dropping the database connections: %s", exc)
            # Drops every pooled connection opened before now; the pool retries once
            # with a new connection (bounded by connect_timeout).
            raise sa.exc.InvalidatePoolError(str(exc)) from exc

    return on_checkout


#: Past the statement timeout, how long the server has to say so before the connection is
#: taken for silent (NOTE [Database timeouts]).
STATEMENT_GRACE_SECONDS = 1.0


class _Watchdog:
    """Shuts down the socket of a connection whose statement (or commit) has had no answer
    by its deadline, so that the thread waiting on it gets an error instead of waiting on.

    One daemon thread for the process, started on first use. Arming and disarming take a
    lock the thread holds while it shuts a socket down, so a disarmed connection (one
    whose statement has returned, and which may be closed and its file descriptor reused)
    is never touched.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, int] = {}  # token -> file descriptor
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None
        self.fired = 0

    def arm(self, fd: int, seconds: float) -> int:
        token = next(self._tokens)
        with self._lock:
            self._armed[token] = fd
            entry = (time.monotonic() + seconds, token)
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sampleplan-db-watchdog", daemon=True
                )
                self._thread.start()
            if self._heap[0] == entry:
                # The thread sleeps until the earliest deadline: wake it only for a new
                # earliest one (rarely: every deadline is now plus the same seconds).
                self._lock.notify()
        return token

    def disarm(self, token: int) -> None:
        with self._lock:
            self._armed.pop(token, None)

    def _run(self) -> None:
        with self._lock:
            while True:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)  # disarmed: forget it
                if not self._heap:
                    self._lock.wait()
                    continue
                deadline, token = self._heap[0]
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    self._lock.wait(remaining)
                    continue
                heapq.heappop(self._heap)
                fd = self._armed.pop(token)
                self.fired += 1
                logger.warning("the database did not answer a statement in time: disconnecting")
                try:
                    with socket.socket(fileno=os.dup(fd)) as sock:
                        sock.shutdown(socket.SHUT_RDWR)
                except OSError:  # already closed: nothing waits on it
                    pass


_WATCHDOG = _Watchdog()
_WATCHED = "sampleplan_watchdog"


def _watch_statements(engine: Engine, seconds: float) -> None:
    """Arm :data:`_WATCHDOG` around every statement and commit of ``engine``'s connections."""

    def arm(info: dict[str, Any], dbapi_connection: Any) -> None:
        disarm(info)
        info[_WATCHED] = _WATCHDOG.arm(dbapi_connection.pgconn.socket, seconds)

    def disarm(info: dict[str, Any]) -> None:
        token = info.pop(_WATCHED, None)
        if token is not None:
            _WATCHDOG.disarm(token)

    @sa.event.listens_for(engine, "before_cursor_execute")
    def before(conn: Connection, *_: Any) -> None:
        arm(conn.connection.info, conn.connection.dbapi_connection)

    @sa.event.listens_for(engine, "after_cursor_execute")
    def after(conn: Connection, *_: Any) -> None:
        disarm(conn.connection.info)

    @sa.event.listens_for(engine, "handle_error")
    def failed(context: sa.engine.ExceptionContext) -> None:
        if context.connection is not None and not context.connection.invalidated:
            disarm(context.connection.connection.info)

    @sa.event.listens_for(engine, "commit")
    def commit(conn: Connection) -> None:
        # No event follows a commit: the connection's return to the pool disarms it.
        arm(conn.connection.info, conn.connection.dbapi_connection)

    @sa.event.listens_for(engine, "checkin")
    def checkin(_dbapi_connection: Any, record: Any) -> None:
        disarm(record.info)

    @sa.event.listens_for(engine, "close")
    def close(_dbapi_connection: Any, record: Any) -> None:
        disarm(record.info)


# NOTE [Pipelined statements]
#     A statement costs a round trip to PostgreSQL, and on a replica whose cores are busy
#     each round trip is also a wait for the CPU (PostgreSQL's process must run) and for
#     the interpreter's lock (a thread that wants it back waits up to the switch interval,
#     5 ms, for a busy one to let go): a batch of updates made nine of them (the ping,
#     ``BEGIN``, four reads, two writes, ``COMMIT``), most of a batch's time under 32
#     clients of small updates. The reads, which do not need each other's answers, are
#     sent together through psycopg's pipeline mode (:func:`pipelined`): the server runs
#     them one after another, in order, as it would have, and the answers come back
#     together: one round trip, ``BEGIN`` with them. SQLAlchemy's statement events fire for
#     each statement as for its own (the watchdog of NOTE [Database timeouts] is armed until
#     the answers are in), and a driver error becomes SQLAlchemy's, as its own would (a lost
#     connection is invalidated, and is a 503). When one statement fails, the server skips
#     the rest of the pipeline and the transaction is rolled back.
#     The writes and the ``COMMIT`` are not pipelined: sent so, an update of a million
#     indices (16 MB of parameters) stalled until the statement watchdog cut the
#     connection, in two runs of three (tests/api/test_hostile_runs.py); one by one it
#     takes a few seconds, as before.


def pipelined(
    conn: Connection, statements: list[tuple[str, dict[str, Any]]]
) -> list[list[tuple[Any, ...]]]:
    """Run ``statements`` (psycopg's SQL and parameters) on ``conn``'s PostgreSQL
    connection in one round trip; the rows of each statement (NOTE [Pipelined
    statements])."""
    import psycopg

    dbapi_connection = conn.connection.dbapi_connection
    assert dbapi_connection is not None
    dispatch = conn.dispatch
    cursors: list[Any] = []
    statement: str | None = None
    params: dict[str, Any] | None = None
    try:
        try:
            with dbapi_connection.pipeline():
                for statement, params in statements:
                    cursor = dbapi_connection.cursor()
                    dispatch.before_cursor_execute(conn, cursor, statement, params, None, False)
                    cursor.execute(statement, params)
                    cursors.append(cursor)
            rows = [cursor.fetchall() if cursor.description else [] for cursor in cursors]
        finally:
            # The answers are in (or the connection failed): disarm the watchdog.
            if cursors and not conn.invalidated:
                dispatch.after_cursor_execute(conn, cursors[-1], statement, params, None, False)
            for cursor in cursors:
                cursor.close()
    except psycopg.Error as exc:
        invalidated = conn.dialect.is_disconnect(exc, dbapi_connection, None)  # type: ignore[arg-type]
        if invalidated:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            statement,
            params,
            exc,
            psycopg.Error,
            connection_invalidated=invalidated,
            dialect=conn.dialect,
        ) from exc
    return rows


def _mark_fresh(_dbapi_connection: Any, record: Any) -> None:
    record.info["fresh"] = True


def create_engine_for(url: str, timeouts: DatabaseTimeouts | None = None) -> Engine:
    """An engine for ``url``, with SQLite tuned for a service and its parent folder made,
    and every wait on the database bounded (NOTE [Database timeouts])."""
    timeouts = timeouts or DatabaseTimeouts()
    parsed = sa.engine.make_url(url)
    pool = {"pool_timeout": timeouts.pool}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        in_memory = not parsed.database or parsed.database == ":memory:"
        engine = sa.create_engine(url, **({} if in_memory else pool))
        busy_ms = max(1, round(timeouts.statement * 1000))
        sa.event.listen(engine, "connect", _sqlite_pragmas(busy_ms))
        return engine
    if parsed.get_backend_name() != "postgresql":  # pragma: no cover - not a supported target
        return sa.create_engine(url, pool_pre_ping=True)
    if parsed.drivername == "postgresql":
        # Plain postgresql:// means psycopg 3 here, the driver the server extra installs.
        parsed = parsed.set(drivername="postgresql+psycopg")
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = max(2, timeouts.connect)
    statement_ms = max(1, round(timeouts.statement * 1000))
    options = f"-c statement_timeout={statement_ms} -c lock_timeout={statement_ms}"
    if "options" not in parsed.query:
        connect_args["options"] = options
    psycopg = parsed.drivername == "postgresql+psycopg"
    engine = sa.create_engine(
        parsed.render_as_string(hide_password=False),
        connect_args=connect_args,
        # Another driver than psycopg 3: SQLAlchemy's own ping, which waits without a bound.
        pool_pre_ping=not psycopg,
        **pool,
    )
    if psycopg:
        sa.event.listen(engine, "connect", _mark_fresh)
        sa.event.listen(engine, "checkout", _ping_on_checkout(timeouts.ping))
        _watch_statements(engine, timeouts.statement + STATEMENT_GRACE_SECONDS)
    return engine


class PlanStore:
    """Datasets and plans, keyed by content hash."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, timeouts: DatabaseTimeouts | None = None) -> PlanStore:
        store = cls(create_engine_for(url, timeouts))
        try:
            store.create_schema()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        self.engine.dispose()

    def create_schema(self) -> None:
        """Create missing tables and migrate to :data:`SCHEMA_VERSION`.

        Safe when several replicas (or workers) start at once: it all happens in one
        transaction holding a database-wide lock (a PostgreSQL advisory lock; SQLite's
        write lock, taken up front with ``BEGIN IMMEDIATE``), so one of them creates or
        migrates and the others then find the work done.
        """
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK_KEY)))
                elif conn.dialect.name == "sqlite":
                    # pysqlite begins transactions lazily, at the first write; DDL would
                    # run outside one and two processes could both try to create a table.
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                had_tables = sa.inspect(conn).has_table(plans.name)
                metadata.create_all(conn)
                self._migrate(conn, baseline=1 if had_tables else SCHEMA_VERSION)
        except OperationalError as exc:
            raise StorageUnavailable(f"cannot open the database: {exc.orig}") from exc

    def _migrate(self, conn: Connection, *, baseline: int) -> None:
        query = sa.select(schema_version.c.version).where(schema_version.c.id == 1)
        row = conn.execute(query).first()
        if row is None:
            # A new database (made at the current version just now), or one from before
            # versioning (version 1).
            current = baseline
            conn.execute(schema_version.insert().values(id=1, version=current, updated_at=_now()))
        else:
            current = int(row[0])
        if current > SCHEMA_VERSION:
            raise StorageUnavailable(
                f"the database's schema is version {current}, newer than this release's "
                f"{SCHEMA_VERSION}: run a sampleplan release that knows it"
            )
        if current == SCHEMA_VERSION:
            return
        for version in range(current + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](conn)
        conn.execute(
            schema_version.update()
            .where(schema_version.c.id == 1)
            .values(version=SCHEMA_VERSION, updated_at=_now())
        )

    def current_schema_version(self) -> int:
        """The schema version the database is at."""
        query = sa.select(schema_version.c.version).where(schema_version.c.id == 1)
        with self._connection() as conn:
            return int(conn.execute(query).scalar_one())

    def ping(self) -> None:
        """Raise :class:`StorageUnavailable` unless the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except (DBAPIError, sa.exc.TimeoutError) as exc:
            raise _unavailable("the database does not answer", exc) from exc

    # -- writes ---------------------------------------------------------------------------

    def _insert_ignore(self, conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
        dialect = conn.dialect.name
        if dialect == "postgresql":
            stmt: Any = postgresql.insert(table).values(**values).on_conflict_do_nothing()
        elif dialect == "sqlite":
            stmt = sqlite.insert(table).values(**values).on_conflict_do_nothing()
        else:  # pragma: no cover - other databases are not supported targets
            exists = conn.execute(sa.select(table.c.id).where(table.c.id == values["id"])).first()
            if exists:
                return False
            stmt = table.insert().values(**values)
        # A returned row, not ``rowcount``, says whether the row is new: psycopg 3 under
        # SQLAlchemy reports rowcount -1 for these statements, which reads as "inserted".
        return conn.execute(stmt.returning(table.c.id)).first() is not None

    def _dataset_values(self, record: DatasetRecord) -> dict[str, Any]:
        return {
            "id": record.id,
            "label_kind": record.label_kind,
            "size": record.size,
            "classes": json.dumps(record.classes, ensure_ascii=False),
            "counts": json.dumps(record.counts),
            "codes_dtype": record.codes_dtype,
            "codes": compress(record.codes),
            "created_at": _now(),
        }

    def put_dataset(self, record: DatasetRecord) -> bool:
        """Store a dataset; ``True`` if it was new."""
        values = self._dataset_values(record)
        with self._transaction() as conn:
            return self._insert_dataset(conn, record, values)

    def _insert_dataset(
        self, conn: Connection, record: DatasetRecord, values: dict[str, Any]
    ) -> bool:
        created = self._insert_ignore(conn, datasets, values)
        if created and record.offsets is not None:
            conn.execute(
                dataset_label_sets.insert().values(
                    dataset_id=record.id, offsets=compress(record.offsets)
                )
            )
        return created

    def put_plan(self, record: PlanRecord, dataset: DatasetRecord | None = None) -> bool:
        """Store a plan (and its dataset, in the same transaction, if given); ``True`` if new."""
        return self.put_plan_and_dataset(record, dataset)[0]

    def put_plan_and_dataset(
        self, record: PlanRecord, dataset: DatasetRecord | None = None
    ) -> tuple[bool, bool]:
        """As :meth:`put_plan`; ``(plan is new, dataset is new)``."""
        dataset_values = self._dataset_values(dataset) if dataset is not None else None
        values = {
            "id": record.id,
            "dataset_id": record.dataset_id,
            "config": json.dumps(record.config, sort_keys=True),
            "versions": json.dumps(record.versions, sort_keys=True),
            "weights": compress(record.weights) if record.weights is not None else None,
            "created_at": _now(),
        }
        with self._transaction() as conn:
            dataset_new = False
            if dataset_values is not None:
                assert dataset is not None
                dataset_new = self._insert_dataset(conn, dataset, dataset_values)
            return self._insert_ignore(conn, plans, values), dataset_new

    def put_lengths(self, record: LengthsRecord, dataset: DatasetRecord) -> tuple[bool, bool]:
        """Store token lengths and the labels they go with, in one transaction;
        ``(lengths are new, labels are new)``."""
        dataset_values = self._dataset_values(dataset)
        values = {
            "id": record.id,
            "labels_id": record.labels_id,
            "total": record.total,
            "lengths": compress(record.lengths),
            "created_at": _now(),
        }
        with self._transaction() as conn:
            dataset_new = self._insert_dataset(conn, dataset, dataset_values)
            return self._insert_ignore(conn, dataset_lengths, values), dataset_new

    def put_mixture_plan(self, record: MixturePlanRecord) -> bool:
        """Store a mixture plan; ``True`` if it was new."""
        values = {
            "id": record.id,
            "config": json.dumps(record.config, sort_keys=True),
            "versions": json.dumps(record.versions, sort_keys=True),
            "created_at": _now(),
        }
        with self._transaction() as conn:
            return self._insert_ignore(conn, mixture_plans, values)

    # -- reads ----------------------------------------------------------------------------

    def get_lengths(self, dataset_id: str) -> LengthsRecord | None:
        """The token lengths whose dataset id is ``dataset_id`` (``None``: no such lengths)."""
        query = sa.select(dataset_lengths).where(dataset_lengths.c.id == dataset_id)
        with self._connection() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        return LengthsRecord(
            id=row["id"],
            labels_id=row["labels_id"],
            total=int(row["total"]),
            lengths=decompress(row["lengths"]),
        )

    def get_mixture_plan(self, plan_id: str) -> MixturePlanRecord | None:
        query = sa.select(mixture_plans).where(mixture_plans.c.id == plan_id)
        with self._connection() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        return MixturePlanRecord(
            id=row["id"], config=json.loads(row["config"]), versions=json.loads(row["versions"])
        )

    def get_dataset(self, dataset_id: str) -> DatasetRecord | None:
        query = (
            sa.select(datasets, dataset_label_sets.c.offsets)
            .outerjoin(dataset_label_sets, dataset_label_sets.c.dataset_id == datasets.c.id)
            .where(datasets.c.id == dataset_id)
        )
        with self._connection() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        return DatasetRecord(
            id=row["id"],
            label_kind=row["label_kind"],
            size=int(row["size"]),
            classes=json.loads(row["classes"]),
            counts=json.loads(row["counts"]),
            codes_dtype=row["codes_dtype"],
            codes=decompress(row["codes"]),
            offsets=decompress(row["offsets"]) if row["offsets"] is not None else None,
        )

    def dataset_size(self, dataset_id: str) -> int | None:
        """A stored dataset's number of samples, without reading its labels."""
        query = sa.select(datasets.c.size).where(datasets.c.id == dataset_id)
        with self._connection() as conn:
            size = conn.execute(query).scalar_one_or_none()
        return None if size is None else int(size)

    def dataset_exists(self, dataset_id: str) -> bool:
        with self._connection() as conn:
            return (
                conn.execute(sa.select(datasets.c.id).where(datasets.c.id == dataset_id)).first()
                is not None
            )

    def get_plan(self, plan_id: str) -> PlanRecord | None:
        with self._connection() as conn:
            row = conn.execute(sa.select(plans).where(plans.c.id == plan_id)).mappings().first()
        if row is None:
            return None
        return PlanRecord(
            id=row["id"],
            dataset_id=row["dataset_id"],
            config=json.loads(row["config"]),
            versions=json.loads(row["versions"]),
            weights=decompress(row["weights"]) if row["weights"] is not None else None,
        )

    def count(self) -> tuple[int, int]:
        """``(datasets, plans)`` stored, for readiness checks and tests."""
        with self._connection() as conn:
            n_datasets = conn.execute(sa.select(sa.func.count()).select_from(datasets)).scalar_one()
            n_plans = conn.execute(sa.select(sa.func.count()).select_from(plans)).scalar_one()
        return int(n_datasets), int(n_plans)

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with _storage_errors(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        with _storage_errors(), self.engine.connect() as conn:
            yield conn


@contextmanager
def _storage_errors() -> Iterator[None]:
    """Driver-level failures (database down, disk full, locked) become a 503."""
    try:
        yield
    except (OperationalError, sa.exc.TimeoutError) as exc:
        # TimeoutError: no pooled connection came free in time (NOTE [Database timeouts]).
        raise _unavailable("the database failed", exc) from exc


def _unavailable(what: str, exc: DBAPIError | sa.exc.TimeoutError) -> StorageUnavailable:
    """A 503 for clients without the driver's message, which names the database's host,
    port and user; that message goes to the service's log instead."""
    logger.error("%s: %s", what, getattr(exc, "orig", None) or exc)
    return StorageUnavailable(f"{what}; the service's log has the details")
