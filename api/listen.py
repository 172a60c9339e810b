"""Listener addresses (HOST:PORT), checked when the command line is read."""

from __future__ import annotations

import ipaddress
import os
import re
import socket

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"  # one DNS label
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


class ListenError(Exception):
    """A listener that cannot be set up: a malformed address or one we cannot bind."""


def parse_host_port(address: str) -> tuple[str, int]:
    """("host", port) from "host:port", "1.2.3.4:port" or "[::1]:port"."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text:
        raise ListenError(f"expected HOST:PORT, got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ListenError(f"{address!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ListenError(f"{address!r}: write an IPv6 address in brackets, as [::1]:9093")
    elif not _HOSTNAME.match(host):
        raise ListenError(f"{address!r}: {host!r} is not a host name or IP address")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ListenError(f"{address!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


def check_can_listen(what: str, address: str) -> None:
    """Fail early, with the OS's reason, if `address` cannot be bound (in use, not local)."""
    host, port = parse_host_port(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        socket.create_server((host, port), family=family).close()
    except OSError as exc:
        raise ListenError(f"{what} cannot listen on {address}: {reason(exc)}") from None


def reason(exc: OSError) -> str:
    """The OS's words for the error, without the address wrappers add to them."""
    return os.strerror(exc.errno) if exc.errno else str(exc)
