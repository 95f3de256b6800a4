"""Plumbing for the live-push benchmarks (bench/live_bench.py): CPU meters, launchers and the
websocket load generator.

Everything is on loopback: PostgreSQL (database ``bench_live``, dropped and recreated per run),
Redis, a moto server, Daphne, ``drain_sqs``. Every process is started and stopped by the bench's
supervisor (roster.dev.processes: SIGTERM to its process group, then SIGKILL after a bounded wait).

Entry points run as child processes (``python -m bench.live_common ...``):

- ``daphne PORT [--profile PATH]``: Daphne serving ``config.asgi:application`` on 127.0.0.1:PORT;
- ``manage ARGS... [--profile PATH]``: ``manage.py ARGS`` (``drain_sqs ...``);
- ``loadgen CONFIG``: the websocket load generator (asyncio + websockets), see :func:`loadgen_main`.

The launchers only add one thing to the project's settings: a channel-layer prefix of the
benchmark's own, so nobody's live dashboard (Redis pub/sub channels are shared by every Redis
database) sees the benchmark's meetings and no other run's frames reach the benchmark.
``--profile`` runs the process under cProfile, every thread with its own profiler, merged into
one pstats file at exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench import common
from bench.common import LOOPBACK, pid_cpu_seconds
from roster.dev.processes import Child, Supervisor, daphne_command, free_port

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# BENCH_LIVE_DATABASE_URL: another bench database (its name starts with "bench"), for runs side by
# side; the channel-layer prefix follows its name, so they never hear each other.
DATABASE_URL = os.environ.get("BENCH_LIVE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_live")
DATABASE_NAME = urlsplit(DATABASE_URL).path.lstrip("/")
REDIS_URL = "redis://127.0.0.1:6379/0"
CHANNEL_PREFIX = DATABASE_NAME.replace("_", "")  # "benchlive"
AWS_TEST_ENV = {
    **common.AWS_TEST_ENV,
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}
TICK = os.sysconf("SC_CLK_TCK")


# --- environment ----------------------------------------------------------------------------


def child_env(*, sqs_endpoint: str | None = None, **extra: str) -> dict[str, str]:
    """The environment for this process and every child: loopback services only."""
    for url in (DATABASE_URL, REDIS_URL, sqs_endpoint):
        if url and urlsplit(url).hostname not in LOOPBACK:
            raise SystemExit(f"live bench: refusing a non-loopback address: {url}")
    common.secret_key_ensure()  # before the copy: this process and its children share it
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_PROFILE",)}
    env.update(AWS_TEST_ENV)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=REDIS_URL,
        CHIME_ALLOWED_ACCOUNTS="",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        SQS_WAIT_SECONDS="1",
        SQS_QUEUE_URLS="",
        AWS_ENDPOINT_URL_SQS=sqs_endpoint or "",
        AWS_ENDPOINT_URL=sqs_endpoint or "",
    )
    env.update(extra)
    return env


def settings_patch() -> None:
    """Give the channel layer the benchmark's own prefix (before any layer is created)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings

    for layer in settings.CHANNEL_LAYERS.values():
        config = layer.setdefault("CONFIG", {})
        for host in config.get("hosts", []):
            address = host if isinstance(host, str) else host.get("address", "")
            if isinstance(address, str) and urlsplit(address).hostname not in LOOPBACK:
                raise SystemExit(f"live bench: refusing a non-loopback Redis: {address}")
        config["prefix"] = CHANNEL_PREFIX


def database_recreate() -> None:
    common.database_recreate(DATABASE_URL)


# --- CPU accounting (read-only /proc) --------------------------------------------------------


def _processes() -> list[tuple[int, int, str, float]]:
    """(pid, ppid, name, cpu seconds) of every process."""
    rows = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat.rsplit(")", 1)[1].split()
        rows.append((int(entry.name), int(fields[1]), name, (int(fields[11]) + int(fields[12])) / TICK))
    return rows


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def postgres_backends_of(database: str):
    """Selector: PostgreSQL backends serving ``database`` (other databases' work is not ours)."""

    def select(pid: int, ppid: int, name: str, children: dict[int, list[int]]) -> bool:
        return name.startswith("postgres") and f" {database} " in _cmdline(pid)

    return select


def named(*prefixes: str):
    """Selector: every process whose name starts with one of ``prefixes`` (shared ones too)."""

    def select(pid: int, ppid: int, name: str, children: dict[int, list[int]]) -> bool:
        return name.startswith(prefixes)

    return select


