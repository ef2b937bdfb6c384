"""What every benchmark shares: options, results, the machine, schemas, servers, other processes."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import psycopg
from psycopg import sql

from application.personal_data import MasterKey

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get(
    "ACCORD_BENCH_POSTGRES_URL",
    os.environ.get("ACCORD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)
SERVER_START_TIMEOUT = 60.0
"""Seconds a server subprocess may take to print where it listens."""

T = TypeVar("T")


# --------------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    quick: bool = False
    fresh: bool = False
    """Regenerate cached data sets (the rebuild store) instead of reusing them."""

    @property
    def seconds(self) -> float:
        """How long each closed-loop measurement runs (after its warm-up)."""
        return 3.0 if self.quick else 8.0

    @property
    def rate_seconds(self) -> float:
        """How long each fixed-rate (open-loop) measurement runs."""
        return 4.0 if self.quick else 10.0


# --------------------------------------------------------------------- results


@dataclass(frozen=True)
class Check:
    """One comparison against a target: ``value`` (a ratio, a rate, megabytes) vs ``target``."""

    label: str
    value: float
    target: float
    unit: str = "x"
    at_least: bool = True
    """True: value >= target passes; False: value <= target passes."""

    @property
    def passed(self) -> bool:
        return self.value >= self.target if self.at_least else self.value <= self.target

    def describe(self) -> str:
        sign = ">=" if self.at_least else "<="
        verdict = "PASS" if self.passed else "FAIL"
        if self.unit == "x":
            return f"{self.label} {self.value:.2f}x (target {sign} {self.target:g}x) {verdict}"
        unit = self.unit if self.unit.startswith("/") else f" {self.unit}"
        return (
            f"{self.label} {self.value:,.0f}{unit} "
            f"(target {sign} {self.target:,.0f}{unit}) {verdict}"
        )


@dataclass
class Result:
    number: int
    name: str
    measured: str
    baselines: str
    checks: list[Check]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    """Wall time of the whole benchmark, set-up included."""
    error: str | None = None
    """Set when the benchmark could not run; it then fails."""
    fails_because: str | None = None
    """Set when the figures cannot meet the target whatever they are (e.g. a stand-in)."""

    @property
    def passed(self) -> bool:
        return (
            self.error is None
            and self.fails_because is None
            and bool(self.checks)
            and all(c.passed for c in self.checks)
        )

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else ("ERROR" if self.error else "FAIL")

    def line(self) -> str:
        if self.error:
            return f"[T{self.number}] {self.name}: ERROR {self.error}"
        checks = "; ".join(c.describe() for c in self.checks)
        text = (
            f"[T{self.number}] {self.name}: measured {self.measured} | "
            f"baseline {self.baselines} | {checks} | {self.verdict}"
        )
        if self.fails_because:
            text += f" ({self.fails_because})"
        for note in self.notes:
            text += f"\n      note: {note}"
        return text


def rate(value: float, unit: str = "/s") -> str:
    return f"{value:,.0f}{unit}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# --------------------------------------------------------------------- machine


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _proc_field(path: str, key: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    return None


def postgres_version() -> str:
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as error:
        return f"unreachable ({type(error).__name__})"
    return str(row[0]) if row else "?"


def machine() -> str:
    import grpc

    memory_kb = _proc_field("/proc/meminfo", "MemTotal") or "0 kB"
    memory_gib = int(memory_kb.split()[0]) / 1024 / 1024
    cpu = _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown CPU"
    return (
        f"{os.cpu_count()} cores, {memory_gib:.1f} GiB, {cpu}; "
        f"{platform.system()} {platform.release()} {platform.machine()}; "
        f"Python {platform.python_version()}; PostgreSQL {postgres_version()}; "
        f"grpcio {grpc.__version__}; psycopg {psycopg.__version__}"
    )


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), in MB."""
    value = _proc_field("/proc/self/status", "VmHWM") or "0 kB"
    return int(value.split()[0]) / 1024


# ------------------------------------------------------------------- PostgreSQL


def store_url(schema: str, **params: object) -> str:
    """An ``ACCORD_DATABASE_URL`` for ``schema`` on the benchmark database."""
    query = "&".join(f"{k}={v}" for k, v in {"schema": schema, **params}.items())
    return f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}{query}"


def schema_exists(name: str) -> bool:
    with psycopg.connect(POSTGRES_URL) as conn:
        row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)).fetchone()
    return row is not None


def drop_schema(name: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def create_schema(name: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))


@contextlib.contextmanager
def fresh_schema(prefix: str) -> Iterator[str]:
    """A new, empty schema for one benchmark, dropped afterwards whatever happens."""
    name = f"bench_{prefix}_{uuid4().hex[:8]}"
    create_schema(name)
    try:
        yield name
    finally:
        drop_schema(name)


# ------------------------------------------------------------ other processes


def in_child(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` with Accord's logging configured as the server's, sent to /dev/null."""
    from adapters.logging import configure_logging

    configure_logging(fmt="json", level="INFO")
    with quiet_stderr():
        return function(*args)


def spawning_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def in_other_process(function: Callable[..., T], *args: Any) -> T:
    """Run ``function(*args)`` in a freshly spawned process and return its result.

    Load generators run this way, so client and server never share a
    process (or a GIL). ``function`` must be importable (module level).
    """
    with spawning_pool(1) as pool:
        return pool.submit(in_child, function, *args).result()


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send this process's log lines (structlog writes to stderr) to /dev/null."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        yield


@dataclass
class Server:
    """A server subprocess and where it listens."""

    process: subprocess.Popen[str]
    address: str
    log: Path


def _await_banner(process: subprocess.Popen[str], marker: str, log: Path) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], SERVER_START_TIMEOUT)
    line = process.stdout.readline() if ready else ""
    if marker not in line:
        process.kill()
        process.wait()
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"server did not start: {line!r}\n{tail}")
    return line.split(marker, 1)[1].split()[0]


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@contextlib.contextmanager
def _server(command: list[str], marker: str, env: dict[str, str]) -> Iterator[Server]:
    """Its log is kept (and its path printed) only when something went wrong."""
    workdir = Path(tempfile.mkdtemp(prefix="accord-bench-"))
    log = workdir / "server.log"
    with log.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            command,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=workdir,
        )
        try:
            address = _await_banner(process, marker, log)
            yield Server(process, address, log)
        except BaseException:
            print(f"      (server log kept: {log})", flush=True)
            raise
        finally:
            _stop(process)
    shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def accord_server(url: str, master_key: MasterKey, *args: str) -> Iterator[Server]:
    """``accord serve --port 0`` on ``url``, no tokens file (loopback, local admin), JSON logs.

    Stopped (SIGTERM, then SIGKILL) on the way out, whatever happens.
    """
    command = [sys.executable, "-m", "adapters.cli", "--database-url", url, "serve"]
    env = {
        "ACCORD_MASTER_KEY": master_key.to_base64(),
        "ACCORD_LOG_FORMAT": "json",
        "ACCORD_LOG_LEVEL": "INFO",
    }
    with _server([*command, "--port", "0", *args], "Accord listening on ", env) as server:
        yield server


@contextlib.contextmanager
def noop_server() -> Iterator[Server]:
    """The baseline: a gRPC server with one no-op unary method (``bench.noop_server``)."""
    command = [sys.executable, "-m", "bench.noop_server"]
    with _server(command, "noop listening on ", {}) as server:
        yield server
