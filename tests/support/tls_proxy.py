"""A loopback TLS-terminating TCP proxy, standing in for a server that requires TLS.

`temporal server start-dev` has no TLS flags and the embedded PostgreSQL is built without OpenSSL, so
tests put this in front of them: clients speak TLS to the proxy, which forwards the plain bytes.

- `grpc`: TLS from the first byte, ALPN `h2` (a Temporal frontend).
- `postgres`: PostgreSQL's own negotiation — the client asks with an SSLRequest (after a GSSENCRequest,
  which is declined), the proxy answers `S` and the TLS handshake follows on the same connection.

The certificates are made with `cryptography`: a CA, and a server certificate for 127.0.0.1 / localhost
signed by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SERVER_NAME = "localhost"
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
Protocol = Literal["grpc", "postgres"]


@dataclass(frozen=True)
class CertificateAuthority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=1)
    )


def new_ca(common_name: str) -> CertificateAuthority:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return CertificateAuthority(key, _validity(builder).sign(key, hashes.SHA256()))


def server_certificate(ca: CertificateAuthority) -> tuple[bytes, bytes]:
    """A certificate (PEM) for localhost and 127.0.0.1 signed by ``ca``, and its key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName(SERVER_NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(SERVER_NAME))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    cert = _validity(builder).sign(ca.key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class TlsProxy:
    """Accepts TLS on 127.0.0.1:<port> and relays each connection to ``target`` (host:port) in clear."""

    def __init__(self, target: str, directory: Path, protocol: Protocol = "grpc") -> None:
        self.target_host, target_port = target.rsplit(":", 1)
        self.target_port = int(target_port)
        self.protocol = protocol
        self.ca = new_ca("mandala test CA")
        cert, key = server_certificate(self.ca)
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_path = directory / "ca.pem"
        self.ca_path.write_bytes(self.ca.pem())
        (directory / "server.pem").write_bytes(cert)
        (directory / "server.key").write_bytes(key)
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(directory / "server.pem", directory / "server.key")
        self._context.set_alpn_protocols(["h2"] if protocol == "grpc" else ["postgresql"])
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        tls = self._context if self.protocol == "grpc" else None
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=tls)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._relays):
            task.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        try:
            if self.protocol == "postgres" and not await self._postgres_starttls(
                client_reader, client_writer
            ):
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
            await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))
        except (ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            client_writer.close()
            self._relays.discard(task)

    async def _postgres_starttls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer the client's encryption requests; True once TLS is up, False for a client without TLS."""
        while True:
            length, code = struct.unpack("!II", await reader.readexactly(8))
            if length != 8 or code not in (SSL_REQUEST, GSSENC_REQUEST):
                return False  # a plain StartupMessage: this proxy only speaks TLS
            if code == GSSENC_REQUEST:
                writer.write(b"N")
                await writer.drain()
                continue
            writer.write(b"S")
            await writer.drain()
            await writer.start_tls(self._context)
            return True


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.close()
