"""TLS for the listeners, from Kafka's ssl.* properties (PEM only), reloaded when its files change.

A listener's properties are `ssl.<x>`, overridden by `<prefix>ssl.<x>` (Kafka's
`listener.name.<listener>.` for a Kafka listener; `grpc.` and `http.` for tierlog's other
two). The key and the certificate chain come from `ssl.keystore.location` (one PEM file
holding both) or inline from `ssl.keystore.key` and `ssl.keystore.certificate.chain`; the
CAs that client certificates are checked against from `ssl.truststore.location` or inline
`ssl.truststore.certificates`.

`ServerTls.context()` is what a new connection gets: at most once a second it looks at the
files' modification times, and when one changed it builds a new context from them, so
rotated certificates reach new connections without a restart; a new file that does not
load is logged and the last good context stays. Thread-safe (gRPC checks from its own
threads).
"""

from __future__ import annotations

import logging
import os
import secrets
import ssl
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from broker.security.principal import USER, Principal
from hotlog.rate_limited import RateLimitedReport

log = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 1.0
_PROTOCOLS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
DEFAULT_ENABLED_PROTOCOLS = "TLSv1.2,TLSv1.3"  # Kafka's


class TlsConfigError(Exception):
    """SSL properties that cannot make a context: the message names the property."""


class ClientAuth(str, Enum):
    NONE = "none"
    REQUESTED = "requested"
    REQUIRED = "required"


@dataclass(frozen=True)
class KeyMaterial:
    """A key (unencrypted PEM, held only in memory) and its certificate chain (PEM)."""

    key_pem: bytes
    chain_pem: bytes


class SslProperties:
    """One listener's view of the ssl.* properties: `<prefix>ssl.<x>`, else `ssl.<x>`."""

    def __init__(self, properties: Mapping[str, str], prefix: str) -> None:
        self.properties = properties
        self.prefix = prefix

    def name(self, key: str) -> str:
        """The property that gives `key` (for error messages)."""
        own = f"{self.prefix}ssl.{key}"
        return own if own in self.properties else f"ssl.{key}"

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.properties.get(f"{self.prefix}ssl.{key}", self.properties.get(f"ssl.{key}", default))

    @property
    def client_auth(self) -> ClientAuth:
        raw = self.get("client.auth", "none") or "none"
        try:
            return ClientAuth(raw.lower())
        except ValueError:
            raise TlsConfigError(f"{self.name('client.auth')}={raw}: expected none, requested or required") from None

    @property
    def files(self) -> tuple[str, ...]:
        """The files the context is built from (their changes trigger a reload)."""
        return tuple(path for path in (self.get("keystore.location"), self.get("truststore.location")) if path)

    def key_material(self) -> KeyMaterial:
        for key in ("keystore.type", "truststore.type"):
            kind = self.get(key, "PEM") or "PEM"
            if kind.upper() != "PEM":
                raise TlsConfigError(f"{self.name(key)}={kind}: tierlog reads PEM only (convert with openssl or "
                                     f"keytool)")
        location = self.get("keystore.location")
        inline_key, inline_chain = self.get("keystore.key"), self.get("keystore.certificate.chain")
        if location and (inline_key or inline_chain):
            raise TlsConfigError(f"{self.name('keystore.location')} and {self.name('keystore.key')}/"
                                 f"{self.name('keystore.certificate.chain')}: give one or the other")
        if location:
            key_text = chain_text = _read(self.name("keystore.location"), location)
        elif inline_key and inline_chain:
            key_text, chain_text = inline_key.encode(), inline_chain.encode()
        else:
            raise TlsConfigError(f"TLS needs {self.name('keystore.location')} (a PEM file with the key "
                                 f"and the certificate chain), or {self.name('keystore.key')} and "
                                 f"{self.name('keystore.certificate.chain')}")
        return _key_material(self, key_text, chain_text)

    def trusted_pem(self) -> str | None:
        location, inline = self.get("truststore.location"), self.get("truststore.certificates")
        if location and inline:
            raise TlsConfigError(f"{self.name('truststore.location')} and {self.name('truststore.certificates')}: "
                                 f"give one or the other")
        if location:
            inline = _read(self.name("truststore.location"), location).decode(errors="replace")
        if inline is None:
            return None
        try:
            if not x509.load_pem_x509_certificates(inline.encode()):
                raise ValueError("no certificate")
        except ValueError:
            where = self.name("truststore.location" if location else "truststore.certificates")
            raise TlsConfigError(f"{where}: no PEM certificate in it") from None
        return inline

    def protocol_range(self) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
        """The lowest and highest TLS version: `ssl.enabled.protocols`, capped by `ssl.protocol`
        (Kafka: ssl.protocol=TLSv1.2 keeps TLSv1.3 off even if enabled)."""
        raw = self.get("enabled.protocols", DEFAULT_ENABLED_PROTOCOLS) or ""
        enabled = [name.strip() for name in raw.split(",") if name.strip()]
        unknown = [name for name in enabled if name not in _PROTOCOLS]
        if unknown or not enabled:
            raise TlsConfigError(f"{self.name('enabled.protocols')}={raw}: expected TLSv1.2 and/or TLSv1.3 "
                                 f"(older versions are not offered)")
        versions = sorted(_PROTOCOLS[name] for name in enabled)
        cap = self.get("protocol", "TLSv1.3") or "TLSv1.3"
        if cap not in (*_PROTOCOLS, "TLS"):
            raise TlsConfigError(f"{self.name('protocol')}={cap}: expected TLSv1.2 or TLSv1.3")
        highest = min(versions[-1], _PROTOCOLS.get(cap, ssl.TLSVersion.TLSv1_3))
        if highest < versions[0]:
            raise TlsConfigError(f"{self.name('protocol')}={cap} is below every version in "
                                 f"{self.name('enabled.protocols')}={raw}")
        return versions[0], highest

    def server_context(self, material: KeyMaterial, trusted: str | None) -> ssl.SSLContext:
        """A new server context for the key and chain, checking client certificates against
        the `trusted` CAs (PEM)."""
        client_auth = self.client_auth
        if client_auth is not ClientAuth.NONE and trusted is None:
            raise TlsConfigError(f"{self.name('client.auth')}={client_auth.value} needs "
                                 f"{self.name('truststore.location')}: the CAs client certificates are checked against")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version, context.maximum_version = self.protocol_range()
        ciphers = self.get("cipher.suites")
        if ciphers:
            try:
                context.set_ciphers(":".join(name.strip() for name in ciphers.split(",")))
            except ssl.SSLError:
                raise TlsConfigError(f"{self.name('cipher.suites')}={ciphers}: no cipher suite OpenSSL knows "
                                     f"(OpenSSL's names, e.g. ECDHE-RSA-AES128-GCM-SHA256; TLSv1.3's suites "
                                     f"are always on)") from None
        _load_chain(context, material)
        if trusted is not None:
            context.load_verify_locations(cadata=trusted)
        context.verify_mode = {ClientAuth.NONE: ssl.CERT_NONE, ClientAuth.REQUESTED: ssl.CERT_OPTIONAL,
                               ClientAuth.REQUIRED: ssl.CERT_REQUIRED}[client_auth]
        return context


