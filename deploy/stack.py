"""The local stack: a real Apache Kafka broker and a real PostgreSQL cluster on loopback.

Here (no Docker engine) both run from packages: Kafka's own broker jars resolved from Maven
Central with Maven (``deploy/kafka/pom.xml``), and Debian's PostgreSQL 15 server (installed with
apt-get when missing). Everything the stack writes lives under :func:`state_dir`; downloads live
under :func:`cache_dir`, outside the repository.

Start is idempotent (a running broker or cluster is reused), stop is clean (SIGTERM, then the
broker's shutdown hook; ``pg_ctl stop -m fast``), readiness means a Kafka metadata request from
Python succeeds and PostgreSQL accepts a connection.

The settings the services use are written to ``stack.env`` in the state directory, which every
service's settings class reads (see :mod:`shared.settings`).

Errors: :class:`StackError` when a component cannot be installed, started or reached in time.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KAFKA_VERSION",
    "StackError",
    "StackSettings",
    "cache_dir",
    "ensure_topics",
    "kafka_status",
    "postgres_status",
    "stack_down",
    "stack_env",
    "stack_up",
    "state_dir",
    "wait_for_kafka",
]

KAFKA_VERSION = "4.1.1"
SERVICES = ("roster", "dispatch", "notify")
DATABASES = (*SERVICES, "test")  # "test": scratch database of the integration tests
DEPLOY = Path(__file__).resolve().parent
PG_VERSION = "15"


class StackError(RuntimeError):
    """A stack component could not be installed, started or reached."""


def state_dir() -> Path:
    """Where the stack keeps data, logs and pid files (``MUSTER_STATE_DIR``, default ``/var/lib/muster`` as root)."""
    if env := os.environ.get("MUSTER_STATE_DIR"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/muster")
    return Path.home() / ".local" / "state" / "muster"


def cache_dir() -> Path:
    """Where downloaded jars are kept (``MUSTER_CACHE_DIR``, default ``~/.cache/muster``)."""
    return Path(os.environ.get("MUSTER_CACHE_DIR", Path.home() / ".cache" / "muster"))


@dataclass(frozen=True)
class StackSettings:
    """Ports of the local stack on 127.0.0.1, each overridable by environment variable.

    ``MUSTER_KAFKA_PORT`` 9092, ``MUSTER_KAFKA_CONTROLLER_PORT`` 9093, ``MUSTER_PG_PORT`` 55432, and the HTTP ports
    ``MUSTER_ROSTER_PORT`` 8101, ``MUSTER_DISPATCH_PORT`` 8102, ``MUSTER_NOTIFY_PORT`` 8103,
    ``MUSTER_SIMULATOR_PORT`` 8190. With another ``MUSTER_STATE_DIR`` and other ports a second stack runs beside
    the first (the fault drills use this while benchmarks run).
    """

    kafka_port: int = int(os.environ.get("MUSTER_KAFKA_PORT", "9092"))
    kafka_controller_port: int = int(os.environ.get("MUSTER_KAFKA_CONTROLLER_PORT", "9093"))
    pg_port: int = int(os.environ.get("MUSTER_PG_PORT", "55432"))
    roster_port: int = int(os.environ.get("MUSTER_ROSTER_PORT", "8101"))
    dispatch_port: int = int(os.environ.get("MUSTER_DISPATCH_PORT", "8102"))
    notify_port: int = int(os.environ.get("MUSTER_NOTIFY_PORT", "8103"))
    simulator_port: int = int(os.environ.get("MUSTER_SIMULATOR_PORT", "8190"))

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def url(self, service: str) -> str:
        """Base URL of ``roster``, ``dispatch``, ``notify`` or ``simulator``, e.g. ``http://127.0.0.1:8102``."""
        return f"http://127.0.0.1:{getattr(self, f'{service}_port')}"


