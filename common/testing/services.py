"""What tests, the benchmark and the chaos run share to stand up services:
free ports, the schema loaded statement by statement, URLs for a database,
a connection to one, and throwaway redis-server and MariaDB instances of
their own (on free ports, so stopping or killing them harms nothing else)."""

import os
import socket
import subprocess
from pathlib import Path
from urllib.parse import quote

import pymysql
import redis

from common.settings import MySQLTarget
from common.store import schema
from common.testing.processes import SetupFailed, find_server, spawn, stop_process, wait_until


def installed(binary: str | None, name: str) -> str:
    """`binary`, found by find_server; SetupFailed when it is not installed (a
    harness checks all of its servers first, to name every one missing)."""
    if binary is None:
        raise SetupFailed(f"{name} is not installed")
    return binary


def free_port() -> int:
    """A TCP port on loopback nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load_schema(cursor) -> None:
    """Create the project's tables with a pymysql cursor on the target database."""
    for statement in schema.statements():
        cursor.execute(statement)


def database_url(target) -> str:
    """mysql://... for a MySQLTarget, as DATABASE_URL takes it (user and password quoted)."""
    password = f":{quote(target.password, safe='')}" if target.password else ""
    where = f"{target.host}:{target.port}"
    socket_part = f"?unix_socket={quote(target.unix_socket)}" if target.unix_socket else ""
    return f"mysql://{quote(target.user, safe='')}{password}@{where}/{target.database}{socket_part}"


def connect_mysql(target: MySQLTarget, database: str | None, **options) -> pymysql.connections.Connection:
    """An autocommit pymysql connection to `target` on `database` (None: no
    database, to create or drop one); `options` go to pymysql (timeouts)."""
    return pymysql.connect(
        host=target.host,
        port=target.port,
        user=target.user,
        password=target.password,
        unix_socket=target.unix_socket,
        database=database,
        autocommit=True,
        **options,
    )


class RedisServer:
    """A private redis-server without persistence: killed and started again, it is empty."""

    def __init__(self, workdir: Path, logs: Path):
        self.binary = find_server("redis-server")
        self.workdir = workdir
        self.log = logs / "redis-server.log"
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=10, socket_connect_timeout=2)

    def answers(self) -> bool:
        try:
            return self.client().ping()
        except redis.RedisError:
            return False

    def start(self) -> None:
        """Start it and wait until it answers."""
        self.process = spawn(
            [
                installed(self.binary, "redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            self.log,
        )
        wait_until(self.answers, 10, "redis-server answering", self.log)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None, "kill() before start()"
        self.process.kill()
        self.process.wait()


class MariaDB:
    """A private MariaDB whose data lives in `workdir`. Its root has no
    password and it listens on 127.0.0.1 only, so that is safe here."""

    def __init__(self, workdir: Path, logs: Path, database: str):
        self.server = find_server("mariadbd") or find_server("mysqld")
        self.install_db = find_server("mariadb-install-db") or find_server("mysql_install_db")
        self.workdir = workdir
        self.datadir = workdir / "mysql-data"
        self.logs = logs
        self.log = logs / "mariadbd.log"
        self.port = free_port()
        self.target = MySQLTarget("127.0.0.1", self.port, "root", "", database)
        # mariadbd refuses to run as root unless told to.
        self.user_option = ["--user=root"] if os.geteuid() == 0 else []
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return database_url(self.target)

    def install(self) -> None:
        """A fresh data directory (mariadb-install-db)."""
        install_db = installed(self.install_db, "mariadb-install-db")
        with open(self.logs / "mariadb-install-db.log", "wb") as log:
            done = subprocess.run(
                [
                    install_db,
                    "--no-defaults",
                    f"--datadir={self.datadir}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    *self.user_option,
                ],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if done.returncode:
            raise SetupFailed(f"mariadb-install-db failed; see {log.name}")

    def start(self) -> None:
        """Start the server; `connect` works once it is ready (see `answers`)."""
        # Its own socket and pid file: the defaults belong to the machine's server.
        self.process = spawn(
            [
                installed(self.server, "mariadbd"),
                "--no-defaults",
                *self.user_option,
                f"--datadir={self.datadir}",
                f"--socket={self.workdir / 'mysql.sock'}",
                f"--pid-file={self.workdir / 'mysql.pid'}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--log-error={self.log}",
            ],
            self.log,
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def connect(self, database: str | None) -> pymysql.connections.Connection:
        """A connection as root to `database` (None: to none, to create one), with
        short connect and I/O timeouts, since the server may be restarting."""
        return connect_mysql(self.target, database, connect_timeout=2, read_timeout=30, write_timeout=30)

    def answers(self) -> bool:
        try:
            self.connect(None).close()
            return True
        except pymysql.MySQLError:
            return False

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), waiting until the server has exited."""
        if stop_process(self.process, 60) is None:
            raise SetupFailed(f"mariadbd did not stop within 60 s of SIGTERM; see {self.log}")
