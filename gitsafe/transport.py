"""One fetch over any transport libgit2 speaks, made safe for deploys.

What pygit2's ``Remote.fetch`` leaves out and this adds: SSH host keys checked against
known_hosts (see :mod:`gitsafe.hostkeys`), credentials offered once each (see
:mod:`gitsafe.credentials`), proxies from git config and the environment, CA files from
``GIT_SSL_CAINFO``/``http.sslCAInfo``, connect and read timeouts, bounded retries with backoff
for transient network faults only, and a record of what happened for the report.

The fetch calls ``git_remote_fetch`` through pygit2's own option builder and replaces one
callback: pygit2's certificate callback hides the SSH key from Python, so gitsafe installs its
own (a cffi callback reading libgit2's ``git_cert_hostkey``, raw key included since libgit2 1.2).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import pygit2
from pygit2 import C, ffi
from pygit2.callbacks import git_fetch_options
from pygit2.utils import StrArray

from gitsafe import tls
from gitsafe.credentials import AuthFailed, CredentialConfig, Credentials
from gitsafe.errors import FetchFailed, Refused, UsageError
from gitsafe.progress import FetchProgress
from gitsafe.records import field, record
from gitsafe.report import redact_url

if TYPE_CHECKING:
    from gitsafe import hostkeys

LOCAL = ("local", "file")
SMART = ("git", "ssh", "http", "https")
_TLS = ("http", "https")  # may end on a TLS connection

# libgit2 error classes that mean "the network or the server side failed".
_NETWORK_CLASSES = {2, 12, 23, 34}  # GIT_ERROR_OS, _NET, _SSH, _HTTP
_INDEXER_CLASS = 15  # a pack cut short surfaces from the indexer
# Failures that are answers, not faults: retrying cannot change them.  Patterns as text, for
# re's own cache: only a failed fetch reads them, and compiling them costs every run 1 ms.
_PERMANENT = (
    r"status code: 4\d\d|not found|does not appear to be a git repository|remote error|"
    r"no such repository|"
    r"access denied|not exported|repository .* does not exist|authentication|"
    r"certificate|hostkey|host key|unsupported|invalid url|malformed|not valid|"
    r"could not resolve host|name or service not known"
)
_TRUNCATED = r"early eof|truncated|incomplete|unexpected end|short read"

_GIT_PASSTHROUGH = -30
_GIT_ECERTIFICATE = -17
_GIT_CERT_SSH_RAW = 1 << 3


def _raw_hostkey(cert: Any) -> bytes | None:
    """The server's key from libgit2's full git_cert_hostkey (pygit2 declares only its MD5/SHA-1
    part), or None if libgit2 gave none.  ctypes, not a second cffi.FFI: that would fail
    wherever the cffi package and its C backend differ in version (a system _cffi_backend ahead
    on the path), which pygit2 itself survives.  Imported here: only SSH fetches need it, and
    it costs every run 1.5 ms."""
    import ctypes

    class CertHostkey(ctypes.Structure):
        _fields_ = (
            ("cert_type", ctypes.c_int),
            ("type", ctypes.c_int),
            ("hash_md5", ctypes.c_ubyte * 16),
            ("hash_sha1", ctypes.c_ubyte * 20),
            ("hash_sha256", ctypes.c_ubyte * 32),
            ("raw_type", ctypes.c_int),
            ("hostkey", ctypes.c_void_p),
            ("hostkey_len", ctypes.c_size_t),
        )

    full = CertHostkey.from_address(int(ffi.cast("uintptr_t", cert)))
    if not full.type & _GIT_CERT_SSH_RAW or not full.hostkey:
        return None
    return ctypes.string_at(full.hostkey, full.hostkey_len)


class HostKeyRejected(FetchFailed):
    """The SSH server's key is unknown, changed or revoked (never retried)."""

    kind = "host-key"


@record(frozen=True)
class Endpoint:
    """Where a remote URL points: ``kind`` is local, file, git, ssh, http or https."""

    kind: str
    host: str | None = None
    port: int | None = None
    user: str | None = None


_SCP = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]]+\]|[^:/]+):(?P<path>.*)$")


