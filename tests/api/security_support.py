"""Certificates and TLS servers for the security tests: a trustme CA, a server certificate
for 127.0.0.1/localhost, a client certificate (CN=alice), and a `tierlog serve` with Kafka
listeners of any security protocol.

    certs = make_certs(tmp_path)            # or the `certs` fixture (certs_fixture; one set per module)
    server = SecureKafkaServer(data_dir, {"SSL": "SSL"}, certs=certs).start()
    Consumer({"bootstrap.servers": server.address("SSL"), **certs.confluent_ssl()})
"""

from __future__ import annotations

import os
import ssl
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from testkit.ports import free_port

from .kafka.cluster import FAST_GROUPS, KafkaServer
from .server import STARTUP_SECONDS, tierlog_command

CLIENT_CN = "alice"
CLIENT_ORG = "tierlog tests"
CLIENT_UNIT = "clients"
CLIENT_PRINCIPAL = f"User:CN={CLIENT_CN},OU={CLIENT_UNIT},O={CLIENT_ORG}"  # Kafka's DEFAULT mapping (RFC 2253)


@dataclass(frozen=True)
class Certs:
    """PEM files in one folder. `server`/`client`: the key and the certificate chain in one
    file (Kafka's ssl.keystore.location with ssl.keystore.type=PEM)."""

    folder: Path
    ca: trustme.CA

    @property
    def ca_file(self) -> str:
        return str(self.folder / "ca.pem")

    @property
    def other_ca_file(self) -> str:
        """A CA that signed nothing here: a client trusting only it must fail."""
        return str(self.folder / "other-ca.pem")

    def pem(self, who: str) -> str:
        return str(self.folder / f"{who}.pem")

    def key(self, who: str) -> str:
        return str(self.folder / f"{who}.key")

    def cert(self, who: str) -> str:
        return str(self.folder / f"{who}.crt")

    def issue_server(self, ca: trustme.CA | None = None) -> None:
        """(Re)write the server's files with a new certificate from `ca` (default: ours),
        each by rename, as a certificate manager rotates them."""
        leaf = (ca or self.ca).issue_cert("127.0.0.1", "localhost", common_name="tierlog-server")
        self._write("server", leaf)

    def _write(self, who: str, leaf: trustme.LeafCert) -> None:
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        key = leaf.private_key_pem.bytes()
        for path, data in ((self.pem(who), key + chain), (self.key(who), key), (self.cert(who), chain)):
            temporary = f"{path}.new"
            with open(temporary, "wb") as f:
                f.write(data)
            os.replace(temporary, path)

    def server_properties(self, prefix: str = "") -> tuple[str, ...]:
        """Broker properties for the server's keystore and the CA as truststore
        (`prefix`: e.g. "listener.name.ssl." for one listener)."""
        return (f"{prefix}ssl.keystore.type=PEM", f"{prefix}ssl.keystore.location={self.pem('server')}",
                f"{prefix}ssl.truststore.type=PEM", f"{prefix}ssl.truststore.location={self.ca_file}")

    def confluent_ssl(self, client_cert: bool = False) -> dict[str, str]:
        """librdkafka's settings for an SSL connection checked against our CA."""
        settings = {"security.protocol": "SSL", "ssl.ca.location": self.ca_file}
        if client_cert:
            settings |= {"ssl.certificate.location": self.cert("client"), "ssl.key.location": self.key("client")}
        return settings

    def client_context(self, client_cert: bool = False) -> ssl.SSLContext:
        """A Python client's context trusting our CA (and presenting the client certificate)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if client_cert:
            context.load_cert_chain(self.cert("client"), self.key("client"))
        return context


def make_certs(folder: Path) -> Certs:
    folder.mkdir(parents=True, exist_ok=True)
    certs = Certs(folder, trustme.CA())
    certs.ca.cert_pem.write_to_path(certs.ca_file)
    trustme.CA().cert_pem.write_to_path(certs.other_ca_file)
    certs.issue_server()
    certs._write("client", certs.ca.issue_cert(common_name=CLIENT_CN, organization_name=CLIENT_ORG,
                                                    organization_unit_name=CLIENT_UNIT))
    return certs


@pytest.fixture(scope="module", name="certs")
def certs_fixture(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """The `certs` fixture: `from ..security_support import certs_fixture` in a test module."""
    return make_certs(tmp_path_factory.mktemp("certs"))


class SecureKafkaServer(KafkaServer):
    """`tierlog serve` with the Kafka listeners `listeners` ({name: security protocol}, in
    order; each on a free loopback port) instead of --kafka-listen, the server's
    certificate as every listener's keystore when `certs` is given, and `conf`."""

    def __init__(self, data_dir: str, listeners: Mapping[str, str], *conf: str, certs: Certs | None = None,
                 https: bool = False) -> None:
        super().__init__(data_dir)
        self.ports = {name: free_port() for name in listeners}
        self.kafka_port = next(iter(self.ports.values()))
        self.https = https
        self.certs = certs
        self.grpc_host = "127.0.0.1"  # where gRPC binds (reached on 127.0.0.1 all the same)
        wiring = (
            "listeners=" + ",".join(f"{name}://127.0.0.1:{port}" for name, port in self.ports.items()),
            "listener.security.protocol.map=" + ",".join(f"{name}:{proto}" for name, proto in listeners.items()),
        )
        keystore = certs.server_properties() if certs is not None else ()
        self.conf = (*FAST_GROUPS, *wiring, *keystore, *(("http.listener.security.protocol=SSL",) if https else ()),
                     *conf)

    def address(self, listener: str) -> str:
        return f"127.0.0.1:{self.ports[listener]}"

    @property
    def http_url(self) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.http_port}"

    def start(self) -> SecureKafkaServer:
        """Started and ready: each Kafka listener accepts once the process logs that it serves
        (the log is appended to across restarts: a new such line)."""
        served_before = self.log().count(SERVING_LINE) if os.path.exists(self.log_path) else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*tierlog_command(), "serve", "--data-dir", self.data_dir, "--grpc-listen", f"{self.grpc_host}:{self.grpc_port}",
                 "--http-listen", f"127.0.0.1:{self.http_port}", "--object-store", f"file://{self.objects_dir}",
                 *(arg for setting in self.conf for arg in ("--conf", setting))],
                stdout=log, stderr=log)
        deadline = time.monotonic() + STARTUP_SECONDS
        while self.log().count(SERVING_LINE) == served_before:
            if self.process.poll() is not None:
                raise AssertionError(f"tierlog serve exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(f"tierlog serve did not start in {STARTUP_SECONDS} s:\n{self.log()}")
            time.sleep(0.01)
        return self


SERVING_LINE = "serving: "  # api/serve.py logs it once every listener accepts
