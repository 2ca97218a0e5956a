"""Real remotes: every transport against a real server on 127.0.0.1, host keys, credentials,
network faults with retries, force pushes, shallow bases, proxies and the progress bar."""

from __future__ import annotations

import json
import os
import pty
import random
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import pytest
from gitfixtures import Origin, git, run_cli, snapshot, write
from servers import (
    SSHD,
    GitDaemon,
    HttpGit,
    Proxy,
    Redirect,
    Relay,
    Sshd,
    TlsFiles,
    free_port,
    http_backend,
    keygen,
    public_blob,
    ssh_agent,
)

import gitsafe
from gitsafe import hostkeys
from gitsafe.transport import endpoint

SCHEMA = json.loads((Path(__file__).parent.parent / "docs/report.schema.json").read_text())
HAS_SSHD = os.access(SSHD, os.X_OK)
needs_sshd = pytest.mark.skipif(not HAS_SSHD, reason=f"{SSHD} not installed (CI installs it)")
needs_http_backend = pytest.mark.skipif(http_backend() is None, reason="git-http-backend missing")

_NETWORK_ENV = (
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "SSH_AUTH_SOCK",
    "GITSAFE_KNOWN_HOSTS",
    "GITSAFE_ACCEPT_NEW_HOST_KEY",
    "GITSAFE_RETRIES",
    "GITSAFE_DEPTH",
    "GITSAFE_SSH_KEY",
    "GITSAFE_SSH_PASSPHRASE",
    "GITSAFE_HTTP_USER",
    "GITSAFE_HTTP_PASSWORD",
)


@pytest.fixture(autouse=True)
def network_env(monkeypatch: pytest.MonkeyPatch, hermetic_git: Path) -> Path:
    """No proxy, CA bundle, agent or credential of the machine leaks in; backoff is short."""
    for name in _NETWORK_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITSAFE_RETRY_DELAY", "0.05")
    monkeypatch.setenv("GITSAFE_TIMEOUT", "10")
    return hermetic_git


def valid(report: gitsafe.Report) -> dict[str, object]:
    data = report.as_json()
    jsonschema.validate(data, SCHEMA)
    return data


def deploy_via(origin: Origin, tmp_path: Path, url: str, name: str = "deploy") -> Path:
    """A real clone of ``origin`` whose remote then points at ``url``."""
    deploy = origin.clone(tmp_path / name)
    git(deploy, "remote", "set-url", "origin", url)
    return deploy


def advance(origin: Origin, text: str = "v2\n") -> str:
    write(origin.work, "README.md", text)
    return origin.push(f"upstream {text.strip()}")


def head(checkout: Path) -> str:
    return git(checkout, "rev-parse", "HEAD").strip()


def tracking(checkout: Path) -> str:
    return git(checkout, "rev-parse", "refs/remotes/origin/main").strip()


def assert_pulled(report: gitsafe.Report, deploy: Path, sha: str, transport: str) -> None:
    assert report.exit_code == 0, report.to_json_text()
    assert head(deploy) == sha
    data = valid(report)
    fetch = data["fetch"]
    assert isinstance(fetch, dict)
    assert fetch["transport"] == transport
    assert fetch["attempts"] == 1
    assert fetch["received_objects"] >= 3 and fetch["received_bytes"] > 0
    assert isinstance(fetch["duration_ms"], int)


# -- every transport ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["local", "file"])
def test_pull_over_a_local_path_and_file_url(origin: Origin, tmp_path: Path, kind: str) -> None:
    url = str(origin.bare) if kind == "local" else f"file://{origin.bare}"
    deploy = deploy_via(origin, tmp_path, url)
    sha = advance(origin)
    report = gitsafe.pull(deploy)
    assert report.exit_code == 0, report.to_json_text()
    assert head(deploy) == sha
    assert valid(report)["fetch"]["transport"] == kind  # type: ignore[index]


def test_pull_over_git_daemon(origin: Origin, tmp_path: Path) -> None:
    with GitDaemon(tmp_path) as daemon:
        deploy = deploy_via(origin, tmp_path, daemon.url("origin.git"))
        sha = advance(origin)
        assert_pulled(gitsafe.pull(deploy), deploy, sha, "git")


@needs_http_backend
def test_pull_over_smart_http(origin: Origin, tmp_path: Path) -> None:
    with HttpGit(tmp_path) as server:
        deploy = deploy_via(origin, tmp_path, server.url("origin.git"))
        sha = advance(origin)
        assert_pulled(gitsafe.pull(deploy), deploy, sha, "http")
        assert any("git-upload-pack" in r for r in server.requests)


