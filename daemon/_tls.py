"""A local certificate authority for the embedded emulators.

The Dropbox emulator speaks HTTPS and the FTP emulator FTPS, as the real peers
do, so that the real clients run their real TLS code paths. The CA and a
``localhost``/``127.0.0.1`` certificate are generated once under a directory
(normally ``<state>/tls``) and reused on later starts, so a client configured
with ``ca_certs`` keeps trusting the emulator across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ._private_files import write_private

_IDENTITIES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class LocalCertificate:
    """Paths of the CA certificate (give it to clients) and the server's chain and key."""

    ca_path: Path
    cert_path: Path
    key_path: Path


def ensure_local_certificate(directory: Path) -> LocalCertificate:
    """Return the local CA and server certificate under ``directory``, creating them if absent.

    The private key is written with mode 0600. Files already present are reused
    unchanged, so the CA a client was given stays valid.
    """
    paths = LocalCertificate(
        ca_path=directory / "ca.pem",
        cert_path=directory / "server.pem",
        key_path=directory / "server.key",
    )
    if all(p.exists() for p in (paths.ca_path, paths.cert_path, paths.key_path)):
        return paths
    import trustme  # with pyOpenSSL and cryptography ~10 MB: only when a certificate is made

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="Hotwire local CA")
    leaf = ca.issue_cert(*_IDENTITIES)
    write_private(paths.key_path, leaf.private_key_pem.bytes())
    paths.cert_path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    # The CA goes last: its presence marks the set as complete.
    paths.ca_path.write_bytes(ca.cert_pem.bytes())
    return paths
