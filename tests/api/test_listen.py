from __future__ import annotations

import pytest

from api.listen import ListenError, parse_host_port


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:9093", ("127.0.0.1", 9093)),
    ("localhost:0", ("localhost", 0)),
    ("broker-1.example.com:65535", ("broker-1.example.com", 65535)),
    ("[::1]:9644", ("::1", 9644)),
])
def test_listener_addresses(address: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(address) == expected


@pytest.mark.parametrize("address, words", [
    ("9093", "expected HOST:PORT"),
    (":9093", "expected HOST:PORT"),
    ("127.0.0.1:", "expected HOST:PORT"),
    ("127.0.0.1:port", "the port must be a number"),
    ("127.0.0.1:70000", "the port must be a number"),
    ("::1:9093", "brackets"),
    ("[zz::1]:9093", "not an IPv6 address"),
    ("bad_host!:9093", "not a host name or IP address"),
])
def test_bad_listener_addresses(address: str, words: str) -> None:
    with pytest.raises(ListenError, match=words):
        parse_host_port(address)
