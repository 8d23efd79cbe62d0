"""What tests, the benchmark and the chaos run share to stand up services:
free ports, the schema loaded statement by statement, URLs for a database,
a connection to one, a throwaway certificate authority (openssl), and
throwaway redis-server and MariaDB instances of their own (on free ports, so
stopping or killing them harms nothing else), over TLS when given one."""

import dataclasses
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pymysql
import redis

from common.settings import MySQLTarget
from common.store import schema
from common.store.campaign import open_connection
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


def database_url(target: MySQLTarget) -> str:
    """mysql://... for a MySQLTarget, as DATABASE_URL takes it (user and password quoted, TLS options kept)."""
    password = f":{quote(target.password, safe='')}" if target.password else ""
    where = f"{target.host}:{target.port}"
    return f"mysql://{quote(target.user, safe='')}{password}@{where}/{target.database}{target.query()}"


def connect_mysql(target: MySQLTarget, database: str | None, **options) -> pymysql.connections.Connection:
    """An autocommit pymysql connection to `target` on `database` (None: no
    database, to create or drop one), over TLS as the target's ssl-mode says;
    `options` go to pymysql (timeouts)."""
    return open_connection(target, database, autocommit=True, **options)


@dataclass(frozen=True)
class Certificates:
    """PEM files of a throwaway certificate authority: a server certificate
    for 127.0.0.1 and localhost, a client certificate, both signed by `ca`,
    and `other_ca`, which signed neither (a wrong CA)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def openssl(workdir: Path, *args: str) -> None:
    done = subprocess.run(
        [installed(shutil.which("openssl"), "openssl"), *args], cwd=workdir, capture_output=True, text=True
    )
    if done.returncode:
        raise SetupFailed(f"openssl {args[0]} failed: {done.stderr.strip()}")


def make_certificates(workdir: Path) -> Certificates:
    """A CA, server and client certificates (EC keys: quick to make) valid for
    two days, made with the openssl command line, in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes".split()
    for name in ("ca", "other-ca"):
        making = f"req -x509 -days 2 -keyout {name}.key -out {name}.crt"
        openssl(workdir, *making.split(), *key, "-subj", f"/CN=campaign test {name}")
    uses = {
        "server": "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        "client": "extendedKeyUsage=clientAuth\n",
    }
    for name, extensions in uses.items():
        (workdir / f"{name}.ext").write_text("basicConstraints=CA:FALSE\n" + extensions)
        openssl(workdir, *f"req -keyout {name}.key -out {name}.csr".split(), *key, "-subj", f"/CN=campaign {name}")
        serial = str(int.from_bytes(os.urandom(8), "big"))
        signing = f"x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -days 2 -extfile {name}.ext -out {name}.crt"
        openssl(workdir, *signing.split(), "-set_serial", serial)
    return Certificates(
        ca=workdir / "ca.crt",
        server_cert=workdir / "server.crt",
        server_key=workdir / "server.key",
        client_cert=workdir / "client.crt",
        client_key=workdir / "client.key",
        other_ca=workdir / "other-ca.crt",
    )


class RedisServer:
    """A private redis-server without persistence: killed and started again, it
    is empty. Given `tls`, it listens for TLS only (no plain port) and wants a
    client certificate signed by the CA, as managed services may."""

    def __init__(self, workdir: Path, logs: Path, tls: Certificates | None = None):
        self.binary = find_server("redis-server")
        self.workdir = workdir
        self.log = logs / "redis-server.log"
        self.port = free_port()
        self.tls = tls
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        if self.tls is None:
            return f"redis://127.0.0.1:{self.port}/0"
        return (
            f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={quote(str(self.tls.ca))}"
            f"&ssl_certfile={quote(str(self.tls.client_cert))}&ssl_keyfile={quote(str(self.tls.client_key))}"
        )

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=10, socket_connect_timeout=2)

    def answers(self) -> bool:
        try:
            return self.client().ping()
        except redis.RedisError:
            return False

    def listening(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            str(self.tls.server_cert),
            "--tls-key-file",
            str(self.tls.server_key),
            "--tls-ca-cert-file",
            str(self.tls.ca),
        ]

    def start(self) -> None:
        """Start it and wait until it answers."""
        self.process = spawn(
            [
                installed(self.binary, "redis-server"),
                *self.listening(),
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

    def stop(self) -> None:
        stop_process(self.process, 10)


class MariaDB:
    """A private MariaDB whose data lives in `workdir`. Its root has no
    password and it listens on 127.0.0.1 only, so that is safe here."""

    def __init__(self, workdir: Path, logs: Path, database: str, tls: Certificates | None = None):
        self.server = find_server("mariadbd") or find_server("mysqld")
        self.install_db = find_server("mariadb-install-db") or find_server("mysql_install_db")
        self.workdir = workdir
        self.datadir = workdir / "mysql-data"
        self.logs = logs
        self.log = logs / "mariadbd.log"
        self.port = free_port()
        self.tls = tls
        self.target = MySQLTarget("127.0.0.1", self.port, "root", "", database)
        if tls is not None:
            # Its root then connects as a client of a managed server should: checking the certificate.
            self.target = dataclasses.replace(self.target, ssl_mode="VERIFY_IDENTITY", ssl_ca=str(tls.ca))
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
                *self.tls_options(),
            ],
            self.log,
        )

    def tls_options(self) -> list[str]:
        if self.tls is None:
            return []
        return [f"--ssl-ca={self.tls.ca}", f"--ssl-cert={self.tls.server_cert}", f"--ssl-key={self.tls.server_key}"]

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
