"""The server under test: one uvicorn process (one worker), started and always stopped by the bench."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from bench.loadgen import BenchError, die_with_parent

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TCP_HELD = frozenset({"01", "08"})  # /proc/net/tcp states ESTABLISHED and CLOSE_WAIT


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on `host` right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class ProcessStats:
    """Resident memory (KB) and OS thread count of a process, from /proc/<pid>/status."""

    rss_kb: int
    threads: int


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time `pid` has used, from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError as exc:
        raise BenchError(f"cannot read /proc/{pid}/stat: {exc}") from exc
    fields = text.rsplit(")", 1)[1].split()  # after the command name, which may contain spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14 and 15


def machine_cpu_seconds() -> tuple[float, float]:
    """(CPU time spent running processes, CPU time stolen by the hypervisor) since boot, from /proc/stat."""
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system) / tick, steal / tick


def _tcp_address(ip: str, port: int | None = None) -> str:
    """An address as /proc/net/tcp writes it: the IPv4 address as a host-order u32 in hex, then `:PORT` in hex."""
    text = f"{int.from_bytes(socket.inet_aton(ip), sys.byteorder):08X}"
    return text if port is None else f"{text}:{port:04X}"


def held_connections(port: int, host: str = HOST, exclude_peer: str = HOST) -> int:
    """TCP connections to `host:port` that the server has not closed yet, from /proc/net/tcp.

    Counts the server side of each connection while it is ESTABLISHED or CLOSE_WAIT (the client
    closed, the server did not yet); once the server closes its socket the entry leaves those
    states. Connections from `exclude_peer` (the publisher, the readiness probe) are not counted.
    """
    local, peer = _tcp_address(host, port), _tcp_address(exclude_peer) + ":"
    held = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            _, here, there, state, _ = line.split(None, 4)
            if here == local and state in TCP_HELD and not there.startswith(peer):
                held += 1
    return held


def process_stats(pid: int) -> ProcessStats:
    """Read VmRSS and Threads of `pid`; BenchError when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        raise BenchError(f"cannot read /proc/{pid}/status: {exc}") from exc
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return ProcessStats(int(fields["VmRSS"].split()[0]), int(fields["Threads"]))


class ServerProcess:
    """`uvicorn <app>` on a free port, logging to `log_path`; a context manager that always stops it.

    Entering waits until the server answers HTTP on `ready_path` (any status) or raises BenchError
    with the tail of its log.
    """

    def __init__(
        self, app: str, env: dict[str, str], log_path: Path, ready_path: str, *, start_timeout: float = 60.0
    ) -> None:
        self.app = app
        self.env = env
        self.log_path = log_path
        self.ready_path = ready_path
        self.start_timeout = start_timeout
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process id (uvicorn with one worker serves in this very process)."""
        assert self._process is not None
        return self._process.pid

    def stats(self) -> ProcessStats:
        """The server's current memory and threads."""
        self.check_alive()
        return process_stats(self.pid)

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far."""
        self.check_alive()
        return cpu_seconds(self.pid)

    def held_connections(self) -> int:
        """Client connections (not from HOST itself) the server still holds open: see `held_connections`."""
        self.check_alive()
        return held_connections(self.port)

    def check_alive(self) -> None:
        """BenchError (with the log tail) when the server has exited."""
        if self._process is not None and self._process.poll() is not None:
            raise BenchError(f"{self.app} exited with code {self._process.returncode}; log tail:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> ServerProcess:
        self.port = free_port()
        command = [
            sys.executable, "-m", "uvicorn", self.app,
            "--host", HOST, "--port", str(self.port), "--workers", "1",
            "--no-access-log", "--log-level", "warning", "--timeout-graceful-shutdown", "3",
        ]  # fmt: skip
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # safe: the bench starts servers while none of its threads run
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                self.check_alive()
                try:
                    client.get(self.base_url + self.ready_path)
                    return
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise BenchError(
                            f"{self.app} did not answer within {self.start_timeout:.0f} s; log tail:\n{self.log_tail()}"
                        ) from None
                    time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 8 s; idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(8)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None


def base_env(**extra: str) -> dict[str, str]:
    """The bench's environment plus `extra`, with the project on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env
