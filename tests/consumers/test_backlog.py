"""The Daphne change (consumers.backlog) and the Daphne our start commands run, without a server.
Through a real Daphne and real clients: tests/consumers/test_socket_limits.py."""

from __future__ import annotations

import pytest
from daphne.cli import CommandLineInterface
from daphne.ws_protocol import WebSocketFactory

from consumers import backlog
from roster.dev.processes import PING_INTERVAL_SECONDS, PING_TIMEOUT_SECONDS, daphne_command


def test_config_asgi_installed_the_bounded_protocol_with_the_setting(settings):
    import config.asgi  # noqa: F401 (it installs the protocol)

    assert WebSocketFactory.protocol is backlog.BoundedWebSocketProtocol
    assert backlog.BoundedWebSocketProtocol.max_unsent_bytes == settings.SOCKET_MAX_PENDING_BYTES > 0


def test_install_refuses_versions_it_was_not_checked_against(monkeypatch):
    import config.asgi  # noqa: F401

    monkeypatch.setattr(backlog, "version", lambda name: "99.0" if name == "daphne" else backlog.PINNED[name])
    monkeypatch.setattr(backlog.BoundedWebSocketProtocol, "max_unsent_bytes", 123)
    with pytest.raises(RuntimeError, match="update PINNED"):
        backlog.install(max_unsent_bytes=1)
    assert backlog.BoundedWebSocketProtocol.max_unsent_bytes == 123  # nothing changed


def test_our_start_command_sets_the_websocket_ping_as_daphne_reads_it():
    argv = daphne_command(8123)
    assert argv[1:3] == ["-m", "daphne"]
    args = CommandLineInterface().parser.parse_args(argv[3:])
    assert (args.port, args.host, args.application) == (8123, "127.0.0.1", "config.asgi:application")
    assert (args.ping_interval, args.ping_timeout) == (PING_INTERVAL_SECONDS, PING_TIMEOUT_SECONDS)
    quick = daphne_command(8123, ping_interval=1, ping_timeout=2)
    short = CommandLineInterface().parser.parse_args(quick[3:])
    assert (short.ping_interval, short.ping_timeout) == (1, 2)