def endpoint(url: str) -> Endpoint:
    if "://" in url:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        kind = {"ssh+git": "ssh", "git+ssh": "ssh"}.get(scheme, scheme)
        if kind == "file":
            return Endpoint("file")
        if kind not in SMART:
            raise UsageError(f"unsupported remote URL scheme {scheme!r} in {redact_url(url)}")
        default = {"git": 9418, "ssh": 22, "http": 80, "https": 443}[kind]
        try:
            port = parts.port or default
        except ValueError:
            raise UsageError(f"invalid port in remote URL {redact_url(url)}") from None
        user = unquote(parts.username) if parts.username else None
        return Endpoint(kind, parts.hostname or "", port, user)
    match = _SCP.match(url)
    # git's rule: "host:path" is scp-like ssh unless a slash comes before the colon (a path).
    if match and "/" not in url.split(":", 1)[0]:
        return Endpoint("ssh", match["host"].strip("[]"), 22, match["user"])
    return Endpoint("local")


@record
class FetchOptions:
    known_hosts: str
    credentials: CredentialConfig
    retries: int = 3
    retry_delay: float = 1.0
    timeout: float = 30.0
    depth: int = 0  # 0: as the base is (a shallow base stays shallow); N: at most N commits
    accept_new_host_key: bool = False
    progress: bool = False
    checkpoint: Callable[[], None] = lambda: None
    config: Mapping[str, str] = field(default_factory=dict)  # http.* and proxy git config


@record
class FetchInfo:
    """The report's ``fetch`` object."""

    transport: str | None = None
    url: str | None = None
    attempts: int = 0
    received_objects: int = 0
    total_objects: int = 0
    received_bytes: int = 0
    duration_ms: int = 0
    depth: int | None = None
    shallow: bool = False
    proxy: str | None = None
    auth: str | None = None
    host_key: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)  # one per failed attempt

    def as_json(self) -> dict[str, Any]:
        return {
            "transport": self.transport,
            "url": self.url,
            "attempts": self.attempts,
            "received_objects": self.received_objects,
            "total_objects": self.total_objects,
            "received_bytes": self.received_bytes,
            "duration_ms": self.duration_ms,
            "depth": self.depth,
            "shallow": self.shallow,
            "proxy": self.proxy,
            "auth": self.auth,
            "host_key": self.host_key,
            "errors": list(self.errors),
        }


class _HostKeyCheck:
    """libgit2's certificate callback: SSH keys from known_hosts, TLS left to libgit2."""

    def __init__(self, options: FetchOptions, where: Endpoint, info: FetchInfo) -> None:
        self.options = options
        self.where = where
        self.info = info
        self.error: BaseException | None = None
        # error=: should anything escape _check, cffi returns this instead of 0, which libgit2
        # would take for "trust this key".  A check that cannot run rejects the key.
        self.c_callback = ffi.callback(
            "int(git_cert *, int, const char *, void *)",
            self._check,
            error=_GIT_ECERTIFICATE,
            onerror=self._onerror,
        )

    def _onerror(self, exc_type: Any, exc: BaseException | None, _tb: Any) -> None:
        self.error = HostKeyRejected(f"the host key could not be checked: {exc}")

    def _check(self, cert: Any, valid: int, host: Any, payload: Any) -> int:
        try:
            return self._verify(cert, host)
        except HostKeyRejected as e:
            self.error = e
        except Exception as e:  # unreadable known_hosts, unwritable on accept, ...
            self.error = HostKeyRejected(f"the host key could not be checked: {e}")
        return _GIT_ECERTIFICATE

    def _verify(self, cert: Any, host: Any) -> int:
        if cert.cert_type != C.GIT_CERT_HOSTKEY_LIBSSH2:
            # TLS: libgit2 has verified the chain and the name against the CA store; defer.
            return _GIT_PASSTHROUGH
        from gitsafe import hostkeys  # only SSH fetches check host keys (2 ms of every start)

        raw = _raw_hostkey(cert)
        if raw is None:
            self.error = HostKeyRejected("libgit2 did not provide the server's host key")
            return _GIT_ECERTIFICATE
        key = hostkeys.HostKey(raw)
        name = ffi.string(host).decode("utf-8", "replace")
        port = self.where.port or hostkeys.DEFAULT_PORT
        path = self.options.known_hosts
        known = hostkeys.KnownHosts.load(path)
        verdict = hostkeys.check(known, name, port, key)
        record: dict[str, Any] = {
            "host": hostkeys.host_label(name, port),
            "type": key.key_type,
            "fingerprint": key.fingerprint,
            "known_hosts": path,
            "status": verdict.status,
        }
        self.info.host_key = record
        if verdict.status == "trusted":
            return 0
        if verdict.status == "unknown" and self.options.accept_new_host_key:
            hostkeys.append(path, name, port, key)
            record["status"] = "accepted-new"
            return 0
        self.error = HostKeyRejected(_host_key_message(verdict, name, port, key, path))
        return _GIT_ECERTIFICATE


