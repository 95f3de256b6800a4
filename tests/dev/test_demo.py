"""`make demo`: its start-up path run headless as a real process tree (log in like a browser, see
simulated meetings in the REST list, Ctrl-C leaves nothing behind), and its small parts."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth import authenticate

from roster.dev.chime import as_envelope, meeting_stream
from roster.dev.demo import (
    DEMO_HOOK_NAME,
    REDIS_MISSING,
    DemoError,
    DemoOptions,
    Progress,
    child_env,
    demo_counts,
    demo_drain_errors,
    demo_hook_register,
    demo_leftover_meetings,
    demo_login_reset,
    demo_queue_sources_reset,
    redis_choose,
    redis_reachable,
    simulator_argv,
    url_redacted,
    web_port_choose,
)
from roster.dev.processes import ROOT, ProcessError, Supervisor, free_port, port_open
from roster.ingest import IncomingMessage, messages_ingest
from roster.management.commands.simulate import Command as SimulateCommand
from roster.models import Hook, Meeting, QueueSource


class Lines:
    """A text stream that keeps what was written (Progress output)."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie (a reparented zombie is gone for our purposes)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def said() -> Lines:
    """What the supervisor said, as the demo prints it."""
    return Lines()


@pytest.fixture
def supervisor(tmp_path, said):
    with Supervisor(log_dir=tmp_path, say=Progress(said).say) as supervisor:
        yield supervisor


# Redis: which one the demo uses ----------------------------------------------------------------


def test_reachable_redis_url_is_used_and_nothing_started(supervisor):
    url = "redis://127.0.0.1:6379/0"  # the Redis the suite runs against
    assert redis_reachable(url)
    chosen, said = redis_choose(url=url, supervisor=supervisor)
    assert chosen == url
    assert said == f"using {url}"
    assert supervisor.children == []


def test_unreachable_redis_starts_a_private_server_that_stop_all_removes(supervisor):
    closed = f"redis://127.0.0.1:{free_port()}/0"
    assert not redis_reachable(closed)
    chosen, said = redis_choose(url=closed, supervisor=supervisor)
    assert chosen != closed
    assert redis_reachable(chosen)
    assert "private redis-server" in said
    [child] = supervisor.children
    port = urllib.parse.urlsplit(chosen).port
    import redis

    client = redis.Redis.from_url(chosen)
    assert client.config_get("save") == {"save": ""}  # no persistence
    assert client.config_get("appendonly") == {"appendonly": "no"}
    client.close()
    supervisor.stop_all()
    assert not pid_alive(child.pid)
    assert not port_open(port)


def test_no_redis_and_no_binary_says_exactly_what_to_install(supervisor):
    closed = f"redis://:secret@127.0.0.1:{free_port()}/0"
    with pytest.raises(DemoError) as raised:
        redis_choose(url=closed, supervisor=supervisor, which=lambda name: None)
    message = str(raised.value)
    assert message == REDIS_MISSING.format(url=url_redacted(closed))
    assert "`sudo apt install redis-server`" in message and "`brew install redis`" in message
    assert "secret" not in message
    assert supervisor.children == []


# Ports, environment ---------------------------------------------------------------------------


def test_web_port_falls_back_to_a_free_one_and_says_so():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        port, note = web_port_choose(requested=None, default=taken)
        assert port != taken and port > 0
        assert note == f"port {taken} is busy: the dashboard uses port {port} instead"
        with pytest.raises(DemoError, match=f"port {taken} is busy"):
            web_port_choose(requested=taken)
    assert web_port_choose(requested=None, default=taken) == (taken, "")


