"""Shared fixtures: the embedded stack (real broker, real Redis) and stream workers as real processes.

Integration tests share one broker per session but get their own topic prefix, consumer group, state
directory and Redis key prefix, so they cannot see each other's data.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen

import pytest

from scoring import accel
from streams.topics import Topics
from tierstream.embedded import (
    EmbeddedStack,
    free_port,
    start_worker,
    stop_process,
    wait_worker_ready,
)


def pytest_report_header() -> str:
    """Say in every run's header whether the hot path under test is the compiled build (scoring.accel)."""
    core = accel.status()
    return "tierstream compiled core: " + ("active (.native)" if core.compiled else f"not used: {core.reason}")


def rerun_from_source(request: pytest.FixtureRequest) -> bool:
    """For a test that instruments the hot path's internals (a compiled class's methods cannot be monkeypatched):
    when the compiled build is in use, run this test in a pytest subprocess on the Python source
    (TIERSTREAM_COMPILED=0), fail if it fails there, and return True (the caller returns). False: this
    process runs the source, so the test runs here. Compiled and source decide identically
    (tests/integration/test_compiled_core.py), so the instrumented source stands for both."""
    if not accel.status().compiled:
        return False
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", request.node.nodeid],
        env={**os.environ, "TIERSTREAM_COMPILED": "0"}, cwd=Path(__file__).resolve().parent.parent,
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"failed on the Python source:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"
    return True


@pytest.fixture(scope="session")
def stack() -> Iterator[EmbeddedStack]:
    """A broker on a free port and a Redis (REDIS_URL when it answers, else a started one)."""
    with EmbeddedStack() as s:
        yield s


@dataclass
class WorkerHandle:
    """A running worker process and what a test needs to talk to it."""

    env: dict[str, str]
    topics: Topics
    web_port: int
    log_path: Path
    proc: Popen[bytes] | None = None
    ready_seconds: float = 0.0
    history: list[Popen[bytes]] = field(default_factory=list)

    def start(self, timeout: float = 60.0) -> WorkerHandle:
        self.proc = start_worker(self.env, self.log_path)
        self.history.append(self.proc)
        try:
            self.ready_seconds = wait_worker_ready(self.web_port, timeout, self.proc)
        except Exception:
            print(self.log_path.read_text()[-5000:])
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=10)

    def kill(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _worker_factory(stack: EmbeddedStack, tmp_path: Path) -> Iterator[Callable[..., WorkerHandle]]:
    handles: list[WorkerHandle] = []
    run = uuid.uuid4().hex[:8]

    def factory(**overrides: str) -> WorkerHandle:
        port = free_port()
        prefix = overrides.pop("topic_prefix", f"t{run}.")
        env = {
            **stack.env(),
            "TIERSTREAM_TOPIC_PREFIX": prefix,
            "TIERSTREAM_APP_ID": f"tierstream-{run}",
            "TIERSTREAM_DATA_DIR": str(tmp_path / "state"),
            "TIERSTREAM_WEB_PORT": str(port),
            "TIERSTREAM_REDIS_PREFIX": f"test:{run}:",
            "TIERSTREAM_SESSION_TIMEOUT_SECONDS": "2",
            "TIERSTREAM_HEARTBEAT_INTERVAL_SECONDS": "0.5",
            **{f"TIERSTREAM_{k.upper()}": v for k, v in overrides.items()},
        }
        handle = WorkerHandle(env, Topics(prefix), port, tmp_path / f"worker-{len(handles)}.log")
        handles.append(handle)
        return handle

    yield factory
    for h in handles:
        for proc in h.history:
            stop_process(proc, grace=10)
    _delete_redis_keys(stack.redis_url, f"test:{run}:")


def _delete_redis_keys(url: str, prefix: str) -> None:
    """Remove this run's keys (never anything else: the Redis may be shared)."""
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def make_worker(stack: EmbeddedStack, tmp_path: Path) -> Iterator[Callable[..., WorkerHandle]]:
    """Factory: a worker configured for this test (isolated topics, group, state dir, Redis prefix)."""
    yield from _worker_factory(stack, tmp_path)


@pytest.fixture(scope="module")
def make_module_worker(
    stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., WorkerHandle]]:
    """Like ``make_worker``, shared by the tests of one module (one worker start for all)."""
    yield from _worker_factory(stack, tmp_path_factory.mktemp("module"))