def _host_key_message(
    verdict: hostkeys.Verdict, host: str, port: int, key: hostkeys.HostKey, path: str
) -> str:
    from gitsafe import hostkeys

    label = hostkeys.host_label(host, port)
    shown = f"{key.key_type} key {key.fingerprint}"
    if verdict.status == "revoked":
        return f"the host key of {label} ({shown}) is marked @revoked in {path}:{verdict.line}"
    if verdict.status == "mismatch":
        return (
            f"HOST KEY MISMATCH for {label}: the server sent {shown}, which differs from "
            f"{path}:{verdict.line}. Someone may be intercepting the connection, or the host "
            f"key was changed; if the change is legitimate, remove the old line "
            f"(ssh-keygen -R '{label}' -f {path}) and trust the new key"
        )
    notes = ""
    if verdict.known_types:
        notes += f" (keys of other types are known for it: {', '.join(verdict.known_types)})"
    if verdict.cert_authority_lines:
        lines = ", ".join(map(str, verdict.cert_authority_lines))
        notes += f"; @cert-authority lines ({path}: {lines}) are not supported by gitsafe"
    return f"unknown host key for {label}: {shown} is not in {path}{notes}; " + hostkeys.trust_hint(
        host, port, path
    )


class _Callbacks(pygit2.RemoteCallbacks):
    def __init__(
        self, credentials: Credentials, progress: FetchProgress, checkpoint: Callable[[], None]
    ) -> None:
        super().__init__()
        self._credentials = credentials
        self._progress = progress
        self._checkpoint = checkpoint
        self.stats: tuple[int, int, int] = (0, 0, 0)

    def credentials(self, url: str, username_from_url: str | None, allowed: Any) -> Any:
        return self._credentials(url, username_from_url, allowed)

    def transfer_progress(self, stats: Any) -> None:
        self.stats = (stats.received_objects, stats.total_objects, stats.received_bytes)
        self._progress.update(*self.stats)
        # A signal during a long transfer stops the fetch here (the exception propagates
        # through libgit2 as a callback error) instead of after the last byte.
        self._checkpoint()


def _transient(message: str, klass: int | None) -> bool:
    if re.search(_PERMANENT, message, re.IGNORECASE):
        return False
    if klass in _NETWORK_CLASSES:
        return True
    return klass == _INDEXER_CLASS and bool(re.search(_TRUNCATED, message, re.IGNORECASE))


def _last_error_class() -> int | None:
    err = C.git_error_last()
    if err == ffi.NULL:
        return None
    return int(err.klass)


def _ca_locations(options: FetchOptions) -> tuple[str | None, str | None]:
    env = options.credentials.env
    cafile = env.get("GIT_SSL_CAINFO") or options.config.get("http.sslcainfo")
    capath = env.get("GIT_SSL_CAPATH") or options.config.get("http.sslcapath")
    return cafile or None, capath or None


def proxy_for(where: Endpoint, remote: str, options: FetchOptions) -> str | None:
    """The proxy libgit2's automatic detection will use, for the report (https only).

    libgit2 tunnels https through a proxy with CONNECT; for plain http it builds the proxy
    request but connects straight to the server (libgit2 issue 5650), so none is reported.
    """
    if where.kind != "https":
        return None
    cfg = options.config
    value = cfg.get(f"remote.{remote}.proxy") or cfg.get("http.proxy")
    if not value:
        env = options.credentials.env
        names = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
        value = next((env[n] for n in names if env.get(n)), None)
    return redact_url(value) if value else None