def _read(property_name: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise TlsConfigError(f"{property_name}={path}: {exc.strerror}") from None


def _key_material(props: SslProperties, key_text: bytes, chain_text: bytes) -> KeyMaterial:
    where = props.name("keystore.location") if props.get("keystore.location") else props.name("keystore.key")
    password = props.get("key.password")
    try:
        key = serialization.load_pem_private_key(key_text, password.encode() if password else None)
    except TypeError as exc:  # encrypted without a password, or a password for a plain key
        raise TlsConfigError(f"{where}: {exc} ({props.name('key.password')})") from None
    except ValueError:
        raise TlsConfigError(f"{where}: no PEM private key that {props.name('key.password')} decrypts") from None
    try:
        chain = x509.load_pem_x509_certificates(chain_text)
    except ValueError:
        chain = []
    if not chain:
        raise TlsConfigError(f"{where}: no PEM certificate chain")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if chain[0].public_key().public_bytes(serialization.Encoding.PEM, public) != \
            key.public_key().public_bytes(serialization.Encoding.PEM, public):
        raise TlsConfigError(f"{where}: the first certificate is not the private key's")
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return KeyMaterial(key_pem, b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain))


def _load_chain(context: ssl.SSLContext, material: KeyMaterial) -> None:
    """ssl loads keys from files only: a private (0600) temporary file, gone once read, and
    the key in it encrypted with a password that lives only here, so it never rests on disk
    in the clear."""
    password = secrets.token_bytes(32)
    key = serialization.load_pem_private_key(material.key_pem, None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(password))
    with tempfile.NamedTemporaryFile(prefix="tierlog-key-") as f:
        f.write(key + material.chain_pem)
        f.flush()
        context.load_cert_chain(f.name, password=password)


