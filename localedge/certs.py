"""Throwaway TLS material for a run: a CA the modules trust and server certificates for the brokers.

openssl (Debian's) does the work; EC keys, so a run's certificates take milliseconds.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from localedge.errors import EdgeError


def shared_dir(prefix: str) -> Path:
    """A fresh temp dir that Mosquitto can read after it drops to the `mosquitto` user when run as root.

    pytest's tmp_path lives under a 0700 directory, which that user cannot traverse.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def _readable_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)  # whatever the umask: the broker may read as another user


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise EdgeError(f"openssl {args[0]} failed ({done.returncode}): {done.stderr.strip()}")


def _ec_key_args() -> list[str]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]  # EC: fast to generate


@dataclass(frozen=True)
class CertAuthority:
    """A throwaway CA: `cert` is what the module trusts (EdgeModuleCACertificateFile)."""

    cert: Path
    key: Path

    @classmethod
    def create(cls, directory: Path, name: str = "edge-test-ca") -> CertAuthority:
        _readable_dir(directory)
        cert, key = directory / "ca.pem", directory / "ca.key"
        exts = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
        files = ["-keyout", key.name, "-out", cert.name, "-days", "2", "-subj", f"/CN={name}"]
        _openssl("req", "-x509", *_ec_key_args(), *files, *exts, cwd=directory)
        cert.chmod(0o644)
        key.chmod(0o600)  # only openssl (as us) reads the CA key
        return cls(cert, key)

    def issue_server_cert(self, directory: Path, hosts: Iterable[str], name: str = "server") -> ServerCert:
        """A server certificate whose SAN lists `hosts` (names and IP addresses)."""
        _readable_dir(directory)
        hosts = list(dict.fromkeys(hosts))
        san = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)
        ext = directory / f"{name}.ext"
        ext.write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            f"subjectAltName={san}\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
        )
        cert, key, csr = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.csr"
        _openssl("req", "-new", *_ec_key_args(), "-keyout", key.name, "-out", csr.name, "-subj", f"/CN={hosts[0]}", cwd=directory)
        serial = f"0x{secrets.token_hex(8)}"
        ca_args = ["-CA", str(self.cert), "-CAkey", str(self.key), "-set_serial", serial]
        _openssl("x509", "-req", "-in", csr.name, *ca_args, "-days", "2", "-extfile", ext.name, "-out", cert.name, cwd=directory)
        for path in (cert, key):
            path.chmod(0o644)  # a throwaway key; the broker reads it as the `mosquitto` user
        return ServerCert(cert, key, tuple(hosts))


@dataclass(frozen=True)
class ServerCert:
    cert: Path
    key: Path
    hosts: tuple[str, ...]


def make_certs(directory: Path, hosts: Iterable[str] = ("localhost", "127.0.0.1")) -> tuple[CertAuthority, ServerCert]:
    """A CA and a server certificate for `hosts`, in `directory`."""
    ca = CertAuthority.create(directory / "ca")
    return ca, ca.issue_server_cert(directory / "server", hosts)


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True