def descendants_named(*prefixes: str):
    """Selector: processes below this one (e.g. the Chromium Playwright started) with those names."""

    def select(pid: int, ppid: int, name: str, children: dict[int, list[int]]) -> bool:
        return name.startswith(prefixes) and pid in children.get("mine", [])

    return select


def selected_cpu_seconds(selectors: dict) -> dict[str, dict[int, float]]:
    rows = _processes()
    by_parent: dict[int, list[int]] = {}
    for pid, ppid, _, _ in rows:
        by_parent.setdefault(ppid, []).append(pid)
    mine, stack = set(), [os.getpid()]
    while stack:
        for child in by_parent.get(stack.pop(), []):
            if child not in mine:
                mine.add(child)
                stack.append(child)
    context = {"mine": mine}
    out: dict[str, dict[int, float]] = {label: {} for label in selectors}
    for pid, ppid, name, cpu in rows:
        for label, select in selectors.items():
            if select(pid, ppid, name, context):
                out[label][pid] = cpu
    return out


def machine_ticks() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class CpuMeter:
    """CPU used during a window by our processes (pids, selected processes) and by the whole machine."""

    def __init__(self, pids: dict[str, int], selectors: dict | None = None) -> None:
        self.pids = pids
        self.selectors = {
            f"postgres ({DATABASE_NAME} backends)": postgres_backends_of(DATABASE_NAME),
            "redis (shared)": named("redis-server"),
            **(selectors or {}),
        }

    def _sample(self) -> dict[str, dict[int, float]]:
        sample = {label: {pid: pid_cpu_seconds(pid) or 0.0} for label, pid in self.pids.items()}
        sample["bench (this process)"] = {os.getpid(): time.process_time()}
        sample.update(selected_cpu_seconds(self.selectors))
        return sample

    def _merge(self, sample: dict[str, dict[int, float]]) -> None:
        for label, pids in sample.items():
            seen = self._last.setdefault(label, {})
            for pid, cpu in pids.items():
                seen[pid] = max(cpu, seen.get(pid, 0.0))

    def _sampler(self) -> None:
        while not self._stop.wait(0.5):
            self._merge(self._sample())

    def __enter__(self) -> CpuMeter:
        import threading

        self._start = self._sample()
        self._last: dict[str, dict[int, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sampler, daemon=True)
        self._thread.start()
        self._busy, self._total = machine_ticks()
        self._t = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self._merge(self._sample())
        busy, total = machine_ticks()
        self.seconds = time.monotonic() - self._t
        # Sampled every 0.5 s: a process that exits meanwhile (the backend of a closed database
        # connection) counts up to its last sample; one that starts counts all it used.
        self.used = {
            label: sum(max(0.0, cpu - self._start.get(label, {}).get(pid, 0.0)) for pid, cpu in pids.items())
            for label, pids in self._last.items()
        }
        self.machine_busy_s = (busy - self._busy) / TICK
        self.machine_busy_share = (busy - self._busy) / (total - self._total) if total > self._total else 0.0
        self.others_s = max(0.0, self.machine_busy_s - sum(self.used.values()))

    def report(self) -> dict[str, object]:
        cores = os.cpu_count() or 1
        return {
            "window_s": round(self.seconds, 2),
            "cpu_percent_of_one_core": {
                label: round(100 * used / self.seconds, 1) for label, used in self.used.items()
            }
            | {"other processes on the machine": round(100 * self.others_s / self.seconds, 1)},
            "machine_busy_percent": round(100 * self.machine_busy_share, 1),
            "cores": cores,
        }


def background_load(seconds: float = 2.0) -> float:
    """Share of the machine busy while the bench sleeps (other people's work)."""
    b0, t0 = machine_ticks()
    time.sleep(seconds)
    b1, t1 = machine_ticks()
    return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


# --- child processes -------------------------------------------------------------------------


def daphne_start(
    processes: Supervisor, *, env: dict[str, str], tag: str, profile: Path | None = None
) -> tuple[Child, int]:
    """Daphne serving ``config.asgi:application`` on a free loopback port, once it listens."""
    port = free_port()
    args = [PYTHON, "-m", "bench.live_common", "daphne", str(port)]
    if profile:
        args += ["--profile", str(profile)]
    daphne = processes.spawn(f"daphne-{tag}", args, env=env, stop_timeout=30)
    processes.wait_port(port, what="waiting for daphne", timeout=60)
    return daphne, port


def drain_start(
    processes: Supervisor,
    *,
    env: dict[str, str],
    tag: str,
    queue_urls: list[str],
    concurrency: int = 2,
    profile: Path | None = None,
) -> Child:
    args = [PYTHON, "-m", "bench.live_common", "manage", "drain_sqs", "--wait-seconds", "1"]
    for url in queue_urls:
        args += ["--queue-url", url]
    args += ["--concurrency", str(concurrency)]
    if profile:
        args += ["--profile", str(profile)]
    return processes.spawn(f"drain-{tag}", args, env=env, stop_timeout=30)


# --- launchers (run in the child) ------------------------------------------------------------


def _profiled(path: str | None, run) -> None:
    """Run ``run()``; with a path, under cProfile in every thread, merged into one pstats file."""
    if not path:
        run()
        return
    import cProfile
    import pstats
    import threading

    profiles: list[cProfile.Profile] = []
    original_run = threading.Thread.run

    def thread_run(self):  # noqa: ANN001
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()
        try:
            original_run(self)
        finally:
            profile.disable()

    threading.Thread.run = thread_run
    main = cProfile.Profile()
    profiles.append(main)
    main.enable()
    try:
        run()
    finally:
        main.disable()
        for profile in profiles:  # threads still running: stop what we can see
            with contextlib.suppress(Exception):
                profile.disable()
        stats = pstats.Stats(profiles[0])
        for profile in profiles[1:]:
            with contextlib.suppress(TypeError, ValueError):
                stats.add(profile)
        stats.dump_stats(path)


def _split_profile(args: list[str]) -> tuple[list[str], str | None]:
    if "--profile" in args:
        i = args.index("--profile")
        return args[:i] + args[i + 2 :], args[i + 1]
    return args, None


def daphne_main(args: list[str]) -> None:
    args, profile = _split_profile(args)
    port = args[0]
    settings_patch()
    from daphne.cli import CommandLineInterface

    _profiled(
        profile,
        lambda: CommandLineInterface().run(daphne_command(int(port))[3:]),  # the argv after "-m daphne"
    )


def manage_main(args: list[str]) -> None:
    args, profile = _split_profile(args)
    settings_patch()
    from django.core.management import execute_from_command_line

    _profiled(profile, lambda: execute_from_command_line(["manage.py", *args]))


# --- the websocket load generator ------------------------------------------------------------
#
# One process, asyncio + websockets, N clients. Config (JSON file):
#   {"url": "ws://127.0.0.1:P/ws/feed/", "clients": [{"token": "...", "meetings": ["id"]}, ...],
#    "mode": "latency" | "fanout", "connect_concurrency": 50, "out": "/tmp/...json",
#    "max_seconds": 600}
# stdout: JSON lines ({"event": "ready", ...}, {"event": "stats", ...}, {"event": "done"}).
# stdin: "stats" -> one stats line; "stop" -> close, write results to "out", print done.
#
# Every client keeps the highest seq per meeting: a delta with seq == held + 1 is applied, one
# at or below held is a duplicate, one above held + 1 a gap (the server should have sent a
# 'changes' catch-up instead). 'snapshot' and 'changes' set held.
#
# latency mode: frames are parsed (json) and the receive time (time.monotonic(), system-wide
#   CLOCK_MONOTONIC on Linux, so comparable with the producer's) of the first frame that shows
#   each (attendee_id, "joined") and (attendee_id, "video") is kept per client.
# fanout mode: frames are not parsed in full (the load generator shares the 2 cores with the
#   server): the type is read from the frame's head, the meeting seq with a regex (the meeting
#   object precedes the attendees), attendees counted by their "attendee_id" keys; the receive
#   time of every delta seq is kept per client.

_SEQ_IN_MEETING = re.compile(r'"meeting":\{.*?"seq":(\d+)')
_TYPE = re.compile(r'^\{"type":"(\w+)"')


class _Client:
    __slots__ = ("meetings", "token", "held", "counts", "seen", "recv", "ready", "closed", "error")

    def __init__(self, token: str, meetings: list[str]) -> None:
        self.token = token
        self.meetings = meetings
        self.held: dict[str, int] = {}
        self.counts = {
            "frames": 0,
            "deltas": 0,
            "changes": 0,
            "snapshots": 0,
            "other": 0,
            "attendee_changes": 0,
            "gaps": 0,
            "duplicates": 0,
            "bytes": 0,
        }
        self.seen: dict[tuple[str, str], float] = {}  # latency mode
        self.recv: list[tuple[int, float]] = []  # fanout mode: (seq, t)
        self.ready = False
        self.closed = False
        self.error = ""


async def _client_run(client: _Client, cfg: dict, state: dict) -> None:
    import asyncio

    from websockets.asyncio.client import connect

    fanout = cfg["mode"] == "fanout"
    counts = client.counts
    held = client.held
    seen = client.seen
    recv = client.recv
    monotonic = time.monotonic
    loads = json.loads
    ws = None
    try:
        async with state["sem"]:
            ws = await asyncio.wait_for(
                connect(
                    cfg["url"],
                    additional_headers={"Authorization": f"Bearer {client.token}"},
                    max_size=None,
                    compression=None,
                    ping_interval=None,
                    open_timeout=120,
                    close_timeout=2,
                ),
                timeout=150,
            )
            hello = loads(await asyncio.wait_for(ws.recv(), 60))
            if hello.get("type") != "hello":
                raise RuntimeError(f"expected hello, got {hello}")
            await ws.send(json.dumps({"type": "subscribe", "meetings": client.meetings}))
            pending = set(client.meetings)
            while pending:
                first = loads(await asyncio.wait_for(ws.recv(), 120))
                if first.get("type") in ("snapshot", "changes"):
                    mid = first["meeting"]["meeting_id"]
                    held[mid] = first["meeting"]["seq"]
                    pending.discard(mid)
                elif first.get("type") == "error":
                    raise RuntimeError(f"subscribe error: {first}")
        client.ready = True
        state["ready"] += 1
        if state["ready"] == state["total"]:
            state["all_ready"].set()
        async for text in ws:
            now = monotonic()
            counts["frames"] += 1
            counts["bytes"] += len(text)
            if fanout:
                kind = _TYPE.match(text)
                kind = kind.group(1) if kind else ""
                if kind not in ("delta", "changes", "snapshot"):
                    counts["other"] += 1
                    continue
                seq = int(_SEQ_IN_MEETING.search(text).group(1))
                mid = client.meetings[0]
                n_att = text.count('"attendee_id":')
            else:
                message = loads(text)
                kind = message.get("type")
                if kind not in ("delta", "changes", "snapshot"):
                    counts["other"] += 1
                    continue
                seq = message["meeting"]["seq"]
                mid = message["meeting"]["meeting_id"]
                attendees = message["attendees"]
                n_att = len(attendees)
            before = held.get(mid)
            if kind == "delta":
                counts["deltas"] += 1
                if before is not None and seq <= before:
                    counts["duplicates"] += 1
                    continue
                if before is None or seq != before + 1:
                    counts["gaps"] += 1
            elif kind == "changes":
                counts["changes"] += 1
            else:
                counts["snapshots"] += 1
            held[mid] = seq if before is None else max(before, seq)
            counts["attendee_changes"] += n_att
            if fanout:
                recv.append((seq, now))
            else:
                for attendee in attendees:
                    aid = attendee["attendee_id"]
                    if attendee.get("presence") == "joined" and (aid, "j") not in seen:
                        seen[(aid, "j")] = now
                    if attendee.get("video") and (aid, "v") not in seen:
                        seen[(aid, "v")] = now
            if state["stopping"]:
                break
    except Exception as exc:  # noqa: BLE001 - reported, never fatal for the other clients
        client.error = f"{type(exc).__name__}: {exc}"[:300]
        state["errors"] += 1
        if not client.ready:
            state["failed_connect"] += 1
            state["ready_or_failed"] += 1
    finally:
        client.closed = True
        if ws is not None:
            with contextlib.suppress(BaseException):  # closing is best effort
                await asyncio.wait_for(ws.close(), 3)


def _totals(clients: list[_Client]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for client in clients:
        for key, value in client.counts.items():
            totals[key] = totals.get(key, 0) + value
    totals["clients_ready"] = sum(c.ready for c in clients)
    totals["clients_closed"] = sum(c.closed for c in clients)
    totals["seen_records"] = sum(len(c.seen) for c in clients)
    return totals


async def _loadgen(cfg: dict) -> None:
    import asyncio
    import threading

    loop = asyncio.get_running_loop()
    clients = [_Client(c["token"], c["meetings"]) for c in cfg["clients"]]
    state = {
        "sem": asyncio.Semaphore(cfg.get("connect_concurrency", 50)),
        "ready": 0,
        "total": len(clients),
        "all_ready": asyncio.Event(),
        "stopping": False,
        "errors": 0,
        "failed_connect": 0,
        "ready_or_failed": 0,
    }
    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, "stop")

    threading.Thread(target=read_stdin, daemon=True).start()
    cpu0 = time.process_time()
    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(_client_run(c, cfg, state)) for c in clients]

    async def report_ready() -> None:
        deadline = time.monotonic() + cfg.get("connect_timeout", 300)
        while time.monotonic() < deadline:
            if state["ready"] + state["failed_connect"] >= state["total"]:
                break
            await asyncio.sleep(0.2)
        print(
            json.dumps(
                {
                    "event": "ready",
                    "ready": state["ready"],
                    "failed": state["failed_connect"],
                    "seconds": round(time.monotonic() - t0, 2),
                    "errors": sorted({c.error for c in clients if c.error})[:5],
                }
            ),
            flush=True,
        )

    asyncio.ensure_future(report_ready())
    deadline = time.monotonic() + cfg.get("max_seconds", 900)
    while True:
        try:
            command = await asyncio.wait_for(commands.get(), timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            command = "stop"
        if command == "stats":
            print(
                json.dumps(
                    {"event": "stats", "t": time.monotonic(), "cpu_s": time.process_time() - cpu0}
                    | _totals(clients)
                ),
                flush=True,
            )
        elif command == "stop":
            break
    state["stopping"] = True
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=30)
    result = {
        "totals": _totals(clients),
        "cpu_s": time.process_time() - cpu0,
        "errors": sorted({c.error for c in clients if c.error and "Cancelled" not in c.error})[:10],
    }
    if cfg["mode"] == "fanout":
        result["recv"] = [c.recv for c in clients]
    else:
        # (attendee_id, kind) -> receive times, one per client that saw it
        merged: dict[str, list[float]] = {}
        for c in clients:
            for (aid, kind), t in c.seen.items():
                merged.setdefault(f"{kind}:{aid}", []).append(t)
        result["seen"] = merged
    Path(cfg["out"]).write_text(json.dumps(result))
    print(json.dumps({"event": "done"}), flush=True)


