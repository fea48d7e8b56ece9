"""A pre-forking uvicorn server for the kill tests: `python -m tests.prefork --port P --workers N`.

The parent loads the application once (Django set up, nothing connected), listens, and forks
the workers; each runs a real `uvicorn.Server` on the shared socket. When a worker dies (the
tests SIGKILL them) the parent forks a replacement at once, which is ready in milliseconds rather
than the seconds a fresh interpreter needs, so a test can kill workers many times a minute.
SIGTERM stops the workers, then the parent.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path

from bench.loadgen import die_with_parent
from tests.live import Server


class PreforkServer(Server):
    """`tests.live.Server` served by this module: kill its workers with `workers_pids()`."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tests.prefork", "--port", str(self.port), "--workers", str(self.workers)]

    def worker_pids(self) -> list[int]:
        """The live workers (children of the parent process)."""
        if self.process is None:
            return []
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []


def serve(sock: socket.socket, application: object) -> None:
    import uvicorn

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    config = uvicorn.Config(application, lifespan="on", log_level="warning", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


def warm_up() -> None:
    """Import what a worker's start and first requests would, so forks start warm."""
    from django.urls import get_resolver
    from django.utils.module_loading import import_string

    from presence.conf import presence_backend_path
    from realtime.backends import redis_admission  # noqa: F401
    from realtime.conf import event_backend_path

    get_resolver()._populate()
    for path in (
        event_backend_path(),
        presence_backend_path(),
        "django.contrib.messages.storage.fallback.FallbackStorage",
        "django.contrib.sessions.serializers.JSONSerializer",
    ):
        import_string(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.server_settings")
    from fastcms.asgi import application  # Django set up once, before forking

    warm_up()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    children: set[int] = set()
    stopping = False

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:
            try:
                die_with_parent()  # a worker never outlives a killed parent (it would hold its connections)
                serve(sock, application)
            finally:
                os._exit(0)
        children.add(pid)

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                children.discard(pid)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(args.workers):
        spawn()
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        if not stopping:
            print(f"prefork: worker {pid} ended ({status}); forking another", flush=True)
            spawn()


if __name__ == "__main__":
    main()
