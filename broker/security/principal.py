"""Principals, in Kafka's form: a type and a name, written `User:alice`."""

from __future__ import annotations

from dataclasses import dataclass

USER = "User"


@dataclass(frozen=True)
class Principal:
    type: str
    name: str

    def __str__(self) -> str:
        return f"{self.type}:{self.name}"

    @classmethod
    def parse(cls, text: str) -> Principal:
        """`User:alice` -> Principal("User", "alice"); the name may hold colons (a TLS
        subject such as `User:CN=a:b`). Raises ValueError without a type or a name."""
        kind, sep, name = text.partition(":")
        if not sep or not kind or not name:
            raise ValueError(f"{text!r} is not a principal: expected TYPE:NAME, as User:alice")
        return cls(kind, name)


# Who a connection is before it authenticates, or on a listener without authentication.
ANONYMOUS = Principal(USER, "ANONYMOUS")