def test_children_share_one_database_redis_and_both_queues():
    base = {"PATH": "/bin", "AWS_PROFILE": "prod", "AWS_SESSION_TOKEN": "t", "CELERY_BROKER_URL": "redis://x"}
    env = child_env(
        base=base,
        database_url="sqlite:////tmp/d.sqlite3",
        redis_url="redis://127.0.0.1:7/0",
        sqs_endpoint="http://127.0.0.1:5",
        queue_urls=["http://127.0.0.1:5/1/a", "http://127.0.0.1:5/1/b"],
        allowed_account="111122223333",
    )
    assert env["PATH"] == "/bin"
    assert not {"AWS_PROFILE", "AWS_SESSION_TOKEN", "CELERY_BROKER_URL"} & env.keys()
    assert env["DATABASE_URL"] == "sqlite:////tmp/d.sqlite3"
    assert env["REDIS_URL"] == "redis://127.0.0.1:7/0"
    assert env["SQS_QUEUE_URLS"] == "http://127.0.0.1:5/1/a,http://127.0.0.1:5/1/b"
    assert env["AWS_ENDPOINT_URL_SQS"] == "http://127.0.0.1:5"
    assert env["CHIME_ALLOWED_ACCOUNTS"] == "111122223333"
    assert int(env["SQS_WAIT_SECONDS"]) <= 5
    assert env["RECONCILE_SECONDS"] == "0" and "AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS" not in env
    env = child_env(
        base=base,
        database_url="sqlite:////tmp/d.sqlite3",
        redis_url="redis://127.0.0.1:7/0",
        sqs_endpoint="http://127.0.0.1:5",
        queue_urls=[],
        allowed_account="111122223333",
        chime_api_endpoint="http://127.0.0.1:6",
        reconcile_seconds=20,
    )
    assert (env["AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS"], env["RECONCILE_SECONDS"]) == (
        "http://127.0.0.1:6",
        "20",
    )


def test_the_simulator_is_told_the_demo_options_in_words_simulate_reads():
    options = DemoOptions(meeting_minutes=7.5, calls=3, meetings=2, attendees=6, rate=9)
    argv = simulator_argv(queue_urls=["http://q/a", "http://q/b"], options=options, seed=42)
    assert argv[1:3] == [str(ROOT / "manage.py"), "simulate"]
    parsed = SimulateCommand().create_parser("manage.py", "simulate").parse_args(argv[3:])
    assert (parsed.meeting_minutes, parsed.calls, parsed.meetings, parsed.attendees) == (7.5, 3, 2, 6)
    assert (parsed.rate, parsed.seed, parsed.queue_url, parsed.sns_queue_url) == (
        9,
        42,
        "http://q/a",
        "http://q/b",
    )
    assert parsed.forever and parsed.shuffle
    assert parsed.lose == options.lose > 0 and parsed.chime_api_url is None
    argv = simulator_argv(
        queue_urls=["http://q/a"] * 2, options=options, seed=1, chime_api_endpoint="http://c"
    )
    assert (
        SimulateCommand().create_parser("manage.py", "simulate").parse_args(argv[3:]).chime_api_url
        == "http://c"
    )


