"""A local HTTPS stand-in for Cloudinary's delivery CDN (res.cloudinary.com), so that a function fetching an
image from a signed delivery URL does it for real: TLS, ``requests`` and Pillow from the bundle.

The function reaches it through ``CLOUDINARY_URL=...&secure_distribution=127.0.0.1:PORT`` (the SDK builds
``https://<secure_distribution>/<cloud>/image/upload/...``) and trusts its self-signed certificate through
``REQUESTS_CA_BUNDLE``. The certificate is made with the ``openssl`` command, for IP 127.0.0.1.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, valid for a day; both readable by everyone (the key is a test key)."""
    if not shutil.which("openssl"):
        pytest.fail("The `openssl` command is needed to make the local CDN's certificate (Debian: apt-get install "
                    "openssl)", pytrace=False)
    certificate, key = directory / "cdn-cert.pem", directory / "cdn-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(certificate)],
                   check=True, capture_output=True, timeout=60)
    certificate.chmod(0o444)
    key.chmod(0o400)
    return certificate, key


class LocalCDN:
    def __init__(self, certificate: Path, key: Path, image: bytes) -> None:
        self.image = image
        self.paths: list[str] = []
        cdn = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                cdn.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(cdn.image)))
                self.end_headers()
                self.wfile.write(cdn.image)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