def fetch(
    repo: pygit2.Repository,
    remote_name: str,
    url: str,
    refspecs: list[str],
    message: str,
    options: FetchOptions,
    info: FetchInfo,
) -> dict[str, pygit2.Oid]:
    """Fetch ``refspecs`` from ``remote_name``, retrying transient faults; fill ``info``.

    Returns the refs the server advertised on the connection that fetched (name -> tip).
    """
    where = endpoint(url)
    info.transport = where.kind
    info.url = redact_url(url)
    info.depth = options.depth or None
    info.proxy = proxy_for(where, remote_name, options)
    if where.kind in LOCAL:
        if options.depth:
            raise UsageError(
                f"--depth {options.depth}: libgit2's local transport cannot make shallow "
                f"fetches from {info.url}; serve the repository over git://, ssh:// or "
                "http(s)://, or drop --depth"
            )
        if repo.is_shallow:
            raise Refused(
                f"the deploy base is shallow and {remote_name} ({info.url}) is a local path: "
                "libgit2's local transport cannot fetch into a shallow repository (it would "
                "drop .git/shallow and leave a history that claims to be complete); fetch "
                "over git://, ssh:// or http(s)://, or unshallow it once with "
                "'git fetch --unshallow'"
            )
    cafile = capath = None
    # http too: libgit2 follows a redirect from http:// to https:// (most hosts send one).
    if where.kind in _TLS:
        tls.system_store()  # the command line left it for now (gitsafe/tls.py)
        cafile, capath = _ca_locations(options)
    if cafile or capath:
        # Adds to the system store (libgit2's TLS settings are process-wide and additive).
        pygit2.settings.set_ssl_cert_locations(cafile, capath)  # type: ignore[arg-type]
    started = time.monotonic()
    attempts_allowed = options.retries + 1
    try:
        for attempt in range(1, attempts_allowed + 1):
            info.attempts = attempt
            options.checkpoint()
            try:
                return _fetch_once(repo, remote_name, refspecs, message, options, where, info)
            except _Transient as e:
                info.errors.append(e.message)
                if attempt == attempts_allowed:
                    raise FetchFailed(
                        f"fetch from {remote_name} ({info.url}) failed after {attempt} "
                        f"attempt(s): {e.message}"
                    ) from None
                _sleep(options.retry_delay * 2 ** (attempt - 1), options.checkpoint)
        raise AssertionError("unreachable")
    finally:
        info.duration_ms = int((time.monotonic() - started) * 1000)
        info.shallow = repo.is_shallow


class _Transient(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _sleep(seconds: float, checkpoint: Callable[[], None]) -> None:
    """Back off, but let SIGINT/SIGTERM stop the run at once."""
    deadline = time.monotonic() + seconds
    while True:
        checkpoint()
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))


def _fetch_once(
    repo: pygit2.Repository,
    remote_name: str,
    refspecs: list[str],
    message: str,
    options: FetchOptions,
    where: Endpoint,
    info: FetchInfo,
) -> dict[str, pygit2.Oid]:
    remote = repo.remotes[remote_name]
    credentials = Credentials(options.credentials, where.host or "")
    host_check = _HostKeyCheck(options, where, info)
    saved = (pygit2.settings.server_connect_timeout, pygit2.settings.server_timeout)
    timeout_ms = max(1, int(options.timeout * 1000))
    pygit2.settings.server_connect_timeout = timeout_ms
    pygit2.settings.server_timeout = timeout_ms
    label = f"fetch {remote_name}"
    try:
        with FetchProgress(options.progress, label) as progress:
            callbacks = _Callbacks(credentials, progress, options.checkpoint)
            with git_fetch_options(callbacks) as payload:
                opts = payload.fetch_options
                opts.callbacks.certificate_check = host_check.c_callback
                opts.depth = options.depth
                opts.proxy_opts.type = C.GIT_PROXY_AUTO
                with StrArray(refspecs) as arr:
                    err = C.git_remote_fetch(remote._remote, arr.ptr, opts, message.encode("utf-8"))
                    klass = _last_error_class() if err < 0 else None
                    try:
                        payload.check_error(err)
                        if host_check.error is not None:  # never trust a key on a failed check
                            raise host_check.error
                    except pygit2.GitError as e:
                        if host_check.error is not None:
                            raise host_check.error from None
                        text = redact_message(str(e), remote.url)
                        if _transient(text, klass):
                            raise _Transient(text) from None
                        raise FetchFailed(
                            f"fetch from {remote_name} ({info.url}) failed: {text}"
                        ) from None
                    finally:
                        info.received_objects, info.total_objects, info.received_bytes = (
                            callbacks.stats
                        )
        info.auth = credentials.used
        # The same Remote object: its advertisement is what this very connection saw.
        return {str(h.name): h.oid for h in remote.list_heads(connect=False)}
    except AuthFailed:
        info.auth = None
        raise
    finally:
        pygit2.settings.server_connect_timeout, pygit2.settings.server_timeout = saved


def redact_message(message: str, url: str | None) -> str:
    """libgit2 messages may quote the URL, user info and all."""
    if url and url in message:
        message = message.replace(url, redact_url(url) or "***")
    return message


def git_config_subset(repo: pygit2.Repository, remote_name: str) -> dict[str, str]:
    """The few git config values the fetch honours, keys lower-cased as git normalises them."""
    wanted = ("http.proxy", f"remote.{remote_name}.proxy", "http.sslcainfo", "http.sslcapath")
    found: dict[str, str] = {}
    for name in wanted:
        try:
            found[name] = str(repo.config[name])
        except (KeyError, pygit2.GitError):
            continue
    return found


def default_known_hosts(env: Mapping[str, str]) -> str:
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".ssh", "known_hosts")
