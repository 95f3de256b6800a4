"""Hook targets: what may be set, and where a delivery may go (server-side request forgery).

A target is an ``https://`` URL, a loopback ``http://`` URL when HOOKS_ALLOW_HTTP_LOOPBACK is on,
``sns:<topic ARN>`` or ``sqs:<queue URL>``; the last two only by operators (admin, the command).
At delivery time the URL's host is resolved and every address checked: private, link-local,
loopback (unless allowed), multicast, reserved and unspecified addresses are refused, and the
connection goes to the address that was checked, so DNS cannot answer differently in between.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

KIND_HTTP = "http"
KIND_SNS = "sns"
KIND_SQS = "sqs"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


class TargetRefused(ValueError):
    """A target that may not be set, or an address a delivery may not reach."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Target:
    kind: str
    value: str  # the URL, topic ARN or queue URL


def target_parse(*, target: str, operator: bool) -> Target:
    """The target of a hook, refused when it may not be set (by a REST token: ``operator`` False)."""
    target = (target or "").strip()
    if target.startswith(("sns:", "sqs:")):
        if not operator:
            raise TargetRefused("forbidden_target", "sns: and sqs: targets are set by operators only")
        kind, _, value = target.partition(":")
        if kind == KIND_SNS and not value.startswith("arn:"):
            raise TargetRefused("bad_target", "an sns: target is a topic ARN: sns:arn:aws:sns:...")
        if kind == KIND_SQS and not value.startswith(("https://", "http://")):
            raise TargetRefused("bad_target", "an sqs: target is a queue URL: sqs:https://...")
        return Target(kind, value)
    parts = urlsplit(target)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise TargetRefused("bad_target", "the target is an https:// URL")
    if parts.scheme == "http" and not (settings.HOOKS_ALLOW_HTTP_LOOPBACK and _loopback_name(parts.hostname)):
        raise TargetRefused(
            "bad_target", "http:// is allowed for loopback only, with HOOKS_ALLOW_HTTP_LOOPBACK"
        )
    if parts.username or parts.password:
        raise TargetRefused("bad_target", "no credentials in the URL: the signature authenticates")
    literal = _literal(parts.hostname)
    if literal is not None:
        address_check(address=literal)
    return Target(KIND_HTTP, target)


def _loopback_name(host: str) -> bool:
    literal = _literal(host)
    return host.lower() in LOOPBACK_NAMES if literal is None else literal.is_loopback


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def address_check(*, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """Refuse an address a hook may not reach."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        if settings.HOOKS_ALLOW_HTTP_LOOPBACK:
            return
        raise TargetRefused("forbidden_address", f"{address} is a loopback address")
    if (
        address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    ):
        raise TargetRefused("forbidden_address", f"{address} is not a public address")


def address_resolve(*, host: str, port: int) -> str:
    """The address to connect to for ``host``: every address it resolves to is checked (one bad
    answer refuses the host, so a name cannot mix a public and a private address), the first used."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetRefused("unresolved", f"{host} does not resolve: {exc}") from exc
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise TargetRefused("unresolved", f"{host} does not resolve")
    for address in addresses:
        address_check(address=address)
    return str(addresses[0])
