"""A TCP proxy between ib_async and the simulator that holds back commission reports."""

from __future__ import annotations

import asyncio
import contextlib
import struct

COMMISSION_REPORT = b"59"


class CommissionDelayProxy:
    """Forwards both directions; server frames that are commissionReports (message id 59) reach
    the client `delay` seconds late, as a slow TWS sends them."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.port = 0
        self.delayed = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [client_w, server_w]
        for coroutine in (self._upstream(client_r, server_w), self._downstream(server_r, client_w)):
            task = asyncio.create_task(coroutine)
            self._tasks.add(task)

    async def _upstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
        writer.close()

    async def _downstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                header = await reader.readexactly(4)
                payload = await reader.readexactly(struct.unpack(">I", header)[0])
                if payload.split(b"\0", 1)[0] == COMMISSION_REPORT:
                    self.delayed += 1
                    loop.call_later(self.delay, _write, writer, header + payload)
                else:
                    writer.write(header + payload)
        writer.close()


def _write(writer: asyncio.StreamWriter, frame: bytes) -> None:
    if not writer.is_closing():
        writer.write(frame)
