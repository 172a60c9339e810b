"""A bare Kafka protocol connection for tests that need exact frames: kio entities in
and out, nothing a client library would smooth over."""

from __future__ import annotations

import io
import socket
import struct
from typing import Any

from kio.index import load_response_schema
from kio.serial import entity_reader, entity_writer

SIZE = struct.Struct(">i")


def request_frame(request: Any, correlation_id: int, client_id: str = "wire-test") -> bytes:
    header_type = request.__header_schema__
    out = io.BytesIO()
    entity_writer(header_type)(out, header_type(request_api_key=request.__api_key__,
                                                request_api_version=request.__version__,
                                                correlation_id=correlation_id, client_id=client_id))
    entity_writer(type(request))(out, request)
    body = out.getvalue()
    return SIZE.pack(len(body)) + body


class Wire:
    def __init__(self, address: str, timeout: float = 15, source: str | None = None) -> None:
        """`source`: the local address to connect from (any of 127.0.0.0/8 on loopback)."""
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout,
                                             source_address=None if source is None else (source, 0))
        self._unread = b""

    def unread(self, data: bytes) -> None:
        """Bytes taken from the socket by hand, to be read again first."""
        self._unread = data + self._unread

    def send(self, request: Any, correlation_id: int) -> None:
        self.sock.sendall(request_frame(request, correlation_id))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _exactly(self, n: int) -> bytes:
        data = bytearray(self._unread[:n])
        self._unread = self._unread[n:]
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed by the server")
            data += chunk
        return bytes(data)

    def receive(self, api_key: int, version: int) -> tuple[int, Any]:
        """(correlation id, response entity) of the next response frame."""
        response_type = load_response_schema(api_key, version)
        (size,) = SIZE.unpack(self._exactly(4))
        frame = self._exactly(size)
        header, used = entity_reader(response_type.__header_schema__)(frame, 0)
        body, _ = entity_reader(response_type)(frame, used)
        return header.correlation_id, body

    def receive_frame(self) -> bytes:
        (size,) = SIZE.unpack(self._exactly(4))
        return self._exactly(size)

    def is_closed_by_server(self, timeout: float = 5) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()