def _mtimes(paths: tuple[str, ...]) -> tuple[float, ...]:
    stamps = []
    for path in paths:
        try:
            stamps.append(os.stat(path).st_mtime)
        except OSError:
            stamps.append(-1.0)  # missing for now (mid-rotation): a change, tried and kept if it fails
    return tuple(stamps)


class ServerTls:
    """A listener's current server context, rebuilt when its files change (see the module)."""

    def __init__(self, props: SslProperties, what: str) -> None:
        self.props = props
        self.what = what  # "the Kafka listener SSL", for the log
        self._stamps = _mtimes(props.files)
        try:  # a bad start: the server does not start
            self.material, self.trusted = props.key_material(), props.trusted_pem()
            self._context = props.server_context(self.material, self.trusted)
        except TlsConfigError as exc:
            raise TlsConfigError(f"{what}: {exc}") from None
        self._checked = time.monotonic()
        self._report = RateLimitedReport(log)
        self._lock = threading.Lock()

    @property
    def client_auth(self) -> ClientAuth:
        return self.props.client_auth

    def context(self) -> ssl.SSLContext:
        self.refresh()
        return self._context

    def refresh(self) -> bool:
        """At most once every RELOAD_CHECK_SECONDS: True if the files changed and loaded."""
        with self._lock:
            now = time.monotonic()
            if now - self._checked < RELOAD_CHECK_SECONDS:
                return False
            self._checked = now
            return self._reload_if_changed()

    def _reload_if_changed(self) -> bool:
        stamps = _mtimes(self.props.files)
        if stamps == self._stamps:
            return False
        try:
            material, trusted = self.props.key_material(), self.props.trusted_pem()
            context = self.props.server_context(material, trusted)
        except (TlsConfigError, ssl.SSLError) as exc:
            self._report(f"{self.what}: the changed certificate files do not load, serving the previous "
                         f"certificate: {exc}")
            return False
        self._stamps, self.material, self.trusted, self._context = stamps, material, trusted, context
        log.info("%s: certificate files changed, new connections get the new certificate", self.what)
        return True


def reloading_context(tls: ServerTls) -> ssl.SSLContext:
    """One context for a server that keeps the context it starts with (aiohttp): each
    handshake switches to the current certificate. What OpenSSL does not switch with it, the
    client verification, stays as it was at start."""
    def current(connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        connection.context = tls.context()

    front = tls.props.server_context(tls.material, tls.trusted)
    front.sni_callback = current  # called on every ClientHello, with or without SNI
    return front


def principal_of_certificate(der: bytes | None) -> Principal | None:
    """Kafka's DEFAULT ssl.principal.mapping.rules: User: and the subject in RFC 2253 form
    (CN=alice,OU=...,O=...); None without a certificate."""
    if not der:
        return None
    return Principal(USER, rfc2253(x509.load_der_x509_certificate(der).subject))


# RFC 2253's keywords, as Java's X500Principal.getName() writes them (Kafka's principal).
_RFC2253_KEYWORDS = {NameOID.COMMON_NAME, NameOID.COUNTRY_NAME, NameOID.LOCALITY_NAME,
                     NameOID.STATE_OR_PROVINCE_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME,
                     NameOID.STREET_ADDRESS, NameOID.DOMAIN_COMPONENT, NameOID.USER_ID}


def rfc2253(name: x509.Name) -> str:
    """The name as Java's X500Principal.getName() gives it: the most specific part first,
    keywords for the attributes above, and any other attribute (emailAddress, serialNumber)
    as its OID and `#` with the hex of its DER value (cryptography would write the text)."""
    return ",".join("+".join(attribute.rfc4514_string() if attribute.oid in _RFC2253_KEYWORDS
                             else f"{attribute.oid.dotted_string}=#{_der_value(attribute).hex()}"
                             for attribute in rdn)
                    for rdn in reversed(name.rdns))


def _der_value(attribute: x509.NameAttribute) -> bytes:
    """The attribute's value as DER: its string type's tag, the length, the encoded text."""
    tag = attribute._type.value  # cryptography's _ASN1Type values are the ASN.1 tags
    text = attribute.value if isinstance(attribute.value, str) else attribute.value.decode()
    encoding = {30: "utf-16-be", 28: "utf-32-be"}.get(tag, "utf-8")  # BMPString, UniversalString
    body = text.encode(encoding)
    length = bytes([len(body)]) if len(body) < 0x80 else \
        bytes([0x80 | ((len(body).bit_length() + 7) // 8)]) + len(body).to_bytes((len(body).bit_length() + 7) // 8)
    return bytes([tag]) + length + body
