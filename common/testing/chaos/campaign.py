"""The campaign as the harness sees it: the table in the private MariaDB
(seeded, counted, read through a MySQL restart) and how a row's id maps to
its phone and its idempotency key, so the mock's counts can be checked."""

import pymysql
import redis

from common.queue.jobs import JobQueue
from common.settings import Partition
from common.store.campaign import FAILED, PENDING, SENT
from common.testing.chaos.config import DATABASE, TABLE
from common.testing.services import MariaDB, load_schema


class Unreachable(Exception):
    """The private MySQL does not answer (it is being restarted)."""


class Campaign:
    """The harness's view of the campaign table; reconnects after an outage."""

    def __init__(self, mariadb: MariaDB):
        self.mariadb = mariadb
        self.connection: pymysql.connections.Connection | None = None

    def query(self, sql: str, args=None) -> tuple:
        try:
            if self.connection is None:
                self.connection = self.mariadb.connect(DATABASE)
            with self.connection.cursor() as cursor:
                cursor.execute(sql, args)
                return cursor.fetchall()
        except (pymysql.OperationalError, pymysql.InterfaceError) as exc:
            self.close()
            raise Unreachable(str(exc)) from None

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except pymysql.MySQLError:
                pass  # the server already dropped it
            self.connection = None

    def create(self, rows: int) -> None:
        """The database, schema.sql, and `rows` pending rows with ids 1..rows."""
        with self.mariadb.connect(None) as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE}")
            cursor.execute(f"USE {DATABASE}")
            load_schema(cursor)
            # The phone of row N is phone_of(N), so the mock's count per phone checks its count per key.
            cursor.execute(
                f"INSERT INTO {TABLE} (id, column1, column3)"
                f" SELECT seq, CONCAT('62812', LPAD(seq, 8, '0')), {PENDING} FROM seq_1_to_{rows}"
            )

    def counts(self) -> dict[int, int]:
        """Rows by status: PENDING, SENT, FAILED."""
        found = dict(self.query(f"SELECT column3, COUNT(*) FROM {TABLE} GROUP BY column3"))
        return {status: int(found.get(status, 0)) for status in (PENDING, SENT, FAILED)}

    def ids(self, status: int, partition: int | None = None) -> set[int]:
        sql = f"SELECT id FROM {TABLE} WHERE column3 = %s"
        args = [status]
        if partition is not None:
            sql += " AND id %% 2 = %s"
            args.append(partition)
        return {row_id for (row_id,) in self.query(sql, args)}

    def rows_with_history(self, outcome: str) -> set[int]:
        """Rows with at least one history line of `outcome` (sent, retry, failed)."""
        sql = "SELECT DISTINCT row_id FROM delivery_attempts WHERE campaign_table = %s AND outcome = %s"
        return {row_id for (row_id,) in self.query(sql, (TABLE, outcome))}


def phone_of(row_id: int) -> str:
    return f"62812{row_id:08d}"


def row_of(key: str) -> int | None:
    """The row id in an idempotency key `<table>:<id>`, or None if the key is not one of ours."""
    table, _, row_id = key.partition(":")
    return int(row_id) if table == TABLE and row_id.isdigit() else None


def deliveries_by_row(deliveries: dict[str, int]) -> dict[int, int]:
    return {row_id: count for key, count in deliveries.items() if (row_id := row_of(key)) is not None}


def queues(client: redis.Redis) -> list[JobQueue]:
    """The two partitions' queues, for their key names."""
    return [JobQueue(client, Partition(index, 2)) for index in (0, 1)]