def test_url_redacted_hides_only_the_password():
    assert url_redacted("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert url_redacted("postgres://u:pw@h/db") == "postgres://u:***@h/db"
    assert url_redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


# Stopping -------------------------------------------------------------------------------------

STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the grandchild across exec
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(grandchild.pid, flush=True)
time.sleep(120)
"""


def test_stop_all_kills_a_child_that_ignores_sigterm_and_its_whole_group(supervisor, said):
    child = supervisor.spawn("stubborn", [sys.executable, "-c", STUBBORN], env=os.environ, stop_timeout=0.5)
    deadline = time.monotonic() + 20
    while not child.log_path.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(child.log_path.read_text().split()[0])
    assert os.getpgid(child.pid) == child.pid  # its own process group, away from our Ctrl-C
    assert os.getpgid(grandchild) == child.pid
    started = time.monotonic()
    supervisor.stop_all()
    assert time.monotonic() - started < 10
    assert not pid_alive(child.pid)
    deadline = time.monotonic() + 5
    while pid_alive(grandchild):
        assert time.monotonic() < deadline, "grandchild survived"
        time.sleep(0.05)
    assert "stubborn killed" in said.text


def test_a_child_that_exits_while_waited_for_fails_the_start_with_its_log(supervisor):
    supervisor.spawn(
        "broken", [sys.executable, "-c", "print('no such setting'); raise SystemExit(3)"], env=os.environ
    )
    with pytest.raises(ProcessError) as raised:
        supervisor.wait(lambda: False, what="waiting for broken", timeout=30)
    assert "broken exited with code 3 while waiting for broken" in str(raised.value)
    assert "no such setting" in str(raised.value)


def test_a_slow_wait_says_why_and_gives_up_with_the_reason(supervisor):
    with pytest.raises(ProcessError) as raised:
        supervisor.wait(
            lambda: False,
            what="waiting for meetings",
            timeout=0.3,
            hint=lambda: "drain error on q: no such table",
        )
    assert str(raised.value).startswith(
        "gave up waiting for meetings after 0s; drain error on q: no such table"
    )


# Database services and selectors --------------------------------------------------------------


@pytest.mark.django_db
def test_demo_login_is_staff_with_a_new_password_each_run():
    first = demo_login_reset()
    second = demo_login_reset()
    assert first != second and len(second) >= 16
    assert authenticate(username="demo", password=first) is None
    user = authenticate(username="demo", password=second)
    assert user is not None and user.is_staff and user.is_superuser


@pytest.mark.django_db
def test_the_demo_hook_is_made_afresh_each_run_for_every_change(settings):
    settings.HOOKS_ALLOW_HTTP_LOOPBACK = False  # the demo allows its loopback target itself
    other = Hook.objects.create(name="someone-elses", target="https://example.com/h", secret="s")
    first = demo_hook_register(url="http://127.0.0.1:5001/hook")
    second = demo_hook_register(url="http://127.0.0.1:5002/hook")
    [hook] = Hook.objects.filter(name=DEMO_HOOK_NAME)
    assert hook.secret == second != first
    assert (hook.target, hook.events, hook.meetings) == ("http://127.0.0.1:5002/hook", [], "*")
    assert Hook.objects.filter(pk=other.pk).exists()


@pytest.mark.django_db
def test_queue_sources_point_at_this_runs_queues_only():
    old = QueueSource.objects.create(url="http://127.0.0.1:1111/123456789012/chime-roster-demo-sns")
    foreign = QueueSource.objects.create(url="https://sqs.eu-west-1.amazonaws.com/1/prod")
    now = ["http://127.0.0.1:2222/123456789012/chime-roster-demo-eventbridge"]
    QueueSource.objects.create(url=now[0], enabled=False, consumers=0)
    demo_queue_sources_reset(queue_urls=now)
    old.refresh_from_db()
    foreign.refresh_from_db()
    current = QueueSource.objects.get(url=now[0])
    assert not old.enabled
    assert foreign.enabled
    assert current.enabled and current.consumers == 1 and current.last_poll_at is None


@pytest.mark.django_db
def test_meetings_an_earlier_demo_left_running_are_ended_through_ingest():
    demo_queue = "http://127.0.0.1:1111/123456789012/chime-roster-demo-eventbridge"
    left = meeting_stream(seed=21, attendees=2, end=False)
    elsewhere = meeting_stream(seed=22, attendees=2, end=False)
    ended = meeting_stream(seed=23, attendees=2, end=True)
    for details, queue in (
        (left, demo_queue),
        (elsewhere, "https://sqs.eu-west-1.amazonaws.com/1/prod"),
        (ended, demo_queue),
    ):
        messages_ingest(messages=[IncomingMessage(body=as_envelope(d), queue=queue) for d in details])
    now_ms = left[-1]["timestamp"] + 1000
    enders = demo_leftover_meetings(now_ms=now_ms)
    assert [d["meetingId"] for d in enders] == [left[0]["meetingId"]]
    result = messages_ingest(messages=[IncomingMessage(body=json.dumps(d)) for d in enders])
    assert result.applied == 1 and result.quarantined == 0
    meeting = Meeting.objects.get(meeting_id=left[0]["meetingId"])
    assert meeting.status == Meeting.Status.ENDED and meeting.ended_at == now_ms and meeting.joined_count == 0
    assert Meeting.objects.get(meeting_id=elsewhere[0]["meetingId"]).status == Meeting.Status.ACTIVE
    assert demo_leftover_meetings(now_ms=now_ms) == []


@pytest.mark.django_db
def test_drain_errors_name_the_queue_and_only_recent_ones():
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    urls = [f"http://127.0.0.1:1/123456789012/chime-roster-demo-{name}" for name in ("eventbridge", "sns")]
    QueueSource.objects.create(url=urls[0], last_error="OperationalError: boom", last_error_at=now)
    QueueSource.objects.create(url=urls[1], last_error="old", last_error_at=now - timedelta(minutes=5))
    QueueSource.objects.create(
        url="https://sqs.eu-west-1.amazonaws.com/1/prod", last_error="x", last_error_at=now
    )
    since = now - timedelta(seconds=1)
    assert demo_drain_errors(queue_urls=urls, since=since) == (
        "drain error on chime-roster-demo-eventbridge: OperationalError: boom"
    )
    assert demo_drain_errors(queue_urls=urls, since=now + timedelta(seconds=1)) == ""


@pytest.mark.django_db
def test_status_counts_come_from_the_database():
    details = meeting_stream(seed=7, attendees=2, end=False)
    bodies = [as_envelope(d) for d in details]
    messages_ingest(messages=[IncomingMessage(body=b) for b in [*bodies, bodies[0], "not json"]])
    counts = demo_counts()
    assert counts["meetings"] == 1 and counts["live"] == 1
    assert counts["events"] == len(details)
    assert counts["duplicates"] == 1
    assert counts["quarantined"] == 1
    assert counts["joined"] >= 1


# The whole start-up path ----------------------------------------------------------------------


class Reader:
    """Collects a process's output lines in a thread so the test never blocks on a pipe."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, *, timeout: float, process: subprocess.Popen) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.text)
            if match:
                return match
            assert process.poll() is None, f"demo exited early:\n{self.text}"
            assert time.monotonic() < deadline, f"no {pattern!r} in:\n{self.text}"
            time.sleep(0.1)


def browser() -> tuple[urllib.request.OpenerDirector, http.cookiejar.CookieJar]:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(jar)
    )
    return opener, jar


