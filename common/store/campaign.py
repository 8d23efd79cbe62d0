"""The campaign table in MySQL: the source of truth for what is still to send.

Rows are pending (status 1), sent (0) or failed (2). A failed row's reason is
kept in `campaign_failures`, never in the user's table.

Each row also has a send generation in `send_generations`: how many outcomes
(sent or failed) were recorded for it. It is raised in the same transaction
that records an outcome, so it is the same for every retry, lease takeover and
re-queue of one send, and new once the row is set back to pending on purpose:
the idempotency key carries it, and a gateway that honours keys takes a
deliberate re-send as a new message.
"""

import datetime
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

import pymysql

from common.errors import CampaignError, ConfigError, ServiceUnavailable
from common.settings import MySQLTarget, identifier, tls_refusal

log = logging.getLogger(__name__)

PENDING, SENT, FAILED = 1, 0, 2
FAILURE_TABLE = "campaign_failures"
HISTORY_TABLE = "delivery_attempts"
INGEST_TABLE = "ingest_requests"
GENERATION_TABLE = "send_generations"
REASON_LENGTH = 255
MESSAGE_ID_LENGTH = 128

# Tables the project owns whose row_id must hold any campaign table's id, up to BIGINT UNSIGNED.
ROW_ID_TABLES = (FAILURE_TABLE, HISTORY_TABLE, GENERATION_TABLE)

# MySQL error numbers that mean "fix your settings", not "try again later".
ACCESS_DENIED = (1044, 1045, 1698)
UNKNOWN_DATABASE = 1049
UNKNOWN_TABLE = 1146
UNKNOWN_COLUMN = 1054
# pymysql's CR_SSL_CONNECTION_ERROR, raised when ssl-mode wants TLS and the server offers none.
SSL_REQUIRED_BUT_NOT_OFFERED = 2026
# InnoDB ended the transaction to settle a lock conflict with another client:
# the server is fine, and writing it again (next cycle) succeeds.
LOCK_CONFLICT = (1205, 1213)  # lock wait timeout, deadlock


def as_text(value) -> str | None:
    """A campaign table value of any column type as the text a message or a
    phone check takes: numbers without exponents, bytes as UTF-8 (what does
    not decode becomes U+FFFD, so a check fails that row, never the loop),
    dates in ISO form. NULL stays None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else value.isoformat()
    if isinstance(value, (set, frozenset)):
        return ",".join(sorted(value))
    return str(value)


def storable(text: str, length: int) -> str:
    """Text our own VARCHAR columns take whatever a gateway or a row sent:
    lone surrogates (which UTF-8 cannot carry) become '?', and it is cut to the column."""
    return text.encode("utf-8", "replace").decode("utf-8")[:length]


@dataclass(frozen=True)
class Row:
    id: int
    phone: str | None
    params: dict = field(default_factory=dict)  # column -> text, for per-row message variables
    generation: int = 0  # outcomes recorded for this row before: see the module's docstring


def id_list(ids: list[int]) -> str:
    """Row ids written into SQL as they are: each is forced to an integer, so
    nothing else can get in, and the driver need not escape them one by one
    (a batch of 500 ids appears in three statements)."""
    return ", ".join(map(str, map(int, ids)))


def idempotency_key(table: str, row_id: int, generation: int) -> str:
    """`<table>:<row id>` for a row's first send, `<table>:<row id>:<generation>`
    for a deliberate re-send after a recorded outcome."""
    return f"{table}:{row_id}" if not generation else f"{table}:{row_id}:{generation}"


@dataclass(frozen=True)
class Failure:
    row_id: int
    attempts: int
    reason: str
    http_status: int | None = None


@dataclass(frozen=True)
class Attempt:
    """One line of a row's delivery history."""

    row_id: int
    attempt: int
    outcome: str  # sent, retry or failed
    http_status: int | None
    message_id: str | None
    error: str | None
    latency_ms: int | None
    sender: str | None = None


