"""A Postgres of the test's own that it can stop and start again on the same TCP port (the
embedded `pgserver` binaries; as root they run as the `pgserver` system user, as pgserver
arranges)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from tests.e2e.conftest import free_port


class RestartablePostgres:
    """initdb'd on first use; `stop()` (immediate: as in a crash) and `start()` at will."""

    def __init__(self, data_dir: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

            self._pg = pgserver
            # pgserver initialises the directory (and its ownership when running as root),
            # starts a socket-only server; we restart it listening on a TCP port of our own.
            pgserver.get_server(str(data_dir), cleanup_mode=None)  # type: ignore[attr-defined]
        self.data_dir = data_dir
        self.port = free_port()
        self.user = "pgserver" if os.geteuid() == 0 else None
        self.socket_dir = data_dir
        self._ctl(["-m", "fast", "stop"])
        self.start()

    @property
    def url(self) -> str:
        """The server URL (database `postgres`)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, args: list[str]) -> None:
        self._pg.pg_ctl(args, pgdata=self.data_dir, user=self.user, timeout=30)  # type: ignore[attr-defined]

    def start(self) -> None:
        """Start the server (returns once it accepts connections)."""
        self._ctl(
            [
                "-w",
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {self.socket_dir} -c max_connections=300",
                "-l",
                str(self.data_dir / "log"),
                "start",
            ]
        )

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (`immediate`: no shutdown checkpoint, connections cut, as a crash)."""
        self._ctl(["-m", mode, "stop"])