@needs_http_backend
def test_pull_over_https_trusting_the_ca_from_git_ssl_cainfo(
    origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = TlsFiles(tmp_path / "tls")
    with HttpGit(tmp_path, tls=tls) as server:
        deploy = deploy_via(origin, tmp_path, server.url("origin.git"))
        sha = advance(origin)
        monkeypatch.setenv("GIT_SSL_CAINFO", str(tls.ca))
        assert_pulled(gitsafe.pull(deploy), deploy, sha, "https")


@needs_http_backend
@pytest.mark.parametrize("redirected", [False, True], ids=["https", "http-redirected-to-https"])
def test_an_https_pull_from_the_command_line_loads_the_system_store_first(
    origin: Origin, tmp_path: Path, redirected: bool
) -> None:
    """The command line imports pygit2 without the system's CA store and hands libgit2 the
    store's locations before a fetch that may end on TLS (gitsafe/tls.py), the ones a plain
    ``import pygit2`` gives it; also for an http:// remote, which libgit2 follows when it
    redirects to https://.  The locations come from Python's ssl, here SSL_CERT_FILE (which
    OpenSSL also reads by itself: the locations libgit2 was handed are what tells).  Without
    any trust for the server's CA, the same pull is refused."""
    tls = TlsFiles(tmp_path / "tls")
    with HttpGit(tmp_path, tls=tls) as server, Redirect(server.url("")) as redirect:
        url = redirect.url("origin.git") if redirected else server.url("origin.git")
        deploy = deploy_via(origin, tmp_path, url)
        sha = advance(origin)

        refused = run_cli(["pull", "origin", "main"], deploy)
        assert refused.returncode == 1 and "certificate" in refused.stderr.lower()
        assert head(deploy) != sha
        trusted = run_cli(["pull", "origin", "main"], deploy, {"SSL_CERT_FILE": str(tls.ca)})
    assert trusted.returncode == 0, trusted.stderr
    assert head(deploy) == sha
    assert trusted.ca[0] == str(tls.ca)
    assert bool(redirect.seen) == redirected


@needs_http_backend
def test_https_with_a_ca_from_http_sslcainfo_config(origin: Origin, tmp_path: Path) -> None:
    tls = TlsFiles(tmp_path / "tls")
    with HttpGit(tmp_path, tls=tls) as server:
        deploy = deploy_via(origin, tmp_path, server.url("origin.git"))
        git(deploy, "config", "http.sslCAInfo", str(tls.ca))
        sha = advance(origin)
        assert_pulled(gitsafe.pull(deploy), deploy, sha, "https")


@needs_http_backend
def test_https_with_an_untrusted_certificate_fails_at_once_and_touches_nothing(
    origin: Origin, tmp_path: Path
) -> None:
    tls = TlsFiles(tmp_path / "tls")  # a CA nobody was told to trust
    with HttpGit(tmp_path, tls=tls) as server:
        deploy = deploy_via(origin, tmp_path, server.url("origin.git"))
        before, tip = snapshot(deploy), tracking(deploy)
        advance(origin)
        report = gitsafe.pull(deploy)
    assert report.exit_code == 1
    assert report.error is not None and "certificate" in report.error["message"].lower()
    assert report.fetch is not None and report.fetch["attempts"] == 1  # never retried
    assert snapshot(deploy) == before and tracking(deploy) == tip


# -- ssh: host keys -------------------------------------------------------------------------


@pytest.fixture
def sshd(tmp_path: Path, network_env: Path) -> Iterator[Sshd]:
    if not HAS_SSHD:
        pytest.skip(f"{SSHD} not installed (CI installs it)")
    ssh_dir = network_env / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    user_key = keygen(ssh_dir / "id_ed25519")
    with Sshd(tmp_path / "sshd") as server:
        server.authorize(user_key)
        yield server


def known_hosts(home: Path) -> Path:
    return home / ".ssh" / "known_hosts"


def ssh_fingerprint(pub: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True)
    return out.stdout.split()[1]


@needs_sshd
def test_pull_over_ssh_with_a_trusted_host_key_and_the_default_key_file(
    origin: Origin, tmp_path: Path, sshd: Sshd, network_env: Path
) -> None:
    known_hosts(network_env).write_text(sshd.known_hosts_line())
    deploy = deploy_via(origin, tmp_path, sshd.url(origin.bare))
    sha = advance(origin)
    report = gitsafe.pull(deploy)
    assert_pulled(report, deploy, sha, "ssh")
    assert report.fetch is not None
    assert report.fetch["host_key"]["status"] == "trusted"
    assert report.fetch["auth"] == f"ssh-key:{network_env / '.ssh' / 'id_ed25519'}"


@needs_sshd
def test_unknown_ssh_host_key_fails_with_its_fingerprint_and_how_to_trust_it(
    origin: Origin, tmp_path: Path, sshd: Sshd, network_env: Path
) -> None:
    deploy = deploy_via(origin, tmp_path, sshd.url(origin.bare))
    before, tip = snapshot(deploy), tracking(deploy)
    advance(origin)
    proc = subprocess.run(
        [sys.executable, "-m", "gitsafe", "pull", "-C", str(deploy), "--json"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr
    fingerprint = ssh_fingerprint(Path(f"{sshd.host_key}.pub"))
    assert fingerprint in proc.stderr
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {known_hosts(network_env)}" in proc.stderr
    assert "--accept-new-host-key" in proc.stderr
    data = json.loads(proc.stdout)
    assert data["error"]["kind"] == "host-key"
    assert data["fetch"]["host_key"]["fingerprint"] == fingerprint
    assert data["fetch"]["attempts"] == 1
    assert snapshot(deploy) == before and tracking(deploy) == tip
    assert not known_hosts(network_env).exists()


@needs_sshd
def test_accept_new_host_key_records_it_then_trusts_it(
    origin: Origin, tmp_path: Path, sshd: Sshd, network_env: Path
) -> None:
    (network_env / ".ssh" / "id_ed25519").rename(tmp_path / "key")
    (network_env / ".ssh" / "id_ed25519.pub").rename(tmp_path / "key.pub")
    (network_env / ".ssh").rmdir()  # gitsafe must create ~/.ssh itself, 0700
    deploy = deploy_via(origin, tmp_path, sshd.url(origin.bare))
    sha = advance(origin)
    env = {**os.environ, "GITSAFE_SSH_KEY": str(tmp_path / "key")}
    report = gitsafe.pull(deploy, accept_new_host_key=True, env=env)
    assert report.exit_code == 0, report.to_json_text()
    assert head(deploy) == sha
    assert report.fetch is not None and report.fetch["host_key"]["status"] == "accepted-new"
    assert valid(report)["settings"]["accept_new_host_key"] == {  # type: ignore[index]
        "value": True,
        "source": "flag",
    }
    assert (network_env / ".ssh").stat().st_mode & 0o777 == 0o700
    assert known_hosts(network_env).read_text() == sshd.known_hosts_line()
    sha = advance(origin, "v3\n")
    again = gitsafe.pull(deploy, env=env)
    assert again.exit_code == 0 and head(deploy) == sha
    assert again.fetch is not None and again.fetch["host_key"]["status"] == "trusted"


@needs_sshd
def test_mismatched_host_key_is_refused_even_with_accept_new(
    origin: Origin, tmp_path: Path, sshd: Sshd, network_env: Path
) -> None:
    impostor = keygen(tmp_path / "impostor")
    label = f"[127.0.0.1]:{sshd.port}"
    known_hosts(network_env).write_text(f"{label} {public_blob(impostor)}\n")
    deploy = deploy_via(origin, tmp_path, sshd.url(origin.bare))
    before = snapshot(deploy)
    advance(origin)
    report = gitsafe.pull(deploy, accept_new_host_key=True)
    assert report.exit_code == 1
    assert report.error is not None and report.error["kind"] == "host-key"
    assert "HOST KEY MISMATCH" in report.error["message"]
    assert ssh_fingerprint(Path(f"{sshd.host_key}.pub")) in report.error["message"]
    assert report.fetch is not None and report.fetch["host_key"]["status"] == "mismatch"
    assert known_hosts(network_env).read_text() == f"{label} {public_blob(impostor)}\n"
    assert snapshot(deploy) == before


@needs_sshd
def test_revoked_host_key_is_refused(
    origin: Origin, tmp_path: Path, sshd: Sshd, network_env: Path
) -> None:
    line = sshd.known_hosts_line()
    known_hosts(network_env).write_text(line + f"@revoked * {public_blob(sshd.host_key)}\n")
    deploy = deploy_via(origin, tmp_path, sshd.url(origin.bare))
    report = gitsafe.pull(deploy)
    assert report.exit_code == 1
    assert report.fetch is not None and report.fetch["host_key"]["status"] == "revoked"
    assert report.error is not None and "@revoked" in report.error["message"]


@needs_sshd
def test_hashed_known_hosts_entry_in_a_custom_file_is_trusted(
    origin: Origin, tmp_path: Path, sshd: Sshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    custom = tmp_path / "fleet_known_hosts"
    custom.write_text(sshd.known_hosts_line())
    subprocess.run(["ssh-keygen", "-H", "-f", str(custom)], check=True, capture_output=True)
    assert custom.read_text().startswith("|1|")
    monkeypatch.setenv("GITSAFE_KNOWN_HOSTS", str(custom))
    deploy = deploy_via(origin, tmp_path, sshd.url(origin.bare))
    sha = advance(origin)
    report = gitsafe.pull(deploy)
    assert report.exit_code == 0, report.to_json_text()
    assert head(deploy) == sha
    assert report.fetch is not None and report.fetch["host_key"]["known_hosts"] == str(custom)


@needs_sshd
def test_cert_authority_lines_are_reported_as_unsupported(
    origin: Origin, tmp_path: Path, sshd: Sshd, network_env: Path
) -> None:
    known_hosts(network_env).write_text(f"@cert-authority * {public_blob(sshd.host_key)}\n")
    deploy = deploy_via(origin, tmp_path, sshd.url(origin.bare))
    report = gitsafe.pull(deploy)
    assert report.exit_code == 1
    assert report.error is not None and "@cert-authority" in report.error["message"]
    assert "not supported" in report.error["message"]


def test_scp_like_address_over_ssh_on_port_22(
    origin: Origin, tmp_path: Path, network_env: Path
) -> None:
    """user@host:path has no port: sshd listens on port 22 of a spare loopback address."""
    if not HAS_SSHD:
        pytest.skip(f"{SSHD} not installed (CI installs it)")
    address = f"127.0.{random.randint(1, 254)}.{random.randint(2, 254)}"
    with socket.socket() as probe:
        try:
            probe.bind((address, 22))
        except OSError:
            pytest.skip(f"port 22 on {address} is taken or not bindable")
    ssh_dir = network_env / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    user_key = keygen(ssh_dir / "id_ed25519")
    with Sshd(tmp_path / "sshd", address=address, port=22) as server:
        server.authorize(user_key)
        known_hosts(network_env).write_text(server.known_hosts_line())
        deploy = deploy_via(origin, tmp_path, f"{server.user}@{address}:{origin.bare}")
        sha = advance(origin)
        report = gitsafe.pull(deploy)
    assert_pulled(report, deploy, sha, "ssh")
    assert report.fetch is not None and report.fetch["host_key"]["host"] == address


# -- ssh: credentials -----------------------------------------------------------------------


@needs_sshd
def test_ssh_agent_is_used_when_no_key_file_exists(
    origin: Origin, tmp_path: Path, sshd: Sshd, network_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = network_env / ".ssh" / "id_ed25519"
    key.rename(tmp_path / "agent-key")
    Path(f"{key}.pub").rename(tmp_path / "agent-key.pub")
    known_hosts(network_env).write_text(sshd.known_hosts_line())
    deploy = deploy_via(origin, tmp_path, sshd.url(origin.bare))
    sha = advance(origin)
    with ssh_agent(tmp_path / "agent-key") as agent_env:
        monkeypatch.setenv("SSH_AUTH_SOCK", agent_env["SSH_AUTH_SOCK"])
        report = gitsafe.pull(deploy)
    assert report.exit_code == 0, report.to_json_text()
    assert head(deploy) == sha
    assert report.fetch is not None and report.fetch["auth"] == "ssh-agent"


@needs_sshd
def test_ssh_key_file_with_a_passphrase_from_the_environment(
    origin: Origin, tmp_path: Path, sshd: Sshd, network_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "correct horse battery"
    key = keygen(tmp_path / "deploy-key", passphrase=secret)
    sshd.authorize(key)
    (network_env / ".ssh" / "id_ed25519").unlink()
    known_hosts(network_env).write_text(sshd.known_hosts_line())
    deploy = deploy_via(origin, tmp_path, sshd.url(origin.bare))
    sha = advance(origin)
    monkeypatch.setenv("GITSAFE_SSH_KEY", str(key))
    monkeypatch.setenv("GITSAFE_SSH_PASSPHRASE", secret)
    report = gitsafe.pull(deploy)
    assert report.exit_code == 0, report.to_json_text()
    assert head(deploy) == sha
    assert secret not in report.to_json_text()


@needs_sshd
def test_ssh_key_the_server_rejects_fails_once_without_looping(
    origin: Origin, tmp_path: Path, sshd: Sshd, network_env: Path
) -> None:
    stranger = keygen(network_env / ".ssh" / "id_ecdsa", "ecdsa")  # not authorized
    (network_env / ".ssh" / "id_ed25519").unlink()
    known_hosts(network_env).write_text(sshd.known_hosts_line())
    deploy = deploy_via(origin, tmp_path, sshd.url(origin.bare))
    before = snapshot(deploy)
    t0 = time.monotonic()
    report = gitsafe.pull(deploy)
    assert time.monotonic() - t0 < 10
    assert report.exit_code == 1
    assert report.error is not None and report.error["kind"] == "auth"
    assert f"ssh-key:{stranger}" in report.error["message"]
    assert report.fetch is not None and report.fetch["attempts"] == 1
    assert snapshot(deploy) == before


# -- http: credentials ----------------------------------------------------------------------


@needs_http_backend
def test_http_basic_auth_from_environment_variables(
    origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HttpGit(tmp_path) as server:
        deploy = deploy_via(origin, tmp_path, server.url("origin.git", private=True))
        sha = advance(origin)
        monkeypatch.setenv("GITSAFE_HTTP_USER", server.credentials[0])
        monkeypatch.setenv("GITSAFE_HTTP_PASSWORD", server.credentials[1])
        report = gitsafe.pull(deploy)
    assert_pulled(report, deploy, sha, "http")
    assert report.fetch is not None
    assert report.fetch["auth"] == "env:GITSAFE_HTTP_USER/GITSAFE_HTTP_PASSWORD"
    assert server.credentials[1] not in report.to_json_text()


@needs_http_backend
def test_http_password_variable_renamed_in_git_config(
    origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HttpGit(tmp_path) as server:
        user, password = server.credentials
        url = server.url("origin.git", private=True, userinfo=user)
        deploy = deploy_via(origin, tmp_path, url)
        git(deploy, "config", "gitsafe.httpPasswordEnv", "SHOP_DEPLOY_TOKEN")
        sha = advance(origin)
        monkeypatch.setenv("SHOP_DEPLOY_TOKEN", password)
        report = gitsafe.pull(deploy)
    assert report.exit_code == 0, report.to_json_text()
    assert head(deploy) == sha
    assert report.remote["url"] is not None and user not in report.remote["url"]


@needs_http_backend
def test_http_credentials_from_netrc(origin: Origin, tmp_path: Path, network_env: Path) -> None:
    with HttpGit(tmp_path) as server:
        user, password = server.credentials
        netrc = network_env / ".netrc"
        netrc.write_text(f"machine 127.0.0.1 login {user} password {password}\n")
        netrc.chmod(0o600)
        deploy = deploy_via(origin, tmp_path, server.url("origin.git", private=True))
        sha = advance(origin)
        report = gitsafe.pull(deploy)
    assert report.exit_code == 0, report.to_json_text()
    assert head(deploy) == sha
    assert report.fetch is not None and report.fetch["auth"] == "netrc"


@needs_http_backend
def test_wrong_http_password_fails_after_one_try_and_is_never_shown(
    origin: Origin, tmp_path: Path
) -> None:
    wrong = "not-the-password-9f3e"
    with HttpGit(tmp_path) as server:
        deploy = deploy_via(origin, tmp_path, server.url("origin.git", private=True))
        before = snapshot(deploy)
        env = {**os.environ, "GITSAFE_HTTP_USER": "deploy", "GITSAFE_HTTP_PASSWORD": wrong}
        proc = subprocess.run(
            [sys.executable, "-m", "gitsafe", "pull", "-C", str(deploy), "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        requests_made = len(server.auth_headers)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["error"]["kind"] == "auth"
    assert "GITSAFE_HTTP_PASSWORD" in data["error"]["message"]
    assert data["fetch"]["attempts"] == 1
    assert wrong not in proc.stdout and wrong not in proc.stderr
    # one anonymous request, one with the (wrong) credentials: no loop
    assert requests_made <= 3
    assert snapshot(deploy) == before


@needs_http_backend
def test_http_auth_required_without_credentials_says_what_to_set(
    origin: Origin, tmp_path: Path
) -> None:
    with HttpGit(tmp_path) as server:
        deploy = deploy_via(origin, tmp_path, server.url("origin.git", private=True))
        report = gitsafe.pull(deploy)
    assert report.exit_code == 1
    assert report.error is not None and report.error["kind"] == "auth"
    assert "nothing was configured" in report.error["message"]
    assert "~/.netrc" in report.error["message"]


@needs_http_backend
def test_https_proxy_from_git_config_carries_the_fetch(origin: Origin, tmp_path: Path) -> None:
    tls = TlsFiles(tmp_path / "tls")
    with HttpGit(tmp_path, tls=tls) as server, Proxy() as proxy:
        deploy = deploy_via(origin, tmp_path, server.url("origin.git"))
        git(deploy, "config", "http.proxy", proxy.url)
        git(deploy, "config", "http.sslCAInfo", str(tls.ca))
        sha = advance(origin)
        report = gitsafe.pull(deploy)
    assert report.exit_code == 0, report.to_json_text()
    assert head(deploy) == sha
    assert proxy.seen and proxy.seen[0] == f"CONNECT 127.0.0.1:{server.port}", proxy.seen
    assert report.fetch is not None and report.fetch["proxy"] == proxy.url


@needs_http_backend
def test_https_proxy_from_the_environment_carries_the_fetch(
    origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = TlsFiles(tmp_path / "tls")
    with HttpGit(tmp_path, tls=tls) as server, Proxy() as proxy:
        deploy = deploy_via(origin, tmp_path, server.url("origin.git"))
        monkeypatch.setenv("https_proxy", proxy.url)
        monkeypatch.setenv("GIT_SSL_CAINFO", str(tls.ca))
        sha = advance(origin)
        report = gitsafe.pull(deploy)
    assert report.exit_code == 0, report.to_json_text()
    assert head(deploy) == sha
    assert proxy.seen, "the fetch bypassed the proxy"


# -- network faults -------------------------------------------------------------------------


def test_connection_refused_is_retried_with_backoff_then_exit_1(
    origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy = deploy_via(origin, tmp_path, f"git://127.0.0.1:{free_port()}/origin.git")
    write(deploy, "scratch.txt", "local work\n")
    before, tip = snapshot(deploy), tracking(deploy)
    monkeypatch.setenv("GITSAFE_RETRY_DELAY", "0.1")
    t0 = time.monotonic()
    report = gitsafe.pull(deploy, retries=2)
    elapsed = time.monotonic() - t0
    assert report.exit_code == 1
    assert report.fetch is not None and report.fetch["attempts"] == 3
    assert len(report.fetch["errors"]) == 3
    assert "refused" in report.fetch["errors"][0].lower()
    assert elapsed >= 0.1 + 0.2  # backoff 0.1 s, then 0.2 s
    assert snapshot(deploy) == before and tracking(deploy) == tip
    valid(report)


def _big_origin(origin: Origin) -> str:
    write(origin.work, "blob.bin", os.urandom(400_000))  # a pack far longer than the cut
    return origin.push("big")


def test_server_killed_mid_fetch_leaves_the_checkout_untouched(
    origin: Origin, tmp_path: Path
) -> None:
    daemon = GitDaemon(tmp_path).start()
    try:
        deploy = deploy_via(origin, tmp_path, daemon.url("origin.git"))
        write(deploy, "src/config.py", "DEBUG = True  # local edit\n")
        before, tip = snapshot(deploy), tracking(deploy)
        _big_origin(origin)
        with Relay(daemon.port, cut_after=20_000, on_cut=daemon.stop) as relay:
            git(deploy, "remote", "set-url", "origin", f"git://127.0.0.1:{relay.port}/origin.git")
            report = gitsafe.pull(deploy, retries=2)
        assert relay.cuts == 1
    finally:
        daemon.stop()
    assert report.exit_code == 1, report.to_json_text()
    assert report.fetch is not None and report.fetch["attempts"] == 3
    assert "refused" not in report.fetch["errors"][0].lower()  # the first died mid-transfer
    assert snapshot(deploy) == before and tracking(deploy) == tip
    assert git(deploy, "fsck", "--no-dangling").strip() == ""


@pytest.mark.parametrize("kind", ["git", "http", "ssh"])
def test_connection_cut_mid_transfer_is_retried_and_the_retry_succeeds(
    origin: Origin, tmp_path: Path, network_env: Path, kind: str
) -> None:
    if kind == "ssh" and not HAS_SSHD:
        pytest.skip(f"{SSHD} not installed (CI installs it)")
    if kind == "http" and http_backend() is None:
        pytest.skip("git-http-backend missing")
    deploy = origin.clone(tmp_path / "deploy")
    sha = _big_origin(origin)
    with (
        _server(kind, tmp_path, network_env) as (port, url_for),
        Relay(port, cut_after=30_000, faulty=1) as relay,
    ):
        git(deploy, "remote", "set-url", "origin", url_for(relay.port))
        report = gitsafe.pull(deploy)
    assert report.exit_code == 0, report.to_json_text()
    assert head(deploy) == sha
    assert relay.cuts == 1
    assert report.fetch is not None and report.fetch["attempts"] == 2


class _server:
    """A server of ``kind`` and a function from a (relay) port to the repository's URL."""

    def __init__(self, kind: str, tmp_path: Path, home: Path) -> None:
        self.kind, self.tmp, self.home = kind, tmp_path, home
        self.server: GitDaemon | HttpGit | Sshd | None = None

    def __enter__(self) -> tuple[int, Callable[[int], str]]:
        bare = self.tmp / "origin.git"
        if self.kind == "git":
            daemon = GitDaemon(self.tmp).start()
            self.server = daemon
            return daemon.port, lambda port: f"git://127.0.0.1:{port}/origin.git"
        if self.kind == "http":
            http = HttpGit(self.tmp).start()
            self.server = http
            return http.port, lambda port: f"http://127.0.0.1:{port}/origin.git"
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        key = keygen(ssh_dir / "id_ed25519")
        sshd = Sshd(self.tmp / "sshd")
        sshd.authorize(key)
        sshd.start()
        self.server = sshd

        def url(port: int) -> str:
            (ssh_dir / "known_hosts").write_text(sshd.known_hosts_line(f"[127.0.0.1]:{port}"))
            return f"ssh://{sshd.user}@127.0.0.1:{port}{bare}"

        return sshd.port, url

    def __exit__(self, *_: object) -> None:
        if self.server is not None:
            self.server.stop()


def test_hung_server_times_out_instead_of_hanging_the_deploy(
    origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITSAFE_TIMEOUT", "0.5")
    with GitDaemon(tmp_path) as daemon, Relay(daemon.port, hang=True) as relay:
        deploy = deploy_via(origin, tmp_path, f"git://127.0.0.1:{relay.port}/origin.git")
        t0 = time.monotonic()
        report = gitsafe.pull(deploy, retries=1)
        elapsed = time.monotonic() - t0
    assert report.exit_code == 1
    assert report.fetch is not None and report.fetch["attempts"] == 2
    assert "timed out" in report.fetch["errors"][0]
    assert elapsed < 8


def test_unknown_branch_is_not_retried(origin: Origin, tmp_path: Path) -> None:
    with GitDaemon(tmp_path) as daemon:
        deploy = deploy_via(origin, tmp_path, daemon.url("origin.git"))
        report = gitsafe.pull(deploy, "origin", "no-such-branch")
    assert report.exit_code == 1
    assert report.error is not None and "not found" in report.error["message"]
    assert report.fetch is not None and report.fetch["attempts"] == 1


def test_missing_repository_on_the_server_is_not_retried(origin: Origin, tmp_path: Path) -> None:
    with GitDaemon(tmp_path) as daemon:
        deploy = deploy_via(origin, tmp_path, daemon.url("missing.git"))
        report = gitsafe.pull(deploy)
    assert report.exit_code == 1
    assert report.fetch is not None and report.fetch["attempts"] == 1, report.fetch


def test_sigterm_during_the_backoff_stops_the_pull_at_once(origin: Origin, tmp_path: Path) -> None:
    deploy = deploy_via(origin, tmp_path, f"git://127.0.0.1:{free_port()}/origin.git")
    env = {**os.environ, "GITSAFE_RETRY_DELAY": "60", "GITSAFE_RETRIES": "5"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitsafe", "pull", "-C", str(deploy), "-q"],
        env=env,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.5)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 143
    assert time.monotonic() - t0 < 5


# -- force push, shallow bases, depth -------------------------------------------------------


def test_force_pushed_branch_is_fetched_despite_a_non_forcing_refspec(
    origin: Origin, tmp_path: Path
) -> None:
    with GitDaemon(tmp_path) as daemon:
        deploy = deploy_via(origin, tmp_path, daemon.url("origin.git"))
        git(deploy, "config", "remote.origin.fetch", "refs/heads/*:refs/remotes/origin/*")
        advance(origin)
        gitsafe.pull(deploy)
        git(origin.work, "reset", "-q", "--hard", "HEAD~1")
        write(origin.work, "README.md", "rewritten\n")
        rewritten = origin.push("rewritten history", force=True)
        report = gitsafe.pull(deploy)
    assert report.exit_code == 0, report.to_json_text()
    assert head(deploy) == rewritten == tracking(deploy)


@needs_http_backend
def test_shallow_base_stays_shallow_and_keeps_working(origin: Origin, tmp_path: Path) -> None:
    for i in range(3):
        advance(origin, f"history {i}\n")
    with HttpGit(tmp_path) as server:
        url = server.url("origin.git")
        git(tmp_path, "clone", "-q", "--depth", "1", url, str(tmp_path / "deploy"))
        deploy = tmp_path / "deploy"
        write(deploy, "README.md", "local edit\n")
        sha = advance(origin, "after the shallow clone\n")
        report = gitsafe.pull(deploy)
        assert report.exit_code == 0, report.to_json_text()
        assert head(deploy) == sha
        assert git(deploy, "rev-parse", "--is-shallow-repository").strip() == "true"
        assert report.fetch is not None and report.fetch["shallow"] is True
        assert git(deploy, "status", "--porcelain").strip() == ""
        assert len(git(deploy, "log", "--format=%H").split()) == 2
        git(deploy, "fsck", "--no-dangling")
        sha = advance(origin, "once more\n")
        assert gitsafe.pull(deploy).exit_code == 0 and head(deploy) == sha


def test_depth_makes_a_shallow_fetch_over_git_daemon(origin: Origin, tmp_path: Path) -> None:
    for i in range(3):
        advance(origin, f"history {i}\n")
    with GitDaemon(tmp_path) as daemon:
        url = daemon.url("origin.git")
        git(tmp_path, "clone", "-q", "--depth", "1", url, str(tmp_path / "deploy"))
        deploy = tmp_path / "deploy"
        sha = advance(origin, "new\n")
        report = gitsafe.pull(deploy, depth=1)
    assert report.exit_code == 0, report.to_json_text()
    assert head(deploy) == sha
    assert git(deploy, "rev-list", "--count", "HEAD").strip() == "1"
    assert report.fetch is not None and report.fetch["depth"] == 1
    assert valid(report)["settings"]["depth"] == {"value": 1, "source": "flag"}  # type: ignore[index]


def test_shallow_base_with_a_local_remote_is_refused_untouched(
    origin: Origin, tmp_path: Path
) -> None:
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{origin.bare}", str(tmp_path / "d"))
    deploy = tmp_path / "d"
    write(deploy, "README.md", "local edit\n")
    before = snapshot(deploy)
    advance(origin)
    report = gitsafe.pull(deploy)
    assert report.exit_code == 2
    assert report.error is not None and "shallow" in report.error["message"]
    assert "git fetch --unshallow" in report.error["message"]
    assert snapshot(deploy) == before
    assert git(deploy, "rev-parse", "--is-shallow-repository").strip() == "true"


def test_depth_with_a_local_remote_is_a_usage_error(origin: Origin, tmp_path: Path) -> None:
    deploy = deploy_via(origin, tmp_path, f"file://{origin.bare}")
    report = gitsafe.pull(deploy, depth=1)
    assert report.exit_code == 2
    assert report.error is not None and report.error["kind"] == "usage"


# -- progress ---------------------------------------------------------------------------------


def _run_on_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run the CLI with stderr on a pseudo-terminal; return what it drew there."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=env
    )
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait(30)
    os.close(master)
    return out.decode(errors="replace")


def test_progress_bar_on_a_terminal_only_and_silenced_by_quiet(
    origin: Origin, tmp_path: Path
) -> None:
    _big_origin(origin)
    with GitDaemon(tmp_path) as daemon:
        url = daemon.url("origin.git")
        env = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}
        runs = {}
        for name, extra in (("tty", []), ("quiet", ["-q"])):
            deploy = deploy_via(origin, tmp_path, url, name=name)
            git(deploy, "reset", "-q", "--hard", "HEAD")
            args = [sys.executable, "-m", "gitsafe", "pull", "-C", str(deploy), *extra]
            runs[name] = _run_on_terminal(args, env)
        piped_deploy = deploy_via(origin, tmp_path, url, name="piped")
        piped = subprocess.run(
            [sys.executable, "-m", "gitsafe", "pull", "-C", str(piped_deploy)],
            capture_output=True,
            text=True,
            env=env,
        )
    assert "objects," in runs["tty"], runs["tty"]
    assert "objects," not in runs["quiet"]
    assert piped.returncode == 0 and "objects," not in piped.stderr


# -- known_hosts parsing (no server) ------------------------------------------------------------


def _key(seed: str) -> hostkeys.HostKey:
    kind = b"ssh-ed25519"
    body = seed.encode().ljust(32, b"\0")
    return hostkeys.HostKey(
        len(kind).to_bytes(4, "big") + kind + len(body).to_bytes(4, "big") + body
    )


def _known(tmp_path: Path, text: str) -> hostkeys.KnownHosts:
    path = tmp_path / "known_hosts"
    path.write_text(text)
    return hostkeys.KnownHosts.load(str(path))


def test_known_hosts_patterns_ports_wildcards_and_negation(tmp_path: Path) -> None:
    a, b = _key("a"), _key("b")
    known = _known(
        tmp_path,
        "# comment\n"
        f"git.example.com,10.0.0.5 ssh-ed25519 {a.base64}\n"
        f"[git.example.com]:2222 ssh-ed25519 {b.base64}\n"
        f"*.corp.example,!evil.corp.example ssh-ed25519 {a.base64}\n",
    )
    assert hostkeys.check(known, "git.example.com", 22, a).status == "trusted"
    assert hostkeys.check(known, "GIT.example.com", 22, a).status == "trusted"
    assert hostkeys.check(known, "10.0.0.5", 22, a).status == "trusted"
    assert hostkeys.check(known, "git.example.com", 2222, b).status == "trusted"
    assert hostkeys.check(known, "git.example.com", 2222, a).status == "mismatch"
    assert hostkeys.check(known, "git.example.com", 22, b).status == "mismatch"
    assert hostkeys.check(known, "build.corp.example", 22, a).status == "trusted"
    assert hostkeys.check(known, "evil.corp.example", 22, a).status == "unknown"
    assert hostkeys.check(known, "other.example", 22, a).status == "unknown"


def test_hashed_known_hosts_entries_match_only_their_host(tmp_path: Path) -> None:
    key = _key("h")
    path = tmp_path / "known_hosts"
    path.write_text(f"[git.example.com]:2222 ssh-ed25519 {key.base64}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(path)], check=True, capture_output=True)
    known = hostkeys.KnownHosts.load(str(path))
    assert known.entries[0].patterns[0].startswith("|1|")
    assert hostkeys.check(known, "git.example.com", 2222, key).status == "trusted"
    assert hostkeys.check(known, "git.example.com", 22, key).status == "unknown"


def test_fingerprint_is_openssh_sha256_format(tmp_path: Path) -> None:
    key_path = keygen(tmp_path / "k")
    blob = public_blob(key_path).split()[1]
    import base64

    key = hostkeys.HostKey(base64.b64decode(blob))
    assert key.fingerprint == ssh_fingerprint(Path(f"{key_path}.pub"))
    assert key.key_type == "ssh-ed25519"


@pytest.mark.parametrize(
    ("url", "kind", "host", "port", "user"),
    [
        ("/srv/git/app.git", "local", None, None, None),
        ("../app.git", "local", None, None, None),
        ("file:///srv/git/app.git", "file", None, None, None),
        ("git://git.example.com/app.git", "git", "git.example.com", 9418, None),
        ("ssh://deploy@git.example.com:2222/app.git", "ssh", "git.example.com", 2222, "deploy"),
        ("git+ssh://git.example.com/app.git", "ssh", "git.example.com", 22, None),
        ("git@github.com:org/app.git", "ssh", "github.com", 22, "git"),
        ("github.com:org/app.git", "ssh", "github.com", 22, None),
        ("https://tok@git.example.com/app.git", "https", "git.example.com", 443, "tok"),
        ("http://127.0.0.1:8080/app.git", "http", "127.0.0.1", 8080, None),
        ("./dir:with/colon", "local", None, None, None),
    ],
)
def test_remote_urls_map_to_their_transport(
    url: str, kind: str, host: str | None, port: int | None, user: str | None
) -> None:
    where = endpoint(url)
    assert (where.kind, where.host, where.port, where.user) == (kind, host, port, user)


# -- failures of the checks themselves must reject, never trust ------------------------------


@needs_sshd
def test_known_hosts_that_cannot_be_read_rejects_the_key_instead_of_trusting_it(
    origin: Origin, tmp_path: Path, sshd: Sshd, network_env: Path
) -> None:
    known_hosts(network_env).mkdir()  # unreadable as a file: the check itself fails
    deploy = deploy_via(origin, tmp_path, sshd.url(origin.bare))
    before, tip = snapshot(deploy), tracking(deploy)
    advance(origin)
    report = gitsafe.pull(deploy)
    assert report.exit_code == 1, report.to_json_text()
    assert report.error is not None and report.error["kind"] == "host-key"
    assert "could not be checked" in report.error["message"]
    assert snapshot(deploy) == before and tracking(deploy) == tip


@needs_sshd
def test_a_new_host_key_that_cannot_be_recorded_is_not_trusted(
    origin: Origin, tmp_path: Path, sshd: Sshd, network_env: Path
) -> None:
    env = {**os.environ, "GITSAFE_KNOWN_HOSTS": "/proc/gitsafe-nowhere/known_hosts"}
    deploy = deploy_via(origin, tmp_path, sshd.url(origin.bare))
    before = snapshot(deploy)
    advance(origin)
    report = gitsafe.pull(deploy, accept_new_host_key=True, env=env)
    assert report.exit_code == 1, report.to_json_text()
    assert report.error is not None and report.error["kind"] == "host-key"
    assert snapshot(deploy) == before


def test_accepted_keys_are_appended_through_a_symlinked_known_hosts_keeping_its_mode(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared_known_hosts"
    shared.write_text("other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB")  # no newline
    shared.chmod(0o600)
    link = tmp_path / "home" / ".ssh" / "known_hosts"
    link.parent.mkdir(parents=True)
    link.symlink_to(shared)
    key = hostkeys.HostKey(public_blob_bytes())
    hostkeys.append(str(link), "127.0.0.1", 2222, key)
    hostkeys.append(str(link), "127.0.0.2", 22, key)
    assert link.is_symlink()
    assert shared.stat().st_mode & 0o777 == 0o600
    lines = shared.read_text().splitlines()
    assert lines[0].startswith("other.example ")
    assert lines[1].startswith("[127.0.0.1]:2222 ssh-ed25519 ")
    assert lines[2].startswith("127.0.0.2 ssh-ed25519 ")


def public_blob_bytes() -> bytes:
    import base64

    return base64.b64decode("AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")


def test_a_proxy_password_in_the_schemeless_form_is_never_shown() -> None:
    from gitsafe.report import redact_url

    assert redact_url("deploy:s3cret@proxy.example:3128") == "deploy:***@proxy.example:3128"
    assert redact_url("git@github.com:org/repo.git") == "git@github.com:org/repo.git"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://h.example/r.git?private_token=s3cret",
            "https://h.example/r.git?private_token=***",
        ),
        ("https://h.example/r.git?s3cret", "https://h.example/r.git?***"),
        ("https://h.example/r.git?a=s3cret&b=2", "https://h.example/r.git?a=***&b=***"),
        ("https://u:pw@h.example/r.git?t=s3cret#s3cret", "https://u:***@h.example/r.git?t=***#***"),
        ("https://h.example/r.git", "https://h.example/r.git"),
        ("ssh://git@h.example/r.git", "ssh://git@h.example/r.git"),
    ],
)
def test_query_values_and_fragments_of_a_remote_url_are_never_shown(url: str, shown: str) -> None:
    from gitsafe.report import redact_url

    assert redact_url(url) == shown


def test_credentials_are_never_sent_to_the_host_a_redirect_points_at(
    origin: Origin, tmp_path: Path, network_env: Path
) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str | None] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="elsewhere"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.2", 0), Elsewhere)
    target = f"http://127.0.0.2:{other.server_address[1]}"

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    first = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    for server in (other, first):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (network_env / ".netrc").write_text("machine 127.0.0.1 login deploy password SECRET_A\n")
        (network_env / ".netrc").chmod(0o600)
        url = f"http://127.0.0.1:{first.server_address[1]}/repo.git"
        deploy = deploy_via(origin, tmp_path, url)
        env = {**os.environ, "GITSAFE_HTTP_USER": "deploy", "GITSAFE_HTTP_PASSWORD": "SECRET_B"}
        report = gitsafe.pull(deploy, env=env)
    finally:
        for server in (first, other):
            server.shutdown()
            server.server_close()
    assert report.exit_code == 1, report.to_json_text()
    assert report.error is not None and report.error["kind"] == "auth"
    assert "redirected" in report.error["message"]
    assert seen and all(header is None for header in seen)
    assert "SECRET" not in report.to_json_text()