# A value the campaign table will not take: too long, wrong type, a column
# that needs a value, a generated column, a CHECK constraint, text in a
# character set the column cannot hold (MariaDB's and MySQL's numbers). The
# row is refused; the server is fine.
DUPLICATE_KEY = 1062
ROW_REJECTED = (1048, 1267, 1364, 1366, 1406, 1264, 1292, 1452, 1906, 3105, 3819, 4025, DUPLICATE_KEY)
# Refuse such values instead of cutting them short or turning them into '?',
# whatever the server's default sql_mode.
STRICT = "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'STRICT_TRANS_TABLES')"
# Past 200 ids in an IN list the optimizer stops looking into the index and
# guesses from statistics; on a freshly loaded table it then walks every
# pending row (status = 1) to find the few hundred a consumer asked for. Zero:
# always look, so a batch costs its own rows, however many are pending.
INDEX_DIVES = "eq_range_index_dive_limit = 0"
SESSION = f"{STRICT}, {INDEX_DIVES}"


class RowRejected(ConfigError):
    """MySQL refused a row we tried to add (ingest): a bad value, not an outage."""


class DuplicateKey(RowRejected):
    """The row's primary or unique key is taken."""


class KeyReused(ConfigError):
    """An Idempotency-Key came back with a different request body."""


def translate_error(exc: pymysql.MySQLError, target: MySQLTarget) -> Exception:
    """Turn a driver error into ConfigError / ServiceUnavailable with one readable line."""
    code = exc.args[0] if exc.args else None
    if code in ACCESS_DENIED:
        return ConfigError(f"MySQL refused the login for {target.describe()} (wrong user or password?)")
    if code == UNKNOWN_DATABASE:
        return ConfigError(f"MySQL database {target.database!r} does not exist")
    if code == DUPLICATE_KEY:
        return DuplicateKey(f"MySQL refused the row: {exc.args[-1]}")
    if code in ROW_REJECTED or isinstance(exc, (pymysql.DataError, pymysql.IntegrityError)):
        return RowRejected(f"MySQL refused the row: {exc.args[-1]}")
    if code in (UNKNOWN_TABLE, UNKNOWN_COLUMN):
        return ConfigError(f"MySQL: {exc.args[1]} (load schema.sql, or check CAMPAIGN_TABLE and the column names)")
    if code == SSL_REQUIRED_BUT_NOT_OFFERED:
        return ConfigError(f"MySQL at {target.describe()} offers no TLS, which ssl-mode={target.ssl_mode} requires")
    refusal = tls_refusal(exc)
    if refusal:
        return ConfigError(
            f"MySQL at {target.describe()}: TLS failed: {refusal}; check ssl-mode, ssl-ca, ssl-cert and ssl-key"
            " in DATABASE_URL (docs/tls.md)"
        )
    if code in LOCK_CONFLICT:
        return ServiceUnavailable(f"MySQL at {target.describe()} ended a write in a lock conflict: {exc.args[-1]}")
    if isinstance(exc, (pymysql.OperationalError, pymysql.InterfaceError)):
        return ServiceUnavailable(f"MySQL at {target.describe()} is unreachable: {exc.args[-1]}")
    return exc


def tls_options(target: MySQLTarget) -> dict:
    """pymysql's TLS arguments for the target's ssl-mode. PREFERRED passes
    none: pymysql then uses TLS when the server offers it, unchecked, as the
    mysql client does; any context makes TLS required (an error when the
    server offers none)."""
    if target.ssl_mode == "DISABLED":
        return {"ssl_disabled": True}
    context = target.tls_context()
    return {"ssl": context} if context else {}


def open_connection(target: MySQLTarget, database: str | None, **options) -> pymysql.connections.Connection:
    """A pymysql connection to `target` on `database` (None: none), over TLS
    as its ssl-mode says; `options` go to pymysql (timeouts, autocommit)."""
    return pymysql.connect(
        host=target.host,
        port=target.port,
        user=target.user,
        password=target.password,
        database=database,
        unix_socket=target.unix_socket,
        **tls_options(target),
        **options,
    )