def live_delta_seen(base: str, *, jar: http.cookiejar.CookieJar) -> bool:
    """The dashboard's socket, as the logged-in browser opens it, pushes simulated changes."""
    from websockets.sync.client import connect

    session = next(cookie.value for cookie in jar if cookie.name == "sessionid")
    url = base.replace("http://", "ws://") + "ws/dashboard/"
    origin = base.rstrip("/")
    with connect(url, origin=origin, additional_headers={"Cookie": f"sessionid={session}"}, proxy=None) as ws:
        assert json.loads(ws.recv(10))["type"] == "hello"
        ws.send(json.dumps({"type": "subscribe", "meetings": "*"}))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = json.loads(ws.recv(20))
            if message["type"] == "delta" and message["attendees"]:
                return True
    return False


def form_post(opener: urllib.request.OpenerDirector, url: str, fields: dict[str, str]) -> str:
    """As a browser: GET the form (CSRF cookie + hidden field), POST it; the path it led to."""
    with opener.open(url, timeout=10) as response:
        form = response.read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    data = urllib.parse.urlencode({"csrfmiddlewaretoken": token, **fields}).encode()
    with opener.open(
        urllib.request.Request(url, data=data, headers={"Referer": url}), timeout=10
    ) as response:
        assert response.status == 200
        return urllib.parse.urlsplit(response.url).path


def log_in(
    base: str, username: str, password: str
) -> tuple[urllib.request.OpenerDirector, http.cookiejar.CookieJar]:
    """Through the sign-in page, as a browser, to the dashboard."""
    opener, jar = browser()
    landed = form_post(
        opener, f"{base}login/?next=/", {"username": username, "password": password, "next": "/"}
    )
    assert landed == "/"  # redirected: signed in
    assert {"csrftoken", "sessionid"} <= {cookie.name for cookie in jar}
    return opener, jar


