"""The server's read-model follower, run as a child process (`accord project`).

In the server's own process the follower competes with every RPC for the one
interpreter lock: under write load it took about a third of the server's time.
As a child process it has a core of its own, and the server keeps only the
reads of the views. The child is an ordinary `accord project` worker (advisory
locks, exactly-once batches), started with the server, restarted if it dies,
stopped with the server, and it stops by itself if the server is killed. A
worker that exits cleanly (it was sent SIGTERM or SIGINT) is not restarted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import structlog

from adapters.store import StoreConfig

logger = structlog.get_logger(__name__)

RESTART_SECONDS = 1.0
"""How long after an unexpected exit the worker is started again."""
STOP_SECONDS = 10.0
"""How long a stopping worker may take to finish its batch before it is killed."""


class ProjectionWorker:
    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self.starts = 0
        """How many times a worker process was started (restarts included)."""

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def start(self) -> None:
        self._spawn()
        self._watcher = threading.Thread(
            target=self._watch, name="accord-projection-worker", daemon=True
        )
        self._watcher.start()

    def _spawn(self) -> None:
        # The URL travels in the environment, not the command line: it may hold a
        # password, and any local user can read another process's arguments.
        env = {**os.environ, "ACCORD_DATABASE_URL": self.config.url}
        command = [
            sys.executable,
            "-m",
            "adapters.cli",
            "project",
            "--parent-pid",
            str(os.getpid()),
        ]
        with self._lock:
            if self._stopping.is_set():
                return
            # Our own interpreter and module, fixed arguments: nothing from a caller.
            self._process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)  # noqa: S603
            self.starts += 1
        logger.info("projection_worker_started", pid=self._process.pid)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            if process is None:
                return
            code = process.wait()
            if self._stopping.is_set():
                return
            if code == 0:
                # A clean exit follows a stop signal (Ctrl-C reaches the whole process
                # group, the server included): it was asked to stop, not restarted.
                logger.info("projection_worker_stopped", pid=process.pid)
                return
            logger.warning("projection_worker_exited", pid=process.pid, returncode=code)
            if self._stopping.wait(RESTART_SECONDS):
                return
            self._spawn()

    def stop(self) -> None:
        """Let the worker finish its batch and exit; kill it if it takes too long."""
        with self._lock:
            self._stopping.set()
            process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
