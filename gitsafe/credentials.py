"""Credentials for libgit2, each offered once.

libgit2 calls the credentials callback again after every rejection, for as long as the callback
answers, so a wrong password is retried forever.  :class:`Credentials` keeps an ordered list of
what is available (ssh-agent, a key file, default keys; environment variables, ``~/.netrc``),
hands out each item once and then fails with a message naming what was tried — never the
secret itself.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import pygit2
from pygit2.enums import CredentialType

from gitsafe.errors import FetchFailed
from gitsafe.records import field, record

DEFAULT_SSH_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
# When only a token is given, some user name must go with it; GitHub and Gitea accept any,
# this one is GitHub's documented choice.
TOKEN_USER = "x-access-token"
# A hard cap on top of "each source once": libgit2 must never loop, whatever the list holds.
MAX_ATTEMPTS = 8


class AuthFailed(FetchFailed):
    """The server rejected every credential gitsafe had (never retried)."""

    kind = "auth"


@record(frozen=True)
class CredentialConfig:
    """Where credentials come from; the secrets themselves stay in the environment."""

    env: Mapping[str, str]
    home: str
    ssh_key: str | None = None
    ssh_user: str | None = None
    ssh_passphrase_env: str = "GITSAFE_SSH_PASSPHRASE"
    http_user_env: str = "GITSAFE_HTTP_USER"
    http_password_env: str = "GITSAFE_HTTP_PASSWORD"


@record
class _Candidate:
    label: str  # what the report and messages may show
    make: Callable[[str], Any]  # user name -> pygit2 credential object


def _url_host(url: str) -> str | None:
    """The host a credential request is for (None when the URL has no recognisable host)."""
    if "://" in url:
        try:
            return (urlsplit(url).hostname or "").lower() or None
        except ValueError:
            return None
    match = re.match(r"^(?:[^@/]+@)?(\[[^\]]+\]|[^:/]+):", url)
    return match.group(1).strip("[]").lower() if match else None


@record
class Credentials:
    config: CredentialConfig
    host: str
    calls: int = 0
    tried: list[str] = field(default_factory=list)
    _queue: list[_Candidate] | None = None
    _kind: str | None = None

    @property
    def used(self) -> str | None:
        """The credential handed out last: after a successful fetch, the one that worked."""
        return self.tried[-1] if self.tried else None

    def __call__(self, url: str, username_from_url: str | None, allowed: CredentialType) -> Any:
        self.calls += 1
        if self.calls > MAX_ATTEMPTS:
            raise self._failure(url)
        asking = _url_host(url)
        if asking is not None and self.host and asking != self.host.lower():
            # libgit2 follows a redirect to another host; the secrets belong to the remote's.
            raise AuthFailed(
                f"{self.host} redirected to {asking}, which asks for credentials: gitsafe sends "
                "credentials only to the host named in the remote URL"
            )
        if allowed & CredentialType.USERNAME:
            # ssh without a user in the URL: libgit2 asks for the name before any key.
            return pygit2.Username(self._ssh_user(username_from_url))
        if allowed & (CredentialType.SSH_KEY | CredentialType.SSH_CUSTOM):
            queue = self._ensure("ssh", self._ssh_candidates)
            user = self._ssh_user(username_from_url)
        elif allowed & CredentialType.USERPASS_PLAINTEXT:
            queue = self._ensure("http", lambda: self._http_candidates(username_from_url))
            user = username_from_url or ""
        else:
            raise AuthFailed(
                f"{self.host} asks for a kind of authentication gitsafe cannot provide "
                f"({allowed!r}); use an SSH key or HTTP basic auth/token"
            )
        if not queue:
            raise self._failure(url)
        candidate = queue.pop(0)
        self.tried.append(candidate.label)
        return candidate.make(user)

    def _ensure(self, kind: str, build: Callable[[], list[_Candidate]]) -> list[_Candidate]:
        if self._queue is None or self._kind != kind:
            self._queue, self._kind = build(), kind
        return self._queue

    def _ssh_user(self, from_url: str | None) -> str:
        if from_url:
            return from_url
        if self.config.ssh_user:
            return self.config.ssh_user
        # Like ssh: the local user name when neither the URL nor the config name one.
        return pwd.getpwuid(os.getuid()).pw_name

    def _ssh_candidates(self) -> list[_Candidate]:
        env = self.config.env
        found: list[_Candidate] = []
        sock = env.get("SSH_AUTH_SOCK")
        if sock and os.path.exists(sock):
            found.append(_Candidate("ssh-agent", pygit2.KeypairFromAgent))
        passphrase = env.get(self.config.ssh_passphrase_env, "")
        if self.config.ssh_key:
            keys = [os.path.expanduser(self.config.ssh_key)]
        else:
            ssh_dir = os.path.join(self.config.home, ".ssh")
            keys = [os.path.join(ssh_dir, name) for name in DEFAULT_SSH_KEYS]
            keys = [k for k in keys if os.path.isfile(k)]
        for key in keys:
            pub = f"{key}.pub" if os.path.isfile(f"{key}.pub") else None

            def make(user: str, key: str = key, pub: str | None = pub) -> Any:
                return pygit2.Keypair(user, pub, key, passphrase)

            found.append(_Candidate(f"ssh-key:{key}", make))
        return found

    def _http_candidates(self, username_from_url: str | None) -> list[_Candidate]:
        env = self.config.env
        found: list[_Candidate] = []
        password = env.get(self.config.http_password_env)
        if password:
            name = env.get(self.config.http_user_env) or username_from_url or TOKEN_USER
            label = f"env:{self.config.http_user_env}/{self.config.http_password_env}"
            found.append(_Candidate(label, lambda _user: pygit2.UserPass(name, password)))
        entry = self._netrc()
        if entry is not None:
            login, secret = entry
            found.append(_Candidate("netrc", lambda _user: pygit2.UserPass(login, secret)))
        return found

    def _netrc(self) -> tuple[str, str] | None:
        path = os.path.join(self.config.home, ".netrc")
        if not os.path.isfile(path):
            return None
        import netrc  # here: only an http(s) fetch asking for credentials reads it

        try:
            auth = netrc.netrc(path).authenticators(self.host)
        except (netrc.NetrcParseError, OSError):
            return None
        if auth is None or not auth[2]:
            return None
        return auth[0] or TOKEN_USER, auth[2]

    def _failure(self, url: str) -> AuthFailed:
        if self._kind == "ssh":
            hint = (
                "load a key into ssh-agent, or set GITSAFE_SSH_KEY (git config gitsafe.sshKey) "
                f"and its passphrase in ${self.config.ssh_passphrase_env}"
            )
        else:
            hint = (
                f"set ${self.config.http_user_env} and ${self.config.http_password_env} "
                "(or a token in the latter), or add the host to ~/.netrc"
            )
        tried = ", ".join(self.tried) if self.tried else "nothing was configured"
        return AuthFailed(f"authentication to {self.host} failed (tried: {tried}); {hint}")
