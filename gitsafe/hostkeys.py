"""SSH host keys checked against an OpenSSH known_hosts file.

libgit2 asks its certificate callback whether to trust the key the server presented; pygit2's
default answer for SSH is yes, whatever the key.  gitsafe answers from known_hosts instead,
with OpenSSH's rules: plain and hashed (``|1|salt|hash``) host patterns, ``[host]:port`` for
non-default ports, ``*``/``?`` wildcards and ``!`` negation, ``@revoked`` keys refused.
``@cert-authority`` lines are not supported (libgit2 hands over only the plain host key) and
are reported as such rather than silently ignored.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import fnmatch
import hashlib
import hmac
import os
import struct

from gitsafe.records import field, record

DEFAULT_PORT = 22


@record(frozen=True)
class HostKey:
    """A host key as the server sent it: the SSH wire-format public key blob."""

    blob: bytes

    @property
    def key_type(self) -> str:
        try:
            (length,) = struct.unpack(">I", self.blob[:4])
            return self.blob[4 : 4 + length].decode("ascii")
        except (struct.error, UnicodeDecodeError):
            return "unknown"

    @property
    def fingerprint(self) -> str:
        """OpenSSH's format: ``SHA256:`` and unpadded base64 of the blob's SHA-256."""
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"

    @property
    def base64(self) -> str:
        return base64.b64encode(self.blob).decode()


def host_label(host: str, port: int) -> str:
    """The name known_hosts uses: ``host`` on port 22, else ``[host]:port``."""
    return host if port == DEFAULT_PORT else f"[{host}]:{port}"


@record(frozen=True)
class Entry:
    line: int
    marker: str | None  # None, "@revoked" or "@cert-authority"
    patterns: tuple[str, ...]
    key_type: str
    blob: bytes

    def matches(self, label: str) -> bool:
        positive = False
        for pattern in self.patterns:
            negated = pattern.startswith("!")
            if negated:
                pattern = pattern[1:]
            if _pattern_matches(pattern, label):
                if negated:
                    return False  # a negated match excludes the host outright, as OpenSSH does
                positive = True
        return positive


def _pattern_matches(pattern: str, label: str) -> bool:
    if pattern.startswith("|1|"):
        try:
            _, _, salt_b64, digest_b64 = pattern.split("|", 3)
            salt = base64.b64decode(salt_b64, validate=True)
            digest = base64.b64decode(digest_b64, validate=True)
        except (ValueError, binascii.Error):
            return False
        mine = hmac.new(salt, label.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(mine, digest)
    # Host names compare case-insensitively.  Only '*' and '?' are wildcards in known_hosts;
    # brackets belong to the [host]:port form and must match literally.
    literal = "".join({"[": "[[]", "]": "[]]"}.get(ch, ch) for ch in pattern.lower())
    return fnmatch.fnmatchcase(label.lower(), literal)


@record
class KnownHosts:
    path: str
    entries: list[Entry] = field(default_factory=list)
    unsupported: list[int] = field(default_factory=list)  # @cert-authority line numbers

    @classmethod
    def load(cls, path: str) -> KnownHosts:
        found = cls(path)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return found
        for number, raw in enumerate(lines, 1):
            parts = raw.split()
            if not parts or parts[0].startswith("#"):
                continue
            marker = None
            if parts[0].startswith("@"):
                marker, parts = parts[0], parts[1:]
            if len(parts) < 3:
                continue
            try:
                blob = base64.b64decode(parts[2], validate=True)
            except (ValueError, binascii.Error):
                continue
            entry = Entry(number, marker, tuple(parts[0].split(",")), parts[1], blob)
            if marker == "@cert-authority":
                found.unsupported.append(number)
            elif marker in (None, "@revoked"):
                found.entries.append(entry)
        return found


@record(frozen=True)
class Verdict:
    """``status``: trusted, unknown, mismatch or revoked."""

    status: str
    line: int | None = None
    known_types: tuple[str, ...] = ()
    cert_authority_lines: tuple[int, ...] = ()


def check(known: KnownHosts, host: str, port: int, key: HostKey) -> Verdict:
    label = host_label(host, port)
    matching = [e for e in known.entries if e.matches(label)]
    for e in matching:
        if e.marker == "@revoked" and e.blob == key.blob:
            return Verdict("revoked", e.line)
    for e in matching:
        if e.marker is None and e.blob == key.blob:
            return Verdict("trusted", e.line)
    same_type = [e for e in matching if e.marker is None and e.key_type == key.key_type]
    if same_type:
        return Verdict("mismatch", same_type[0].line)
    others = tuple(sorted({e.key_type for e in matching if e.marker is None}))
    return Verdict("unknown", None, others, tuple(known.unsupported))


def append(path: str, host: str, port: int, key: HostKey) -> None:
    """Add ``host``'s key to ``path`` as ssh does: appended under a lock, to the file a
    symlinked known_hosts points at, its mode kept (a new file is 0600; a missing ``~/.ssh``
    is created 0700).  Two runs accepting keys at once both land."""
    real = os.path.realpath(path)
    directory = os.path.dirname(real)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    line = f"{host_label(host, port)} {key.key_type} {key.base64}\n".encode()
    fd = os.open(real, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def trust_hint(host: str, port: int, path: str) -> str:
    port_flag = f"-p {port} " if port != DEFAULT_PORT else ""
    return (
        f"check the fingerprint with the server's administrator, then trust it with\n"
        f"  ssh-keyscan {port_flag}{host} >> {path}\n"
        f"or rerun with --accept-new-host-key to record it on first use"
    )