@pytest.mark.once  # it never uses the suite's database, so one run is enough
@pytest.mark.slow
def test_demo_starts_shows_simulated_meetings_and_ctrl_c_leaves_nothing(tmp_path):
    port = free_port()
    env = dict(os.environ)
    for name in ("AWS_ENDPOINT_URL_SQS", "SQS_QUEUE_URLS"):
        env.pop(name, None)
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        # Nothing answers here, so the demo starts its own redis-server: the worker's broker queue
        # is then private (the shared Redis's is used by other workers).
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        PYTHONUNBUFFERED="1",
    )
    argv = [sys.executable, str(ROOT / "manage.py"), "demo", "--port", str(port), "--rate", "40"]
    argv += ["--meetings", "3", "--attendees", "4", "--meeting-minutes", "0.5", "--status-every", "2"]
    started = time.monotonic()
    demo = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    out = Reader(demo)
    pids: dict[str, int] = {}
    try:
        out.wait_for(r"Ctrl-C stops everything", timeout=90, process=demo)
        ready_after = time.monotonic() - started
        base = re.search(r"dashboard\s+(http://\S+/)", out.text).group(1)
        username, password = re.search(r"login\s+(\S+) / (\S+)", out.text).groups()
        pids = {
            name: int(pid)
            for name, pid in re.findall(r"([\w-]+)=(\d+)", re.search(r"processes\s+(.*)", out.text).group(1))
        }
        work_dir = Path(re.search(r"child logs in (\S+)", out.text).group(1))
        moto_port = int(re.search(r"moto server\) and two queues: http://127.0.0.1:(\d+)", out.text).group(1))
        redis_port = int(re.search(r"private redis-server on port (\d+)", out.text).group(1))
        assert base == f"http://127.0.0.1:{port}/"
        assert set(pids) == {
            "redis",
            "moto",
            "chime-api",
            "hook-receiver",
            "daphne",
            "worker",
            "beat",
            "simulator",
        }
        assert all(pid_alive(pid) for pid in pids.values())
        assert (tmp_path / "demo.sqlite3").exists()  # the database it was told, not the default

        anonymous, _ = browser()
        with pytest.raises(urllib.error.HTTPError) as refused:
            anonymous.open(f"{base}api/meetings/", timeout=10)
        assert refused.value.code == 401

        opener, jar = log_in(base, username, password)
        deadline = time.monotonic() + 30
        while True:
            with opener.open(f"{base}api/meetings/", timeout=10) as response:
                meetings = json.loads(response.read())["meetings"]
            if any(m["peak_joined"] > 0 for m in meetings):
                break
            assert time.monotonic() < deadline, f"no meeting with attendees: {meetings}"
            time.sleep(0.5)
        assert all(m["external_meeting_id"] for m in meetings)
        assert live_delta_seen(base, jar=jar)
        # A password reset from the sign-in page: the demo said where its mail is printed.
        mail_log = Path(re.search(r"password reset mails are printed in (\S+)", out.text).group(1))
        assert (
            form_post(opener, f"{base}password_reset/", {"email": "demo@example.com"})
            == "/password_reset/done/"
        )
        deadline = time.monotonic() + 10
        while not re.search(rf"{re.escape(base)}reset/\S+/\S+/", mail_log.read_text()):
            assert time.monotonic() < deadline, mail_log.read_text()[-2000:]
            time.sleep(0.2)
        # The demo's hook delivers the simulated changes to its receiver, signed: the page shows ✓.
        receiver = re.search(r"hooks\s+(http://\S+/)", out.text).group(1)
        deadline = time.monotonic() + 30
        while True:
            with anonymous.open(f"{receiver}deliveries.json", timeout=10) as response:
                arrived = json.loads(response.read())["deliveries"]
            if arrived:
                break
            assert time.monotonic() < deadline, "no delivery reached the demo's receiver"
            time.sleep(0.5)
        assert all(d["signature_ok"] for d in arrived), arrived[:3]
        assert arrived[0]["meeting_id"] and arrived[0]["events"]
        with anonymous.open(receiver, timeout=10) as response:
            assert 'title="signature verified">✓<' in response.read().decode()
        out.wait_for(r"meetings \d+ \(\d+ live, \d+ attendees in\), events [1-9]", timeout=15, process=demo)

        demo.send_signal(signal.SIGINT)
        stopping = time.monotonic()
        assert demo.wait(30) == 0, out.text
        stopped_in = time.monotonic() - stopping
        out.thread.join(5)
        assert out.lines[-1] == "[demo] stopped", out.text
        for name, pid in pids.items():
            assert not pid_alive(pid), f"{name} ({pid}) still running"
        for open_port in (port, moto_port, redis_port):
            assert not port_open(open_port), f"port {open_port} still open"
        assert not work_dir.exists()
        assert ready_after < 60 and stopped_in < 20, (ready_after, stopped_in)
        print(f"demo ready in {ready_after:.1f}s, stopped in {stopped_in:.1f}s")
    finally:
        if demo.poll() is None:  # a failed assertion: let the demo clean up, else kill it
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
                demo.wait(10)
        for pid in pids.values():  # never leak a child if an assertion failed half-way
            if pid_alive(pid):
                os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(tmp_path, ignore_errors=True)