class CampaignTable:
    """Reads pending rows and records outcomes; one connection, used by one thread."""

    def __init__(
        self,
        target: MySQLTarget,
        table: str,
        phone_column: str,
        status_column: str,
        param_columns: tuple[str, ...] = (),
    ):
        self.target = target
        self.table = identifier(table, "table name")
        self.phone = identifier(phone_column, "phone column")
        self.status = identifier(status_column, "status column")
        # Extra columns the producer reads and carries in each job (message variables).
        self.param_columns = tuple(identifier(name, "message variable column") for name in param_columns)
        self.timestamps: set[str] = set()  # of those, the TIMESTAMP columns (found by check)
        self._connection: pymysql.connections.Connection | None = None
        self._walk_hint: str | None = None  # see walk_hint

    def _execute(self, sql: str, args=None, last_id: bool = False, count: bool = False):
        try:
            if self._connection is None:
                self._connection = open_connection(
                    self.target,
                    self.target.database,
                    autocommit=True,
                    init_command=SESSION,
                    connect_timeout=5,
                    read_timeout=30,
                    write_timeout=30,
                )
            with self._connection.cursor() as cursor:
                changed = cursor.execute(sql, args)
                return cursor.lastrowid if last_id else changed if count else cursor.fetchall()
        except pymysql.MySQLError as exc:
            if isinstance(exc, (pymysql.OperationalError, pymysql.InterfaceError)):
                self.close()  # reconnect on the next call
            raise translate_error(exc, self.target) from None

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except pymysql.MySQLError:
                pass  # the connection is already gone; nothing left to release
            self._connection = None

    def extra(self, alias: str = "") -> str:
        """The message variable columns as a select list continues. A TIMESTAMP
        is read as UTC with its offset: MySQL hands it over in the session's
        time zone, which need not be SEND_TIMEZONE, so a schedule in one would
        move by hours; a DATETIME is wall-clock time and read as it is."""
        names = [f"{alias}{name}" for name in self.param_columns]
        return "".join(
            f", DATE_FORMAT(CONVERT_TZ({name}, @@session.time_zone, '+00:00'), '%%Y-%%m-%%d %%H:%%i:%%s+00:00')"
            if column in self.timestamps
            else f", {name}"
            for name, column in zip(names, self.param_columns)
        )

    def check(self, need_failure_table: bool = False) -> None:
        """Fail at start-up, with one line, if the table or its columns (or, for
        a consumer, the failure and history tables) are missing."""
        self._execute(f"SELECT id, {self.phone}, {self.status}{self.extra()} FROM {self.table} LIMIT 0")
        if self.param_columns:
            rows = self._execute(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
                " AND TABLE_NAME = %s AND DATA_TYPE = 'timestamp'",
                (self.table,),
            )
            self.timestamps = {name for (name,) in rows} & set(self.param_columns)
        if need_failure_table:
            self._execute(f"SELECT row_id, reason FROM {FAILURE_TABLE} LIMIT 0")
            self._execute(f"SELECT row_id, outcome FROM {HISTORY_TABLE} LIMIT 0")
            self.add_generation_table()
            self.add_sender_column()
            self.widen_row_ids()

    def check_ingest_log(self) -> None:
        """The web service needs the table that remembers Idempotency-Keys."""
        self._execute(f"SELECT idempotency_key FROM {INGEST_TABLE} LIMIT 0")

    def add_generation_table(self) -> None:
        """Databases set up before re-sends had their own keys get the table here."""
        self._execute(
            f"CREATE TABLE IF NOT EXISTS {GENERATION_TABLE} (campaign_table VARCHAR(64) NOT NULL,"
            " row_id BIGINT UNSIGNED NOT NULL, generation INT UNSIGNED NOT NULL,"
            " PRIMARY KEY (campaign_table, row_id))"
        )

    def add_sender_column(self) -> None:
        """History tables made before it had a `sender` column get one; the
        project owns that table (never the campaign table)."""
        if self.has_sender_column():
            return
        try:
            self._execute(f"ALTER TABLE {HISTORY_TABLE} ADD COLUMN sender VARCHAR(128) NULL AFTER message_id")
        except CampaignError as exc:
            if not self.has_sender_column():  # else another consumer added it just now
                raise ConfigError(
                    f"{HISTORY_TABLE} lacks the sender column and adding it failed ({exc}); run: "
                    f"ALTER TABLE {HISTORY_TABLE} ADD COLUMN sender VARCHAR(128) NULL"
                ) from None

    def has_sender_column(self) -> bool:
        return bool(
            self._execute(
                "SELECT COUNT(*) FROM information_schema.COLUMNS"
                " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND COLUMN_NAME = 'sender'",
                (HISTORY_TABLE,),
            )[0][0]
        )

    def widen_row_ids(self) -> None:
        """Tables made when row_id was INT take ids up to BIGINT UNSIGNED,
        so a campaign table with large ids does not stop the consumer."""
        narrow = [
            name
            for (name,) in self._execute(
                "SELECT TABLE_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
                " AND TABLE_NAME IN %s AND COLUMN_NAME = 'row_id'"
                " AND NOT (DATA_TYPE = 'bigint' AND COLUMN_TYPE LIKE '%%unsigned%%')",
                (ROW_ID_TABLES,),
            )
        ]
        for name in narrow:
            log.warning("widening %s.row_id to BIGINT UNSIGNED (once; large tables take a while)", name)
            try:
                self._execute(f"ALTER TABLE {name} MODIFY row_id BIGINT UNSIGNED NOT NULL")
            except CampaignError as exc:
                raise ConfigError(
                    f"{name}.row_id is too narrow for large row ids and widening it failed ({exc});"
                    f" run: ALTER TABLE {name} MODIFY row_id BIGINT UNSIGNED NOT NULL"
                ) from None

    def walk_hint(self) -> str:
        """FORCE INDEX for the table's (status, id) index, when it has one.

        Given `status = 1 AND id > after`, MariaDB reads that index by status
        alone (ref) from the first pending row, not from `after` (range): each
        page then steps over every row still pending behind the walk (queued,
        not yet sent: up to MAX_QUEUED), about 80 index entries per row queued
        in the benchmark. Looked up once per connection's table."""
        if self._walk_hint is None:
            found = self._execute(
                "SELECT s1.index_name FROM information_schema.statistics s1"
                " JOIN information_schema.statistics s2 ON s2.table_schema = s1.table_schema"
                " AND s2.table_name = s1.table_name AND s2.index_name = s1.index_name AND s2.seq_in_index = 2"
                " WHERE s1.table_schema = DATABASE() AND s1.table_name = %s AND s1.seq_in_index = 1"
                " AND s1.column_name = %s AND s2.column_name = 'id' LIMIT 1",
                (self.table, self.status),
            )
            name = found[0][0].replace("`", "``") if found else None
            self._walk_hint = f" FORCE INDEX (`{name}`)" if name else ""
        return self._walk_hint

    def pending_rows(self, index: int, of: int, page_size: int, after: int = 0) -> Iterator[list[Row]]:
        """Pending rows of one partition with ids above `after`, in pages, by
        id (keyset pagination).

        Never loads the table into memory, and each page is a range read on
        the (status, id) index (see walk_hint) whatever the number of processed
        rows and of pending rows behind the walk.
        """
        while True:
            page = [
                self.row(values)
                for values in self._execute(
                    f"SELECT id, {self.phone}{self.extra()} FROM {self.table}{self.walk_hint()}"
                    f" WHERE {self.status} = %s AND id > %s AND id %% %s = %s"
                    f" ORDER BY id LIMIT %s",
                    (PENDING, after, of, index, page_size),
                )
            ]
            if page:
                yield page
            if len(page) < page_size:
                return
            after = page[-1].id

    def row(self, values: tuple, generation: int = 0) -> Row:
        row_id, phone, *params = values
        return Row(
            int(row_id),
            as_text(phone),
            {name: as_text(value) or "" for name, value in zip(self.param_columns, params)},
            generation,
        )

    def pending_among(self, ids: list[int]) -> dict[int, Row]:
        """Which of these rows are still pending; a job for any other row is stale."""
        if not ids:
            return {}
        rows = self._execute(
            f"SELECT c.id, c.{self.phone}{self.extra('c.')}, g.generation FROM {self.table} c"
            f" LEFT JOIN {GENERATION_TABLE} g ON g.campaign_table = %s AND g.row_id = c.id"
            f" WHERE c.{self.status} = %s AND c.id IN ({id_list(ids)})",
            (self.table, PENDING),
        )
        return {row.id: row for row in (self.row(values[:-1], values[-1] or 0) for values in rows)}

    @contextmanager
    def transaction(self):
        """Statements inside commit together. On any error the connection is
        dropped, so the server rolls back what it did not commit."""
        self._execute("START TRANSACTION")
        try:
            yield
            self._execute("COMMIT")
        except BaseException:
            self.close()
            raise

    def record(self, sent: list[int], failures: list[Failure], history: list[Attempt]) -> None:
        """Write what a batch of sends came to, in one transaction: pending
        rows set sent or failed (never a failed one over a sent one), each
        recorded row's send generation raised, failure reasons, and the
        attempts' history lines. No reader sees a failed row without its
        reason, and a crash loses no history line of a recorded row (its
        message id is what receipts are matched by).

        The generation statement reads the batch's rows FOR UPDATE in one go,
        in key order, so two consumers recording the same rows (the
        documented repeat window) queue on the first row, and the second
        finds them no longer pending: their generation is raised once, and a
        row the other consumer sent gets no failure reason. Every statement
        finds rows by primary key: through the pending-rows index, the
        waiting consumer's lock would also cover the gap the first one's
        UPDATE moves the rows into, and InnoDB would end one as a deadlock."""
        failed = [f.row_id for f in failures]
        if not (sent or failed or history):
            return
        with self.transaction():
            if sent or failed:
                self._execute(
                    f"INSERT INTO {GENERATION_TABLE} (campaign_table, row_id, generation)"
                    f" SELECT %s, id, 1 FROM {self.table} FORCE INDEX (PRIMARY)"
                    f" WHERE {self.status} = %s AND id IN ({id_list(sent + failed)}) FOR UPDATE"
                    f" ON DUPLICATE KEY UPDATE generation = generation + 1",
                    (self.table, PENDING),
                )
            if sent:
                self._set_pending(sent, SENT)
            if failed:
                self._set_pending(failed, FAILED)
                self._keep_reasons(failures)
            if history:
                self._insert_attempts(history)

    def _set_pending(self, ids: list[int], status: int) -> None:
        self._execute(
            f"UPDATE {self.table} FORCE INDEX (PRIMARY) SET {self.status} = %s"
            f" WHERE {self.status} = %s AND id IN ({id_list(ids)})",
            (status, PENDING),
        )

    def _keep_reasons(self, failures: list[Failure]) -> None:
        """Why each row failed, for those of them that are failed now."""
        rows = id_list([f.row_id for f in failures])
        failed = {
            row_id
            for (row_id,) in self._execute(
                f"SELECT id FROM {self.table} FORCE INDEX (PRIMARY) WHERE {self.status} = %s AND id IN ({rows})",
                (FAILED,),
            )
        }
        reasons = [f for f in failures if f.row_id in failed]
        if not reasons:
            return
        args = []
        for f in reasons:
            args += [self.table, f.row_id, f.attempts, f.http_status, storable(f.reason, REASON_LENGTH)]
        self._execute(
            f"INSERT INTO {FAILURE_TABLE} (campaign_table, row_id, attempts, http_status, reason)"
            f" VALUES {', '.join(['(%s, %s, %s, %s, %s)'] * len(reasons))}"
            " ON DUPLICATE KEY UPDATE attempts = VALUES(attempts),"
            " http_status = VALUES(http_status), reason = VALUES(reason), failed_at = CURRENT_TIMESTAMP",
            args,
        )

    def resend_failed(self, reason: str | None = None, partition: tuple[int, int] | None = None) -> int:
        """Set failed rows back to pending (those whose reason contains
        `reason`, in partition (index, of)) and forget why they failed; returns
        how many. Their send generation was raised when they failed, so each
        goes out with a new idempotency key. Producers queue them on their next
        full scan."""
        where, args = [f"c.{self.status} = %s"], [self.table, FAILED]
        if reason:
            where.append("f.reason LIKE %s")
            args.append("%" + reason.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if partition:
            where.append("c.id %% %s = %s")
            args += [partition[1], partition[0]]
        join = "JOIN" if reason else "LEFT JOIN"
        with self.transaction():
            changed = self._execute(
                f"UPDATE {self.table} c {join} {FAILURE_TABLE} f ON f.campaign_table = %s AND f.row_id = c.id"
                f" SET c.{self.status} = {PENDING} WHERE {' AND '.join(where)}",
                args,
                count=True,
            )
            self._execute(
                f"DELETE f FROM {FAILURE_TABLE} f JOIN {self.table} c ON c.id = f.row_id"
                f" WHERE f.campaign_table = %s AND c.{self.status} = %s",
                (self.table, PENDING),
            )
        return changed

    def ping(self) -> None:
        self._execute("SELECT 1")

    def message_columns(self) -> set[str]:
        """Columns of the campaign table other than id, phone and status: where message variables live."""
        rows = self._execute(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
            (self.table,),
        )
        return {name for (name,) in rows} - {"id", self.phone, self.status}

    def insert_pending(self, rows, request: tuple[str, str] | None = None) -> tuple[list[int], bool]:
        """Add rows (phone, params) as pending, all or none, in one transaction.
        Returns their ids, and whether they are an earlier request's.

        `request` is (idempotency key, body digest). The key is recorded in the
        same transaction, so a retry finds it taken and gets the first
        request's ids instead of adding the rows again; a retry racing the
        first waits on the key's row lock until the first commits."""
        with self.transaction():
            if request:
                try:
                    self._execute(
                        f"INSERT INTO {INGEST_TABLE} (campaign_table, idempotency_key, body_sha256, ids)"
                        f" VALUES (%s, %s, %s, '')",
                        (self.table, *request),
                    )
                except DuplicateKey:
                    self._execute("ROLLBACK")
                    return self.earlier_request(*request), True
            ids = []
            for row in rows:
                names = ", ".join([self.phone, self.status, *row.params])
                marks = ", ".join(["%s"] * (2 + len(row.params)))
                ids.append(
                    self._execute(
                        f"INSERT INTO {self.table} ({names}) VALUES ({marks})",
                        (row.phone, PENDING, *row.params.values()),
                        last_id=True,
                    )
                )
            if request:
                self._execute(
                    f"UPDATE {INGEST_TABLE} SET ids = %s WHERE campaign_table = %s AND idempotency_key = %s",
                    (json.dumps(ids), self.table, request[0]),
                )
        return ids, False

    def earlier_request(self, key: str, digest: str) -> list[int]:
        found = self._execute(
            f"SELECT body_sha256, ids FROM {INGEST_TABLE} WHERE campaign_table = %s AND idempotency_key = %s",
            (self.table, key),
        )
        if not found:  # deleted between our insert and this read: the client may try again
            raise ServiceUnavailable(f"Idempotency-Key {key!r} was being cleared; try the request again")
        ((earlier_digest, ids),) = found
        if earlier_digest != digest:
            raise KeyReused(
                f"Idempotency-Key {key!r} was used before with a different body; use a new key for a new request"
            )
        return json.loads(ids)

    def counts_by_partition(self, of: int) -> dict[int, dict[int, int]]:
        """{partition index: {status: rows}}: one pass over the (status, id) index."""
        counts: dict[int, dict[int, int]] = {index: {} for index in range(of)}
        for index, status, rows in self._execute(
            f"SELECT id %% %s, {self.status}, COUNT(*) FROM {self.table} GROUP BY 1, 2", (of,)
        ):
            if status is not None:
                counts[int(index)][int(status)] = int(rows)
        return counts

    def recent_failures(self, limit: int = 20) -> list[dict]:
        rows = self._execute(
            f"SELECT row_id, attempts, http_status, reason, failed_at FROM {FAILURE_TABLE}"
            f" WHERE campaign_table = %s ORDER BY failed_at DESC, row_id DESC LIMIT %s",
            (self.table, limit),
        )
        return [
            {
                "row_id": row_id,
                "attempts": attempts,
                "http_status": status,
                "reason": reason,
                "failed_at": failed_at.isoformat(sep=" "),
            }
            for row_id, attempts, status, reason, failed_at in rows
        ]

    def failure_reasons(self, limit: int = 5) -> list[tuple[str, int]]:
        """The commonest reasons rows failed, with how many rows each."""
        return [
            (reason, int(rows))
            for reason, rows in self._execute(
                f"SELECT reason, COUNT(*) FROM {FAILURE_TABLE} WHERE campaign_table = %s"
                f" GROUP BY reason ORDER BY 2 DESC LIMIT %s",
                (self.table, limit),
            )
        ]

    def _insert_attempts(self, attempts: list[Attempt]) -> None:
        """Append to the delivery history, all in one INSERT."""
        values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(attempts))
        args = []
        for a in attempts:
            args += [
                self.table,
                a.row_id,
                a.attempt,
                a.outcome,
                a.http_status,
                storable(a.message_id, MESSAGE_ID_LENGTH) if a.message_id else None,
                storable(a.sender, MESSAGE_ID_LENGTH) if a.sender else None,
                storable(a.error, REASON_LENGTH) if a.error else None,
                a.latency_ms,
            ]
        self._execute(
            f"INSERT INTO {HISTORY_TABLE} (campaign_table, row_id, attempt, outcome, http_status,"
            f" message_id, sender, error, latency_ms) VALUES {values}",
            args,
        )
