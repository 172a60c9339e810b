"""Listener addresses (HOST:PORT), checked when the command line is read."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass

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


DEFAULT_KAFKA_LISTEN = "127.0.0.1:9092"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_LISTENER_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class ListenerConfig:
    """One entry of Kafka's `listeners` with its security protocol and advertised address."""

    name: str  # upper case, as Kafka normalises it
    protocol: str  # one of SECURITY_PROTOCOLS
    host: str  # "" binds every interface
    port: int
    advertised: tuple[str, int] | None  # from advertised.listeners; None: the bound address

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def ssl_prefix(self) -> str:
        """Kafka's per-listener override prefix: listener.name.<name in lower case>."""
        return f"listener.name.{self.name.lower()}."


def kafka_listeners(listeners: str | None, protocol_map: str | None, advertised: str | None,
                    kafka_listen: str | None) -> list[ListenerConfig]:
    """The Kafka listeners from Kafka's `listeners`, `listener.security.protocol.map` and
    `advertised.listeners`, or --kafka-listen (one PLAINTEXT listener); ListenError says
    what is wrong."""
    if listeners and kafka_listen:
        raise ListenError("--kafka-listen and the listeners property both name Kafka listeners: give one "
                          "(--kafka-listen HOST:PORT is listeners=PLAINTEXT://HOST:PORT)")
    entries = _named_addresses("listeners", listeners or f"PLAINTEXT://{kafka_listen or DEFAULT_KAFKA_LISTEN}")
    protocols = {name: name for name in SECURITY_PROTOCOLS} | _protocol_map(protocol_map)
    announced = _named_addresses("advertised.listeners", advertised or "")
    missing = [name for name in announced if name not in entries]
    if missing:
        raise ListenError(f"advertised.listeners names {', '.join(missing)}, not a listener "
                          f"({', '.join(entries)})")
    ports = [port for _, port in entries.values() if port]
    if len(set(ports)) < len(ports):
        raise ListenError(f"listeners={listeners}: two listeners on one port")
    configs = []
    for name, (host, port) in entries.items():
        if name not in protocols:
            raise ListenError(f"listener {name} has no security protocol: add {name}:SSL (or PLAINTEXT, "
                              f"SASL_PLAINTEXT, SASL_SSL) to listener.security.protocol.map")
        configs.append(ListenerConfig(name, protocols[name], host, port, announced.get(name)))
    return configs


def _named_addresses(what: str, text: str) -> dict[str, tuple[str, int]]:
    """{NAME: (host, port)} from `NAME://host:port,...` (an empty host: every interface)."""
    addresses: dict[str, tuple[str, int]] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, sep, address = entry.partition("://")
        name = name.upper()
        if not sep or not _LISTENER_NAME.match(name):
            raise ListenError(f"{what}: expected NAME://HOST:PORT entries, got {entry!r}")
        if name in addresses:
            raise ListenError(f"{what}: listener {name} is named twice")
        addresses[name] = ("", parse_host_port(f"0.0.0.0{address}")[1]) if address.startswith(":") else \
            parse_host_port(address)
    return addresses


def _protocol_map(text: str | None) -> dict[str, str]:
    mapping = {}
    for entry in filter(None, (part.strip() for part in (text or "").split(","))):
        name, sep, protocol = entry.partition(":")
        if not sep or protocol.upper() not in SECURITY_PROTOCOLS:
            raise ListenError(f"listener.security.protocol.map: expected NAME:PROTOCOL entries with a protocol "
                              f"of {', '.join(SECURITY_PROTOCOLS)}, got {entry!r}")
        mapping[name.strip().upper()] = protocol.upper()
    return mapping


def is_loopback(host: str) -> bool:
    """Whether `host` reaches this machine only: every address it resolves to is loopback
    ("" and 0.0.0.0 bind every interface: not loopback)."""
    if not host:
        return False
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
    except OSError:
        return False
    return bool(resolved) and all(ipaddress.ip_address(str(address).split("%")[0]).is_loopback for address in resolved)
