"""Real git servers on 127.0.0.1 for the remote tests, each started and stopped by its test.

- :class:`GitDaemon`: ``git daemon`` (git://).
- :class:`HttpGit`: ``git http-backend`` (smart HTTP) behind a small threaded HTTP server, with
  basic auth on ``/private/`` and optional TLS from a throw-away CA.
- :class:`Sshd`: OpenSSH ``sshd`` on a free port with its own host key and one authorized user
  key; no system service is involved.
- :class:`Relay`: a TCP relay in front of any of them that can cut a connection after N bytes
  from the server (a server dying mid-transfer), accept and then say nothing (a hung server),
  or count connections.
- :class:`Proxy`: an HTTP forward proxy that records the URLs it carried.

Every port is picked free at start, so the tests are xdist-safe.
"""

from __future__ import annotations

import base64
import contextlib
import os
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

SSHD = "/usr/sbin/sshd"
HTTP_BACKEND_CANDIDATES = (
    "/usr/lib/git-core/git-http-backend",
    "/usr/libexec/git-core/git-http-backend",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int,
    proc: subprocess.Popen[bytes] | None = None,
    timeout: float = 10,
    address: str = "127.0.0.1",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((address, port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {address}:{port} after {timeout}s")


def http_backend() -> str | None:
    for path in HTTP_BACKEND_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    try:
        exec_path = subprocess.run(
            ["git", "--exec-path"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    candidate = os.path.join(exec_path, "git-http-backend")
    return candidate if os.access(candidate, os.X_OK) else None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started in its own session, with the children it forked per connection."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class GitDaemon:
    """``git daemon`` exporting every repository below ``base``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> GitDaemon:
        self.proc = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                f"--base-path={self.base}",
                "--export-all",
                "--informative-errors",
                str(self.base),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    def __enter__(self) -> GitDaemon:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


# -- smart HTTP ---------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        owner = self.server.owner
        owner.requests.append(f"{self.command} {self.path}")
        path, _, query = self.path.partition("?")
        user = None
        if path.startswith("/private/"):
            header = self.headers.get("Authorization", "")
            owner.auth_headers.append(header)
            ok = False
            if header.startswith("Basic "):
                decoded = base64.b64decode(header[6:]).decode(errors="replace")
                given_user, _, given_password = decoded.partition(":")
                ok = (given_user, given_password) == owner.credentials
                user = given_user
            if not ok:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="gitsafe tests"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path = path[len("/private") :]
        body = self._body()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(owner.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(owner.root),
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.0",
        }
        if user:
            env["REMOTE_USER"] = user
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        proc = subprocess.run(
            [owner.backend], input=body, capture_output=True, env=env, check=False
        )
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: HttpGit


class HttpGit:
    """``git http-backend`` over HTTP(S) on 127.0.0.1; ``/private/...`` needs basic auth."""

    def __init__(
        self,
        root: Path,
        credentials: tuple[str, str] = ("deploy", "s3cret-pa55"),
        tls: TlsFiles | None = None,
    ) -> None:
        backend = http_backend()
        if backend is None:
            raise RuntimeError("git-http-backend not found")
        self.backend = backend
        self.root = root
        self.credentials = credentials
        self.tls = tls
        self.requests: list[str] = []
        self.auth_headers: list[str] = []
        self.server: _HttpServer | None = None
        self.thread: threading.Thread | None = None
        self.port = 0

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def url(self, name: str, private: bool = False, userinfo: str = "") -> str:
        prefix = "/private" if private else ""
        at = f"{userinfo}@" if userinfo else ""
        return f"{self.scheme}://{at}127.0.0.1:{self.port}{prefix}/{name}"

    def start(self) -> HttpGit:
        self.server = _HttpServer(("127.0.0.1", 0), _Handler)
        self.server.owner = self
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls.cert, self.tls.key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self) -> HttpGit:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it (openssl CLI).

    Each instance has its own CA, so a CA loaded into libgit2 by one test never makes another
    test's server trusted.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = directory / "ca.pem"
        ca_key = directory / "ca.key"
        self.key = directory / "server.key"
        self.cert = directory / "server.pem"
        csr = directory / "server.csr"
        ext = directory / "server.ext"
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        _openssl(
            "req",
            "-x509",
            *ec,
            "-keyout",
            ca_key,
            "-out",
            self.ca,
            "-days",
            "2",
            "-subj",
            "/CN=gitsafe test CA",
        )
        _openssl("req", *ec, "-keyout", self.key, "-out", csr, "-subj", "/CN=127.0.0.1")
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            self.ca,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            self.cert,
            "-days",
            "2",
            "-extfile",
            ext,
        )


def _openssl(*args: object) -> None:
    if shutil.which("openssl") is None:
        import pytest

        pytest.skip("openssl is not installed (CI installs it)")
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


# -- sshd ---------------------------------------------------------------------------------------


def keygen(path: Path, kind: str = "ed25519", passphrase: str = "", comment: str = "") -> Path:
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            kind,
            "-N",
            passphrase,
            "-C",
            comment or path.name,
            "-f",
            str(path),
        ],
        check=True,
        capture_output=True,
    )
    return path


def public_blob(key: Path) -> str:
    """``type base64`` of the public half of ``key`` (a private key path)."""
    kind, blob = Path(f"{key}.pub").read_text().split()[:2]
    return f"{kind} {blob}"


class Sshd:
    """OpenSSH's sshd with its own host key, authorizing ``user_keys`` for the current user."""

    def __init__(
        self,
        directory: Path,
        host_key_type: str = "ed25519",
        address: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        if not os.access(SSHD, os.X_OK):
            raise RuntimeError(f"{SSHD} not installed")
        self.dir = directory
        self.address = address
        directory.mkdir(parents=True, exist_ok=True)
        self.host_key = keygen(directory / f"host_{host_key_type}", host_key_type)
        self.authorized = directory / "authorized_keys"
        self.authorized.write_text("")
        self.port = port or free_port()
        self.user = _current_user()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "sshd.log"

    def authorize(self, key: Path) -> None:
        with self.authorized.open("a") as f:
            f.write(public_blob(key) + "\n")

    def url(self, path: Path, user: str | None = None) -> str:
        return f"ssh://{user or self.user}@{self.address}:{self.port}{path}"

    def known_hosts_line(self, host: str | None = None) -> str:
        if host is None:
            host = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        return f"{host} {public_blob(self.host_key)}\n"

    def start(self) -> Sshd:
        # sshd insists on its privilege-separation directory even when run by hand.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        config = self.dir / "sshd_config"
        config.write_text(
            f"Port {self.port}\n"
            f"ListenAddress {self.address}\n"
            f"HostKey {self.host_key}\n"
            f"PidFile {self.dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.authorized}\n"
            "StrictModes no\n"
            "UsePAM no\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\n"
            "AllowTcpForwarding no\n"
            "X11Forwarding no\n"
            "PrintMotd no\n"
            "LogLevel VERBOSE\n"
            f"SetEnv PATH={os.environ.get('PATH', '/usr/bin:/bin')}\n"
        )
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
            start_new_session=True,
        )
        wait_for_port(self.port, self.proc, address=self.address)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    def __enter__(self) -> Sshd:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


@contextlib.contextmanager
def ssh_agent(*keys: Path) -> Iterator[dict[str, str]]:
    """A private ssh-agent holding ``keys``; yields the environment that points at it."""
    out = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True, check=True).stdout
    env: dict[str, str] = {}
    for part in out.replace("\n", ";").split(";"):
        name, eq, value = part.strip().partition("=")
        if eq and name in ("SSH_AUTH_SOCK", "SSH_AGENT_PID"):
            env[name] = value
    try:
        for key in keys:
            subprocess.run(
                ["ssh-add", "-q", str(key)],
                env={**os.environ, **env},
                check=True,
                capture_output=True,
            )
        yield env
    finally:
        with contextlib.suppress(ProcessLookupError, ValueError, KeyError):
            os.kill(int(env["SSH_AGENT_PID"]), 15)


# -- faults -------------------------------------------------------------------------------------


class Relay:
    """Forward 127.0.0.1:port to ``target_port``; inject faults on chosen connections.

    ``cut_after``: after this many bytes from the server on a faulty connection, close both
    sides (``on_cut`` runs first, e.g. to kill the server itself).  ``hang``: accept and never
    answer.  ``faulty``: how many faults to inject (cuts, or hung connections from the first);
    None = every connection.
    """

    def __init__(
        self,
        target_port: int,
        cut_after: int | None = None,
        hang: bool = False,
        faulty: int | None = None,
        on_cut: Callable[[], None] | None = None,
    ) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.hang = hang
        self.faulty = faulty
        self.on_cut = on_cut
        self.connections = 0
        self.cuts = 0
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = int(self.listener.getsockname()[1])
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.listener], [], [], 0.05)
            if not ready:
                continue
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            faulty = self.faulty is None or self.connections <= self.faulty
            if self.hang and faulty:
                self._held.append(client)
                continue
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(("127.0.0.1", self.target_port), 5)
        except OSError:
            client.close()
            return
        sent = 0
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([client, server], [], [], 0.05)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is server:
                        may_cut = self.faulty is None or self.cuts < self.faulty
                        if may_cut and self.cut_after is not None:
                            room = self.cut_after - sent
                            if len(data) >= room:
                                client.sendall(data[: max(room, 0)])
                                self.cuts += 1
                                if self.on_cut is not None:
                                    self.on_cut()
                                # RST rather than FIN: the peer sees the connection die.
                                client.setsockopt(
                                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0"
                                )
                                return
                        sent += len(data)
                        client.sendall(data)
                    else:
                        server.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            server.close()

    def start(self) -> Relay:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.listener.close()
        for sock in self._held:
            sock.close()

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _OwnedServer
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        import http.client
        from urllib.parse import urlsplit

        self.server.owner.seen.append(f"{self.command} {self.path}")
        target = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = _Handler._body(self)  # type: ignore[arg-type]
        conn = http.client.HTTPConnection(target.hostname or "", target.port or 80, timeout=30)
        headers = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in ("proxy-connection", "connection", "transfer-encoding", "host")
        }
        if body is not None:
            headers["Content-Length"] = str(len(body))
        path = target.path + (f"?{target.query}" if target.query else "")
        conn.request(self.command, path, body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _forward
    do_POST = _forward

    def do_CONNECT(self) -> None:
        """A tunnel, as an https remote asks for one."""
        self.server.owner.seen.append(f"CONNECT {self.path}")
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), 5)
        except OSError:
            self.send_error(502)
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        client = self.connection
        try:
            while True:
                ready, _, _ = select.select([client, upstream], [], [], 5)
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()


class _OwnedServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: Any  # the _Loopback that serves it, for its handlers


class _Loopback:
    """An HTTP server on a free loopback port, served from a thread inside its with-block;
    ``seen`` is for its handler to record what it was asked."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.seen: list[str] = []
        self.server = _OwnedServer(("127.0.0.1", 0), handler)
        self.server.owner = self
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class Proxy(_Loopback):
    """An HTTP forward proxy (absolute-URI requests and CONNECT tunnels) that records every
    request line it carried."""

    def __init__(self) -> None:
        super().__init__(_ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class _RedirectHandler(BaseHTTPRequestHandler):
    server: _OwnedServer

    def do_GET(self) -> None:
        self.server.owner.seen.append(self.path)
        self.send_response(301)
        self.send_header("Location", self.server.owner.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Redirect(_Loopback):
    """A plain-http server that answers every request with a permanent redirect to the same
    path under ``target`` (an https server, say), as hosts redirect http:// to https://."""

    def __init__(self, target: str) -> None:
        super().__init__(_RedirectHandler)
        self.target = target.rstrip("/")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"


def which(name: str) -> str | None:
    return shutil.which(name)