def _log(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


def _pid_alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


# --------------------------------------------------------------------------- Kafka


def kafka_libs() -> Path:
    return cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"


def ensure_kafka_libs() -> Path:
    """Resolve the broker's jars from Maven Central into the cache (once).

    Raises:
        StackError: Maven is missing or the resolution failed.

    """
    libs = kafka_libs()
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        _log("installing maven with apt-get")
        _apt_install(["maven", "default-jre-headless"])
        mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("maven (mvn) is not installed and could not be installed")
    libs.mkdir(parents=True, exist_ok=True)
    _log(f"resolving org.apache.kafka:kafka_2.13:{KAFKA_VERSION} from Maven Central into {libs}")
    cmd = [
        mvn, "-B", "-q", "-f", str(DEPLOY / "kafka" / "pom.xml"), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={libs}", f"-Dkafka.version={KAFKA_VERSION}",
    ]
    if repo := os.environ.get("MUSTER_MAVEN_REPO"):  # a separate local repository (cold-start measurements)
        cmd.append(f"-Dmaven.repo.local={repo}")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise StackError(f"maven could not resolve the Kafka broker:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if not list(libs.glob("kafka_2.13-*.jar")):
        raise StackError(f"maven finished but no kafka_2.13 jar is in {libs}")
    marker.write_text(KAFKA_VERSION)
    return libs


def _kafka_dir() -> Path:
    return state_dir() / "kafka"


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        _apt_install(["default-jre-headless"])
        java = shutil.which("java")
    if java is None:
        raise StackError("java is not installed and could not be installed")
    return java


def new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID in URL-safe base64 without padding, never starting with ``-``.

    As Kafka's ``Uuid.randomUuid()`` (``kafka-storage random-uuid``) does: an id starting with ``-`` is
    read by ``kafka-storage format -t`` as an option, and formatting fails (1 fresh machine in 64).
    """
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def kafka_start(settings: StackSettings, *, ready_timeout: float = 90.0) -> None:
    """Start the broker unless one is already running; wait until it answers metadata requests.

    Args:
        settings: ports and state directory.
        ready_timeout: seconds to wait for the started broker to answer (a restart loads every partition's
            log: on a loaded 2-core machine with a test suite's topics this took two minutes).

    Raises:
        StackError: the broker did not answer within ``ready_timeout`` seconds (with the log's tail).

    """
    kdir = _kafka_dir()
    pidfile = kdir / "broker.pid"
    if _pid_alive(pidfile):
        _log(f"kafka already running (pid {pidfile.read_text().strip()}), reusing it")
        asyncio.run(wait_for_kafka(settings.bootstrap, timeout=60))
        return
    libs = ensure_kafka_libs()
    java = _java()
    data = kdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    props = kdir / "server.properties"
    template = (DEPLOY / "kafka" / "server.properties.in").read_text()
    props.write_text(
        template.format(port=settings.kafka_port, controller_port=settings.kafka_controller_port, data_dir=data)
    )
    cp = f"{libs}/*"
    log4j = f"-Dlog4j2.configurationFile={DEPLOY / 'kafka' / 'log4j2.properties'}"
    if not (data / "meta.properties").exists():
        cluster_id = (kdir / "cluster.id").read_text().strip() if (kdir / "cluster.id").exists() else None
        if not cluster_id:
            cluster_id = new_cluster_id()
            (kdir / "cluster.id").write_text(cluster_id)
        _log("formatting KRaft storage")
        proc = subprocess.run(
            [java, "-Xmx256m", "-cp", cp, log4j, "kafka.tools.StorageTool", "format", "-t", cluster_id,
             "-c", str(props), "--ignore-formatted"],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            raise StackError(f"kafka storage format failed: {proc.stdout}\n{proc.stderr}")
    logfile = kdir / "broker.log"
    _log(f"starting kafka {KAFKA_VERSION} on {settings.bootstrap} (log: {logfile})")
    with logfile.open("ab") as out:
        proc2 = subprocess.Popen(
            [java, "-Xms256m", "-Xmx768m", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
             "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
             "-Djava.awt.headless=true", f"-Dkafka.logs.dir={kdir / 'logs'}", log4j,
             "-cp", cp, "kafka.Kafka", str(props)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    pidfile.write_text(str(proc2.pid))
    try:
        asyncio.run(wait_for_kafka(settings.bootstrap, timeout=ready_timeout))
    except Exception as exc:
        tail = logfile.read_text(errors="replace")[-3000:]
        raise StackError(f"kafka did not become ready: {exc}\n{tail}") from exc


async def wait_for_kafka(bootstrap: str, *, timeout: float = 90.0) -> None:
    """Wait until a metadata request and a coordinator lookup succeed.

    Args:
        bootstrap: ``host:port`` of a broker.
        timeout: seconds to wait before raising.

    Raises:
        StackError: not ready within ``timeout`` seconds.

    """
    import logging

    from aiokafka.admin import AIOKafkaAdminClient

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # "Unable connect" is expected while it starts
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Exception | None = None
    while loop.time() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            if cluster["brokers"]:
                await admin.find_coordinator("readiness")
                return
        except Exception as exc:  # not ready yet: connection refused, coordinator not available
            last = exc
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
    raise StackError(f"kafka at {bootstrap} not ready after {timeout}s: {last!r}")


def kafka_stop() -> None:
    """Stop the broker with SIGTERM (its shutdown hook flushes and closes) and wait for it."""
    pidfile = _kafka_dir() / "broker.pid"
    pid = _pid_alive(pidfile)
    if not pid:
        _log("kafka not running")
        return
    _log(f"stopping kafka (pid {pid})")
    os.kill(pid, signal.SIGTERM)
    for _ in range(600):
        if not _pid_alive(pidfile):
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


def kafka_status() -> str:
    pid = _pid_alive(_kafka_dir() / "broker.pid")
    return f"running (pid {pid})" if pid else "stopped"


def ensure_topics(bootstrap: str) -> None:
    """Create every topic of the contract (:mod:`shared.topics`) that does not exist yet."""
    from shared.topics import ensure_topics as _ensure

    asyncio.run(_ensure(bootstrap))


# --------------------------------------------------------------------------- PostgreSQL


def _apt_install(packages: list[str]) -> None:
    if os.geteuid() != 0:
        raise StackError(f"missing {packages}; install them with apt-get (needs root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=False, env=env, capture_output=True)
    proc = subprocess.run(["apt-get", "install", "-y", "-q", *packages], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise StackError(f"apt-get install {packages} failed: {proc.stderr[-2000:]}")


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        _log("installing PostgreSQL server with apt-get")
        _apt_install([f"postgresql-{PG_VERSION}"])
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        raise StackError("PostgreSQL server binaries not found under /usr/lib/postgresql")
    return found[-1].parent


def _pg_dir() -> Path:
    return state_dir() / "postgres"


def _as_pg_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the ``postgres`` OS user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _pg_owner() -> tuple[int, int]:
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        return pw.pw_uid, pw.pw_gid
    return os.getuid(), os.getgid()


def postgres_start(settings: StackSettings) -> None:
    """Initialise (once) and start a cluster on 127.0.0.1; create one role and database per service."""
    pgbin = _pg_bin()
    pdir = _pg_dir()
    data = pdir / "data"
    run = pdir / "run"
    uid, gid = _pg_owner()
    for d in (pdir, run):
        d.mkdir(parents=True, exist_ok=True)
        os.chown(d, uid, gid)
    state_dir().chmod(0o755)
    if not (data / "PG_VERSION").exists():
        _log(f"initialising PostgreSQL cluster in {data}")
        pwfile = pdir / "superuser.pw"
        pwfile.write_text(secrets.token_urlsafe(24))
        os.chown(pwfile, uid, gid)
        pwfile.chmod(0o600)
        subprocess.run(
            _as_pg_user([str(pgbin / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=peer",
                         "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8"]),
            check=True, capture_output=True,
        )
        conf = data / "postgresql.conf"
        with conf.open("a") as f:
            f.write(
                f"\n# muster local stack\nlisten_addresses = '127.0.0.1'\nport = {settings.pg_port}\n"
                f"unix_socket_directories = '{run}'\nmax_connections = 200\nshared_buffers = 256MB\n"
                "fsync = on\nsynchronous_commit = on\nlogging_collector = off\n"
            )
    status = subprocess.run(_as_pg_user([str(pgbin / "pg_ctl"), "-D", str(data), "status"]), capture_output=True)
    if status.returncode == 0:
        _log("postgres already running, reusing it")
    else:
        _log(f"starting PostgreSQL on 127.0.0.1:{settings.pg_port} (log: {pdir / 'postgres.log'})")
        logf = pdir / "postgres.log"
        logf.touch()
        os.chown(logf, uid, gid)
        proc = subprocess.run(
            _as_pg_user([str(pgbin / "pg_ctl"), "-D", str(data), "-l", str(logf), "-w", "-t", "60", "start"]),
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise StackError(f"postgres did not start: {proc.stdout}{proc.stderr}\n{logf.read_text()[-2000:]}")
    _ensure_service_databases(pgbin, settings)


def _psql(pgbin: Path, settings: StackSettings, sql: str, db: str = "postgres") -> str:
    proc = subprocess.run(
        _as_pg_user([str(pgbin / "psql"), "-h", str(_pg_dir() / "run"), "-p", str(settings.pg_port), "-U",
                     "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-qAtc", sql]),
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise StackError(f"psql failed: {proc.stderr}")
    return proc.stdout


def _service_passwords() -> dict[str, str]:
    pwfile = state_dir() / "service-passwords"
    known: dict[str, str] = {}
    if pwfile.exists():
        for line in pwfile.read_text().splitlines():
            name, _, pw = line.partition("=")
            known[name] = pw
    changed = False
    for svc in DATABASES:
        if svc not in known:
            known[svc] = secrets.token_urlsafe(18)
            changed = True
    if changed:
        pwfile.write_text("".join(f"{k}={v}\n" for k, v in known.items()))
        pwfile.chmod(0o600)
    return known


def _ensure_service_databases(pgbin: Path, settings: StackSettings) -> None:
    for svc, pw in _service_passwords().items():
        role = f"muster_{svc}"
        exists = _psql(pgbin, settings, f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'").strip()
        verb = "ALTER" if exists else "CREATE"
        _psql(pgbin, settings, f"{verb} ROLE {role} LOGIN PASSWORD '{pw}'")
        if not _psql(pgbin, settings, f"SELECT 1 FROM pg_database WHERE datname = '{role}'").strip():
            _psql(pgbin, settings, f"CREATE DATABASE {role} OWNER {role}")


def postgres_stop() -> None:
    """Stop the cluster with ``pg_ctl stop -m fast`` (clean shutdown, open sessions rolled back)."""
    data = _pg_dir() / "data"
    if not (data / "PG_VERSION").exists():
        _log("postgres not initialised")
        return
    pgbin = _pg_bin()
    proc = subprocess.run(_as_pg_user([str(pgbin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                          capture_output=True, text=True)
    _log("postgres stopped" if proc.returncode == 0 else "postgres not running")


def postgres_restart() -> None:
    """Restart the cluster (``pg_ctl restart -m fast``); used by the fault drills."""
    pgbin = _pg_bin()
    data = _pg_dir() / "data"
    subprocess.run(_as_pg_user([str(pgbin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-l",
                                str(_pg_dir() / "postgres.log"), "restart"]), check=True, capture_output=True)


def postgres_status() -> str:
    data = _pg_dir() / "data"
    if not (data / "PG_VERSION").exists():
        return "not initialised"
    pgbin = _pg_bin()
    proc = subprocess.run(_as_pg_user([str(pgbin / "pg_ctl"), "-D", str(data), "status"]), capture_output=True)
    return "running" if proc.returncode == 0 else "stopped"


# --------------------------------------------------------------------------- the whole stack


def stack_secret(name: str) -> str:
    """A secret of the local stack, generated on first use and kept in ``secrets`` in the state directory.

    Values are 32 random bytes in URL-safe base64 (also a valid Fernet key).
    """
    import base64

    path = state_dir() / "secrets"
    known: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            k, _, v = line.partition("=")
            known[k] = v
    if name not in known:
        known[name] = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        state_dir().mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in known.items()))
        path.chmod(0o600)
    return known[name]


# Secrets the services need, by environment variable; generated for the local stack only.
STACK_SECRETS = (
    "NOTIFY_ENCRYPTION_KEY",
    "NOTIFY_ALIYUN_ACCESS_KEY_SECRET",
    "NOTIFY_TENCENT_SECRET_KEY",
    "NOTIFY_WECHAT_APP_SECRET",
    "NOTIFY_CALLBACK_TOKEN",
    "NOTIFY_REPLY_LINK_SECRET",
    "ROSTER_ADMIN_TOKEN",
)


def stack_env(settings: StackSettings | None = None) -> dict[str, str]:
    """The environment the services and tests use: Kafka bootstrap and each service's database URL."""
    settings = settings or StackSettings()
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap}
    for svc, pw in _service_passwords().items():
        name = "MUSTER_TEST_DATABASE_URL" if svc == "test" else f"{svc.upper()}_DATABASE_URL"
        env[name] = f"postgresql://muster_{svc}:{pw}@127.0.0.1:{settings.pg_port}/muster_{svc}"
    for var in STACK_SECRETS:
        env[var] = stack_secret(var.lower())
    # Where each service listens and where it finds the others (the simulator stands in for the providers).
    sim, notify = settings.url("simulator"), settings.url("notify")
    env |= {
        "ROSTER_HTTP_PORT": str(settings.roster_port),
        "DISPATCH_HTTP_PORT": str(settings.dispatch_port),
        "NOTIFY_HTTP_PORT": str(settings.notify_port),
        "SIMULATOR_PORT": str(settings.simulator_port),
        "NOTIFY_ALIYUN_BASE_URL": sim,
        "NOTIFY_TENCENT_BASE_URL": sim,
        "NOTIFY_WECHAT_BASE_URL": sim,
        "NOTIFY_PUBLIC_BASE_URL": notify,
        "SIMULATOR_NOTIFY_URL": notify,
        "DISPATCH_URL": settings.url("dispatch"),
    }
    return env


def env_file() -> Path:
    return state_dir() / "stack.env"


def stack_up(settings: StackSettings | None = None) -> dict[str, str]:
    """Start PostgreSQL and Kafka (reusing running ones), create topics, write ``stack.env``.

    Returns:
        The environment the services use (see :func:`stack_env`).

    """
    settings = settings or StackSettings()
    state_dir().mkdir(parents=True, exist_ok=True)
    postgres_start(settings)
    kafka_start(settings)
    ensure_topics(settings.bootstrap)
    env = stack_env(settings)
    env_file().write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    env_file().chmod(0o600)
    return env


def stack_down() -> None:
    """Stop Kafka and PostgreSQL cleanly. Data is kept for the next start."""
    kafka_stop()
    postgres_stop()


# --------------------------------------------------------------------------- the services


# Processes `muster stack up --services` runs in the background: name → (command args, health path).
SERVICE_PROCESSES: dict[str, tuple[list[str], str]] = {
    "simulator": (["simulator", "serve"], "/sim/stats"),
    "roster": (["serve", "roster"], "/health/ready"),
    "dispatch": (["serve", "dispatch"], "/health/ready"),
    "notify": (["serve", "notify"], "/health/ready"),
}


def _service_dir() -> Path:
    return state_dir() / "services"


def _muster_command() -> list[str]:
    import sys

    return [sys.executable, "-m", "muster"]


def service_status(name: str) -> str:
    pid = _pid_alive(_service_dir() / f"{name}.pid")
    return f"running (pid {pid})" if pid else "stopped"


def service_start(name: str, *, timeout: float = 60.0) -> None:
    """Start one service in the background (reused when running) and wait until its health URL answers 200.

    Logs go to ``<state>/services/<name>.log``.

    Raises:
        StackError: it did not become ready within ``timeout`` seconds.

    """
    import httpx

    args, health_path = SERVICE_PROCESSES[name]
    health = StackSettings().url(name) + health_path
    sdir = _service_dir()
    sdir.mkdir(parents=True, exist_ok=True)
    pidfile = sdir / f"{name}.pid"
    logfile = sdir / f"{name}.log"
    if not _pid_alive(pidfile):
        _log(f"starting {name} (log: {logfile})")
        env = {**os.environ, **stack_env(), "PYTHONUNBUFFERED": "1"}
        with logfile.open("ab") as out:
            proc = subprocess.Popen(
                [*_muster_command(), *args], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True, cwd=DEPLOY.parent,
            )
        pidfile.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pidfile):
            raise StackError(f"{name} exited; last log lines:\n{logfile.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(health, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise StackError(f"{name} not ready after {timeout}s; last log lines:\n{logfile.read_text(errors='replace')[-3000:]}")


def service_stop(name: str, *, sig: int = signal.SIGTERM) -> None:
    """Stop one background service (SIGTERM, or ``sig``; SIGKILL after 20 s)."""
    pidfile = _service_dir() / f"{name}.pid"
    pid = _pid_alive(pidfile)
    if not pid:
        return
    _log(f"stopping {name} (pid {pid})")
    os.kill(pid, sig)
    for _ in range(200):
        if not _pid_alive(pidfile):
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


def services_up(names: tuple[str, ...] | None = None) -> None:
    """Start the simulator and the three services (those not running)."""
    for name in names or tuple(SERVICE_PROCESSES):
        service_start(name)


def services_down() -> None:
    for name in reversed(tuple(SERVICE_PROCESSES)):
        service_stop(name)
