"""A loopback HTTP server in a background thread, for the tests: the local Chime SDK Meetings
endpoint and the webhook receiver run this way in the test's own process."""

from __future__ import annotations

import signal
import threading
from http.server import HTTPServer
from typing import Self


class BackgroundServer:
    """``with Server(...) as server: server.url``; the thread polls for shutdown every 50 ms."""

    thread_name = "loopback-server"

    def __init__(self, httpd: HTTPServer) -> None:
        self._httpd = httpd
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_until_stopped(httpd: HTTPServer, *, banner: str) -> None:
    """Run a server as its own process until SIGTERM or Ctrl-C: print ``banner`` with its URL
    (``{url}``) first, so whoever started it sees where it listens."""
    signal.signal(signal.SIGTERM, lambda signum, frame: threading.Thread(target=httpd.shutdown).start())
    host, port = httpd.server_address[:2]
    print(banner.format(url=f"http://{host}:{port}"), flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
