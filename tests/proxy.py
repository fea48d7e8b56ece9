"""A TCP proxy for fault tests (Redis, PostgreSQL, browsers): it passes, refuses or black-holes traffic.

`TCPProxy(target_port).start()` listens on a free local port and forwards to the target. Modes:
- `pass`: forward both ways (after `delay` seconds, for a slow network);
- `refuse`: drop every open connection and reset new ones (a server that is down);
- `blackhole`: open connections go silent and new ones are accepted, and whatever clients send
  is read and discarded, never answered (a server or network that hangs; no reset warns the
  client). Leaving it drops the connections it swallowed, as a hung peer's eventually are.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Any

PASS, REFUSE, BLACKHOLE = "pass", "refuse", "blackhole"


class TCPProxy:
    """A proxy on 127.0.0.1 running its own event loop in a thread."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.mode = PASS
        self.delay = 0.0
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.connections: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()  # every socket it holds, closed at the end

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TCPProxy:
        self.thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def set_mode(self, mode: str) -> None:
        """Switch mode (see the module's docstring)."""
        self._call(self._switch(mode))

    def cut(self) -> None:
        """The network goes away: open connections break, new ones are reset."""
        self.set_mode(REFUSE)

    def restore(self) -> None:
        self.set_mode(PASS)

    def __enter__(self) -> TCPProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _switch(self, mode: str) -> None:
        previous, self.mode = self.mode, mode
        if mode == REFUSE or (previous == BLACKHOLE and mode != BLACKHOLE):
            for client, upstream in list(self.connections):
                _reset(client)
                if upstream is not None:
                    upstream.close()
            self.connections.clear()

    async def _close(self) -> None:
        await self._switch(REFUSE)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for writer in self.writers:
            writer.transport.abort()
        pending = asyncio.all_tasks() - {asyncio.current_task()}
        if pending:
            await asyncio.wait(pending, timeout=2)  # their sockets are closed: they end
        await asyncio.sleep(0.05)  # let the transports finish closing

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        if self.mode == REFUSE:
            _reset(writer)
            return
        if self.mode == BLACKHOLE:
            pair = (writer, None)
            self.connections.add(pair)
            with contextlib.suppress(Exception):
                while await reader.read(65536):
                    pass  # swallowed: never answered
            self.connections.discard(pair)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        self.writers.add(up_writer)
        pair = (writer, up_writer)
        self.connections.add(pair)
        await asyncio.gather(self._pipe(reader, up_writer, pair), self._pipe(up_reader, writer, pair))
        self.connections.discard(pair)
        for end in pair:
            end.close()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, pair: Any) -> None:
        with contextlib.suppress(Exception):
            while data := await source.read(65536):
                if pair not in self.connections:
                    return  # dropped
                if self.mode == PASS:
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    sink.write(data)
                    await sink.drain()
                # otherwise black-holed: swallowed
        with contextlib.suppress(Exception):
            sink.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (as a refused or dropped connection looks to a client)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