def loadgen_main(args: list[str]) -> None:
    import asyncio

    cfg = json.loads(Path(args[0]).read_text())
    if urlsplit(cfg["url"]).hostname not in LOOPBACK:
        raise SystemExit("loadgen: loopback only")
    asyncio.run(_loadgen(cfg))


class LoadGen:
    """The load generator as a child process, driven over its stdin/stdout."""

    def __init__(self, cfg: dict, *, processes: Supervisor, env: dict[str, str]) -> None:
        self.cfg, self.processes = cfg, processes
        path = processes.log_dir / f"loadgen-{cfg['mode']}.json"
        path.write_text(json.dumps(cfg))
        self.child = processes.spawn(
            f"loadgen-{cfg['mode']}",
            [PYTHON, "-m", "bench.live_common", "loadgen", str(path)],
            env=env,
            stop_timeout=30,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    @property
    def pid(self) -> int:
        return self.child.pid

    def _read(self, event: str, timeout: float) -> dict:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.child.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    continue
                line = self.child.process.stdout.readline()
                if not line:
                    raise RuntimeError(
                        f"load generator exited; see {self.child.log_path}\n{self.child.log_tail()}"
                    )
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if message.get("event") == event:
                    return message
        finally:
            sel.close()
        raise RuntimeError(f"load generator: no {event!r} within {timeout:.0f}s")

    def wait_ready(self, timeout: float = 300) -> dict:
        return self._read("ready", timeout)

    def stats(self, timeout: float = 30) -> dict:
        self.child.process.stdin.write("stats\n")
        self.child.process.stdin.flush()
        return self._read("stats", timeout)

    def finish(self, timeout: float = 120) -> dict:
        self.child.process.stdin.write("stop\n")
        self.child.process.stdin.flush()
        self._read("done", timeout)
        self.processes.stop(self.child)
        return json.loads(Path(self.cfg["out"]).read_text())


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m bench.live_common daphne PORT | manage ARGS... | loadgen CONFIG")
    command, rest = argv[0], argv[1:]
    if command == "daphne":
        daphne_main(rest)
    elif command == "manage":
        manage_main(rest)
    elif command == "loadgen":
        loadgen_main(rest)
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
