"""One process supervisor for the demo, the benchmarks and the tests.

Every child runs in its own session (a terminal's Ctrl-C reaches only its parent), in the project
root, with its output in a log file; it is stopped with SIGTERM to its process group, a wait, then
SIGKILL to the group, so nothing it started stays behind. On Linux a child also gets SIGTERM when
the thread that started it ends (PR_SET_PDEATHSIG), so a parent killed outright orphans nothing:
start children from a thread that outlives them. A wait for a child to get ready fails at once,
with the child's log, when a child exits meanwhile.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roster.dev import chime_api, hook_receiver, local_sqs

ROOT = Path(__file__).resolve().parents[2]

try:  # resolved here: the forked child only calls it
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):  # pragma: no cover
    _prctl = None


class ProcessError(Exception):
    """A child exited, or a wait gave up: said as it is, with the child's log."""


@dataclass(eq=False)
class Child:
    """A started process: its log, how long a stop waits for it, its tier (0: infrastructure)."""

    name: str
    process: subprocess.Popen
    log_path: Path
    stop_timeout: float
    tier: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _orphan_guard() -> None:  # pragma: no cover (runs in the forked child)
    _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _signal_group(child: Child, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)  # the child leads its own session, so its group id is its pid


class Supervisor:
    """Starts children, waits for them to get ready, and stops them (all of them on exit)."""

    def __init__(self, *, log_dir: Path, say: Callable[[str], None] = lambda text: None) -> None:
        self.log_dir, self.say = Path(log_dir), say
        self.children: list[Child] = []
        self.hurry = False

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    def spawn(
        self,
        name: str,
        argv: list[str],
        *,
        env: Mapping[str, str] | None = None,
        stop_timeout: float = 10.0,
        tier: int = 1,
        **popen: Any,
    ) -> Child:
        """Start ``argv``, its output (and stderr, when ``stdout`` is given) in ``<log_dir>/<name>.log``;
        ``tier`` 0 is infrastructure (Redis, SQS), stopped after the rest."""
        log_path = self.log_dir / f"{name}.log"
        popen.setdefault("stdin", subprocess.DEVNULL)
        with open(log_path, "ab") as log:
            popen.setdefault("stderr", log if "stdout" in popen else subprocess.STDOUT)
            popen.setdefault("stdout", log)
            process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=None if env is None else dict(env),
                start_new_session=True,
                preexec_fn=_orphan_guard if _prctl else None,  # noqa: PLW1509
                **popen,
            )
        child = Child(name=name, process=process, log_path=log_path, stop_timeout=stop_timeout, tier=tier)
        self.children.append(child)
        return child

    def pids(self) -> dict[str, int]:
        return {child.name: child.pid for child in self.children}

    def raise_if_exited(self, *, while_: str = "") -> None:
        """ProcessError with the log of the first child that is no longer running."""
        for child in self.children:
            if not child.alive():
                during = f" while {while_}" if while_ else ""
                raise ProcessError(
                    f"{child.name} exited with code {child.process.returncode}{during}; "
                    f"last lines of {child.log_path}:\n{child.log_tail()}"
                )

    def wait(
        self,
        check: Callable[[], Any],
        *,
        what: str,
        timeout: float,
        interval: float = 0.25,
        hint: Callable[[], str] | None = None,
    ) -> Any:
        """Poll ``check`` until it is truthy (raising counts as not yet); fail as soon as a child
        exits meanwhile. Every 10 s it says it is still ``what``, with ``hint`` (why it may be
        slow: a drain error, say), which the final failure repeats."""
        started = time.monotonic()
        next_note = started + 10
        while True:
            try:
                result = check()
            except Exception:  # not ready yet (a socket, the database, ...)
                result = None
            if result:
                return result
            self.raise_if_exited(while_=what)
            now = time.monotonic()
            if now - started > timeout or now >= next_note:
                why = ""
                with contextlib.suppress(Exception):
                    why = hint() if hint is not None else ""
                why = f"; {why}" if why else ""
                if now - started > timeout:
                    raise ProcessError(f"gave up {what} after {timeout:.0f}s{why} (logs in {self.log_dir})")
                self.say(f"still {what} ({now - started:.0f}s){why}")
                next_note += 10
            time.sleep(interval)

    def wait_port(self, port: int, *, what: str, timeout: float = 60.0) -> None:
        """Wait until something listens on 127.0.0.1:``port`` (a child's server)."""
        self.wait(lambda: port_open(port), what=what, timeout=timeout, interval=0.1)

    def stop(self, *children: Child) -> None:
        """SIGTERM to each child's process group at once, a wait of up to each one's stop_timeout,
        then SIGKILL; each is said with its time. Children already stopped are left alone."""
        children = tuple(child for child in children if child in self.children)
        started = time.monotonic()
        running = [child for child in children if child.alive()]
        for child in running:
            _signal_group(child, signal.SIGTERM)
        for child in children:
            how = "stopped" if child in running else "had exited"
            deadline = started + child.stop_timeout
            while child.alive() and time.monotonic() < deadline and not self.hurry:
                time.sleep(0.05)
            if child.alive():
                how = "killed"
                _signal_group(child, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(10)
            _signal_group(child, signal.SIGKILL)  # whatever its leader left behind in its group
            self.children.remove(child)
            self.say(f"{child.name} {how} ({time.monotonic() - started:.1f}s)")

    def stop_all(self) -> None:
        """Applications first (together, newest first), then infrastructure. A second Ctrl-C (or
        SIGTERM) meanwhile skips the waiting."""

        def hurry(signum: int, frame: Any) -> None:
            self.hurry = True

        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handlers = {sig: signal.signal(sig, hurry) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for tier in sorted({child.tier for child in self.children}, reverse=True):
                self.stop(*[child for child in reversed(self.children) if child.tier == tier])
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)


# Daphne -----------------------------------------------------------------------------------------

# The websocket ping (docs/operations.md): an idle socket is pinged after PING_INTERVAL_SECONDS and
# dropped when no pong came PING_TIMEOUT_SECONDS later, so a dead peer is found within about
# their sum. Every start command of ours says them; production's does the same.
PING_INTERVAL_SECONDS = 20
PING_TIMEOUT_SECONDS = 20


def daphne_command(
    port: int,
    *,
    host: str = "127.0.0.1",
    ping_interval: int = PING_INTERVAL_SECONDS,
    ping_timeout: int = PING_TIMEOUT_SECONDS,
) -> list[str]:
    """The argv of a Daphne serving config.asgi on ``host:port``, with the websocket ping set
    (whole seconds: Daphne's options are integers)."""
    return [
        sys.executable,
        "-m",
        "daphne",
        "-b",
        host,
        "-p",
        str(port),
        "--ping-interval",
        str(ping_interval),
        "--ping-timeout",
        str(ping_timeout),
        "config.asgi:application",
    ]


def celery_worker_command(*, hostname: str, loglevel: str = "INFO", heartbeat: bool = True) -> list[str]:
    """The argv of one Celery worker on config's app, solo pool (it drains, delivers hooks and
    runs beat's tasks), without the start-up chatter between workers; ``hostname`` unique."""
    argv = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo"]
    argv += ["--loglevel", loglevel, "--without-mingle", "--without-gossip"]
    return [*argv, *([] if heartbeat else ["--without-heartbeat"]), "--hostname", hostname]


# Ports, HTTP, the local SQS and Chime API endpoints ------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port (as Daphne does: SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def port_open(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_ok(url: str) -> bool:
    try:
        with _NO_PROXY.open(url, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def sqs_endpoint_start(
    supervisor: Supervisor,
    *,
    env: Mapping[str, str] | None = None,
    command: Callable[..., list[str]] = local_sqs.server_command,
    timeout: float = 60.0,
) -> str:
    """The local SQS endpoint (``command(port=...)``: roster.dev.local_sqs) on a free loopback
    port, as infrastructure; its URL once it answers."""
    port = free_port()
    supervisor.spawn("moto", command(port=port), env=env, tier=0)
    url = f"http://127.0.0.1:{port}"
    supervisor.wait(
        lambda: http_ok(f"{url}/moto-api/"), what="waiting for the local SQS endpoint", timeout=timeout
    )
    return url


def chime_api_start(
    supervisor: Supervisor, *, env: Mapping[str, str] | None = None, timeout: float = 30.0
) -> str:
    """The local Chime SDK Meetings endpoint (roster.dev.chime_api) as a process on a free loopback
    port, as infrastructure; its URL (for AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS) once it listens.
    It answers every unsigned request 403, so readiness is the open port."""
    port = free_port()
    supervisor.spawn("chime-api", chime_api.server_command(port=port), env=env, tier=0)
    supervisor.wait(lambda: port_open(port), what="waiting for the local Chime API endpoint", timeout=timeout)
    return f"http://127.0.0.1:{port}"


def hook_receiver_start(
    supervisor: Supervisor,
    *,
    secrets: list[str],
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    timeout: float = 30.0,
) -> str:
    """The webhook receiver (roster.dev.hook_receiver) as a process on ``port`` (a free one when
    None), checking signatures with ``secrets`` (given in its environment, never its argv); its
    URL once its page answers."""
    port = port or free_port()
    child_env = dict(os.environ if env is None else env)
    child_env[hook_receiver.SECRETS_ENV] = ",".join(secrets)
    supervisor.spawn("hook-receiver", hook_receiver.server_command(port=port), env=child_env, tier=0)
    url = f"http://127.0.0.1:{port}"
    supervisor.wait(lambda: http_ok(f"{url}/"), what="waiting for the hook receiver", timeout=timeout)
    return url
