"""A real local Ray cluster for tests: `ray start --head` on 127.0.0.1 with 2 CPUs, every port
chosen free, its own temp dir, stopped by process group (never a bare `ray stop`, which would
stop every Ray cluster of this user on the machine). Not a test module.

    with ray_cluster(tmp) as address:  # "127.0.0.1:PORT", for --model-ray-address
        ...
tests/conftest.py's `ray_address` fixture is one such cluster per test module.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

RAY = Path(sys.executable).parent / "ray"


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _free_range(width: int) -> int:
    """The first port of `width` ports that are free now (for Ray's worker ports)."""
    for start in range(20_000, 60_000, width):
        try:
            with contextlib.ExitStack() as stack:
                for p in range(start, start + width):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", p))
            return start
        except OSError:
            continue
    raise RuntimeError("no free port range for Ray's workers")


@contextlib.contextmanager
def ray_cluster(cpus: int = 2) -> Iterator[str]:
    port, agent, agent_grpc, metrics, node, objects, env_agent = _free_ports(7)
    workers = _free_range(100)
    temp = tempfile.mkdtemp(prefix="rayt", dir="/tmp")  # short: Ray's socket paths are limited
    cmd = [
        str(RAY),
        "start",
        "--head",
        "--block",
        f"--num-cpus={cpus}",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--metrics-export-port={metrics}",
        f"--node-manager-port={node}",
        f"--object-manager-port={objects}",
        f"--runtime-env-agent-port={env_agent}",
        f"--min-worker-port={workers}",
        f"--max-worker-port={workers + 99}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    # Ray 2.60 turns on token authentication when ~/.ray/auth_token exists (a `ray start` of
    # the user's may have made one); this private test cluster and its driver run without it.
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    log = open(Path(temp) / "ray-start.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    address = f"127.0.0.1:{port}"
    try:
        _wait_up(proc, address, Path(temp) / "ray-start.log")
        yield address
    finally:
        if "ray" in sys.modules and sys.modules["ray"].is_initialized():
            sys.modules["ray"].shutdown()  # this process's driver connection, before the cluster
        _stop(proc)
        log.close()


def _wait_up(proc: subprocess.Popen, address: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited {proc.returncode}: {log.read_text()[-2000:]}")
        if "Ray runtime started." in log.read_text():  # (`ray status` needs Ray's auth token)
            return
        time.sleep(1)
    raise RuntimeError(f"the Ray cluster at {address} did not come up: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to `ray start --block`'s session (it stops the processes it started), then
    SIGKILL to whatever of that session is left."""
    sid = proc.pid  # start_new_session: the session id is its pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(sid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    for pid in session_pids(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def session_pids(sid: int) -> list[int]:
    """The processes of session `sid` (the cluster's raylet, GCS, workers...)."""
    out = subprocess.run(
        ["ps", "-eo", "pid=,sid="], capture_output=True, text=True, check=False
    ).stdout
    return [int(p) for p, s in (line.split() for line in out.splitlines()) if int(s) == sid]


def actor_pids(sid_or_none: int | None = None) -> list[int]:
    """Pids of live `_Replica` actor processes (their process title names the class)."""
    out = subprocess.run(
        ["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=False
    ).stdout
    pids = []
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if "_Replica" in args or "MapWorker" in args:
            pids.append(int(pid))
    return pids
