"""Starting a real Azurite on free loopback ports (tests and bench/bench_azure.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteMissing(RuntimeError):
    pass


def azurite_binary() -> str | None:
    for candidate in (
        os.environ.get("AZURITE_BIN"),
        REPO / ".ci" / "azurite" / "node_modules" / ".bin" / "azurite",
        shutil.which("azurite"),
    ):
        if candidate and Path(candidate).exists():
            return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (Azurite refuses HTTPS-only SAS over plain HTTP)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def azurite_337_command() -> list[str] | None:
    """Azurite 3.37 on Node 22 (the first to verify user delegation SAS), if installed."""
    base = REPO / ".ci" / "azurite337" / "node_modules"
    node, script = base / ".bin" / "node", base / "azurite" / "dist" / "src" / "azurite.js"
    return [str(node), str(script)] if node.exists() and script.exists() else None


@contextmanager
def running_azurite(
    extra: list[str] | None = None, *, https: bool = False, command: list[str] | None = None
) -> Iterator[str]:
    """Yields the connection string of an Azurite listening on 127.0.0.1 (`--skipApiVersionCheck`:
    the current SDKs send an API version Azurite 3.35 does not know). With `https`, `extra` must
    carry `--cert` and `--key`."""
    binary = command or azurite_binary()
    if binary is None:
        raise AzuriteMissing(
            "Azurite is not installed: `npm install --prefix .ci/azurite azurite@3.35.0` (.ci/run does)"
        )
    blob_port, queue_port, table_port = _free_port(), _free_port(), _free_port()
    location = tempfile.mkdtemp(prefix="azurite-")
    process = subprocess.Popen(
        [
            *(binary if isinstance(binary, list) else [binary]),
            "--silent",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--location",
            location,
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(blob_port),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(queue_port),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(table_port),
            *(extra or []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 30
        for port in (blob_port, queue_port):
            while True:  # wait for the port: polling with SDK calls would back off for seconds
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.time() > deadline or process.poll() is not None:
                        raise RuntimeError("Azurite did not start") from None
                    time.sleep(0.1)
        scheme = "https" if https else "http"
        yield (
            f"DefaultEndpointsProtocol={scheme};AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={scheme}://127.0.0.1:{blob_port}/devstoreaccount1;"
            f"QueueEndpoint={scheme}://127.0.0.1:{queue_port}/devstoreaccount1;"
        )
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(location, ignore_errors=True)
