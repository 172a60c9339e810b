"""The gRPC server: tierlog's service, health checking and reflection on one listener, over
TLS with grpc.listener.security.protocol=SSL (client certificates: grpc_identity.py)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .grpc_identity import CallAuthentication
from .grpc_service import TierlogService
from .listen import ListenError, check_can_listen, parse_host_port
from .proto import tierlog_pb2 as pb
from .proto import tierlog_pb2_grpc as pb_grpc
from .tls import ClientAuth, ServerTls

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Tierlog"].full_name
# Produce requests are split into batches of max.message.bytes; this only bounds one request.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class GrpcServer:
    def __init__(self, service: TierlogService, address: str, tls: ServerTls | None = None) -> None:
        self.service = service
        self.address = address
        self.credentials = server_credentials(tls) if tls is not None else None
        # so_reuseport off: a port another process holds must fail the bind, not be shared.
        self.server = grpc.aio.server(interceptors=[CallAuthentication(service.broker.users, service.broker.settings,
                                                                       tls is not None)], options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ])
        pb_grpc.add_TierlogServicer_to_server(service, self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)
        self.port = 0
        self.started = False

    @property
    def serving(self) -> bool:
        return self.started and not self.service.closing

    def bind(self) -> int:
        """Bind the listener (the server does not serve until `start`). Returns the port."""
        check_can_listen("gRPC", self.address)  # a clear reason, before gRPC logs its own
        host, port = parse_host_port(self.address)
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            if self.credentials is None:
                self.port = self.server.add_insecure_port(target)
            else:
                self.port = self.server.add_secure_port(target, self.credentials)
        except RuntimeError as exc:
            raise ListenError(f"gRPC cannot listen on {self.address}: {exc}") from None
        if self.port == 0:
            raise ListenError(f"gRPC cannot listen on {self.address}: the address is in use or not local")
        return self.port

    async def start(self) -> None:
        await self.server.start()
        self.started = True
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace_seconds: float) -> None:
        """Report NOT_SERVING, end waiting readers, let calls in flight finish within the grace."""
        await self.health.enter_graceful_shutdown()
        self.service.close()
        await self.server.stop(grace_seconds)


def server_credentials(tls: ServerTls) -> grpc.ServerCredentials:
    """TLS whose certificate follows the files: gRPC asks before each handshake."""
    def configuration() -> grpc.ServerCertificateConfiguration:
        trusted = tls.trusted.encode() if tls.trusted is not None and tls.client_auth is ClientAuth.REQUIRED else None
        return grpc.ssl_server_certificate_configuration([(tls.material.key_pem, tls.material.chain_pem)], trusted)

    return grpc.dynamic_ssl_server_credentials(
        configuration(), lambda: configuration() if tls.refresh() else None,
        require_client_authentication=tls.client_auth is ClientAuth.REQUIRED)
