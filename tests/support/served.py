"""An app served twice, in cleartext (HTTP/1.1 and h2c) and over TLS (h2 by ALPN), with a client for
each transport: what the framework tests run each request over."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import trustme

from tests.support.server import ServerProcess

#: http1: cleartext HTTP/1.1; h2c: cleartext HTTP/2 (prior knowledge); tls: HTTP/2 over TLS by ALPN.
TRANSPORTS = ("http1", "h2c", "tls")
#: The file the apps serve: 3 MiB of a pattern that shows any byte out of place.
FILE_SIZE = 3 * 1024 * 1024


@dataclass
class Served:
    plain: ServerProcess
    tls: ServerProcess
    ca_file: str
    file: Path

    def client(self, transport: str, **kw) -> httpx.Client:
        kw.setdefault("timeout", 20.0)
        if transport == "http1":
            return httpx.Client(base_url=self.plain.url, trust_env=False, **kw)
        if transport == "h2c":
            return httpx.Client(base_url=self.plain.url, http1=False, http2=True, trust_env=False, **kw)
        return httpx.Client(base_url=self.tls.url, http2=True, verify=self.ssl_context(), trust_env=False, **kw)

    def expected_http_version(self, transport: str) -> str:
        return "HTTP/1.1" if transport == "http1" else "HTTP/2"

    def ws_url(self, transport: str, path: str) -> str:
        server = self.tls if transport == "tls" else self.plain
        scheme = "wss" if transport == "tls" else "ws"
        return f"{scheme}://127.0.0.1:{server.port}{path}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)


def serve(app: str, tmp_path_factory, file_to_serve: Path, *args: str) -> Iterator[Served]:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    pki = tmp_path_factory.mktemp("pki")
    cert, key, ca_file = pki / "cert.pem", pki / "key.pem", pki / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    env = {"FERROCORN_TEST_FILE": str(file_to_serve)}
    plain = ServerProcess.ferrocorn(app, *args, env=env)
    tls = ServerProcess.ferrocorn(app, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), *args, env=env)
    try:
        yield Served(plain, tls, str(ca_file), file_to_serve)
    finally:
        plain.close()
        tls.close()
