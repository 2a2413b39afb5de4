"""The benches' HTTP load generator (shared by the bench scripts; run as a script, as
`make bench` does with every file here, it prints nothing).

A minimal HTTP/1.1 client over keep-alive connections: requests are built before timing, and
only the status line, the headers and a Content-Length body are read back. aiohttp's client
took 40% of a core at 3,000 POSTs/s, a fifth of the 2-core machine taken from the services
measured. This one takes 33-62 µs of CPU per POST back to back and 76-112 µs paced at 3,000/s
(runs of 2026-12-07; paced, that is about a quarter of a core, an eighth of the machine), which
bench/webhook_ingest.py prints beside the services' CPU as the load generator's. The issue's
webhook figures came from wrk, a C load generator, for the same reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit


class Poster:
    """`connections` keep-alive connections to one URL, each carrying one request at a time."""

    def __init__(self, url: str, connections: int) -> None:
        parsed = urlsplit(url)
        self.host, self.port, self.path = parsed.hostname or "", parsed.port or 80, parsed.path
        self.connections = connections
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def __aenter__(self) -> Poster:
        for _ in range(self.connections):
            self.idle.put_nowait(await asyncio.open_connection(self.host, self.port))
        return self

    async def __aexit__(self, *exc: object) -> None:
        while not self.idle.empty():
            _, writer = self.idle.get_nowait()
            writer.close()

    def request(self, body: bytes, headers: Mapping[str, str]) -> bytes:
        """A POST of `body` (JSON) with `headers`, as bytes ready to write."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def post(self, request: bytes) -> tuple[int, float, float]:
        """Send one prepared request on the next idle connection: its status, when it began
        (wall clock) and how long the answer took (seconds)."""
        reader, writer = await self.idle.get()
        began, started = time.time(), time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in lines
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        await reader.readexactly(length)
        latency = time.perf_counter() - started
        self.idle.put_nowait((reader, writer))
        return status, began, latency

    async def post_back_to_back(self, requests: Sequence[bytes]) -> list[tuple[int, float, float]]:
        """Closed loop (measures capacity): each connection posts the next request as soon as
        its last one answered. The answers (as `post` gives them) in the requests' order."""
        answers: list[tuple[int, float, float]] = [(0, 0.0, 0.0)] * len(requests)
        untaken = iter(range(len(requests)))  # shared: each request is taken once

        async def connection() -> None:
            for index in untaken:
                answers[index] = await self.post(requests[index])

        await asyncio.gather(*(connection() for _ in range(self.connections)))
        return answers
