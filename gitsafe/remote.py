"""Choosing REMOTE/BRANCH and fetching it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

import pygit2

from gitsafe.errors import FetchFailed, UsageError
from gitsafe.records import record
from gitsafe.report import redact_url

# The transport (and the credentials it loads, about 5 ms of imports) is imported by
# the functions that fetch: a doctor that does not fetch never needs it.
if TYPE_CHECKING:
    from gitsafe.settings import Network
    from gitsafe.transport import FetchInfo, FetchOptions


@record(frozen=True)
class Source:
    remote: str
    branch: str
    url: str | None

    @property
    def tracking_ref(self) -> str:
        return f"refs/remotes/{self.remote}/{self.branch}"

    @property
    def refspec(self) -> str:
        # Always forced: a force-pushed branch must still be fetched, whatever the configured
        # refspec says (git fetch rejects a non-fast-forward update of a "+"-less refspec).
        return f"+refs/heads/{self.branch}:{self.tracking_ref}"


def current_branch(repo: pygit2.Repository) -> str | None:
    if repo.head_is_detached:
        return None
    try:
        ref = repo.references["HEAD"].target
    except KeyError:
        return None
    if isinstance(ref, str) and ref.startswith("refs/heads/"):
        return ref[len("refs/heads/") :]
    return None


def _upstream(repo: pygit2.Repository, branch: str | None) -> tuple[str, str] | None:
    if branch is None:
        return None
    config = repo.config
    try:
        remote = str(config[f"branch.{branch}.remote"])
        merge = str(config[f"branch.{branch}.merge"])
    except (KeyError, pygit2.GitError):
        return None
    if remote == "." or not merge.startswith("refs/heads/"):
        return None
    return remote, merge[len("refs/heads/") :]


def choose(repo: pygit2.Repository, remote: str | None, branch: str | None) -> Source:
    """REMOTE and BRANCH as given, else the current branch's upstream, else origin/<current>."""
    current = current_branch(repo)
    upstream = _upstream(repo, current)
    if remote is None:
        remote = upstream[0] if upstream else "origin"
    if branch is None:
        if upstream and upstream[0] == remote:
            branch = upstream[1]
        elif current is not None:
            branch = current
        else:
            raise UsageError(
                "HEAD is detached and has no upstream: name the branch, "
                f"e.g. 'gitsafe pull {remote} main'"
            )
    if (
        not branch
        or branch.startswith("-")
        or not pygit2.reference_is_valid_name(f"refs/heads/{branch}")
    ):
        raise UsageError(f"invalid branch name {branch!r}")
    try:
        url = repo.remotes[remote].url
    except (KeyError, ValueError):
        raise UsageError(
            f"unknown remote {remote!r}: no 'remote.{remote}.url' configured"
        ) from None
    return Source(remote, branch, url)


@contextlib.contextmanager
def _preserved(path: str) -> Iterator[None]:
    """Restore ``path`` (or its absence) afterwards: doctor --fetch must not leave FETCH_HEAD.

    Its bytes come back, not its inode or mtime.  libgit2's ``update_fetchhead = 0`` is no way
    around it: ``git_remote_update_tips`` truncates FETCH_HEAD before it reads that flag, so
    the file would be left empty (seen with libgit2 1.9).
    """
    try:
        with open(path, "rb") as f:
            saved: bytes | None = f.read()
    except FileNotFoundError:
        saved = None
    try:
        yield
    finally:
        if saved is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        else:
            with open(path, "wb") as f:
                f.write(saved)


def fetch(
    repo: pygit2.Repository,
    source: Source,
    keep_fetch_head: bool = True,
    options: FetchOptions | None = None,
    info: FetchInfo | None = None,
) -> pygit2.Oid:
    """Fetch BRANCH into its remote-tracking ref; return the tip the server advertised.

    ``info`` (the report's ``fetch`` object) is filled even when the fetch fails.
    """
    from gitsafe import transport
    from gitsafe.credentials import CredentialConfig

    if options is None:
        options = transport.FetchOptions(
            known_hosts=transport.default_known_hosts(os.environ),
            credentials=CredentialConfig(os.environ, os.path.expanduser("~")),
        )
    info = info if info is not None else transport.FetchInfo()
    if not options.config:
        options.config = transport.git_config_subset(repo, source.remote)
    url = source.url or ""
    fetch_head = os.path.join(repo.path, "FETCH_HEAD")
    guard = contextlib.nullcontext() if keep_fetch_head else _preserved(fetch_head)
    with guard:
        heads = transport.fetch(
            repo,
            source.remote,
            url,
            [source.refspec],
            f"gitsafe: fetch {source.remote} {source.branch}",
            options,
            info,
        )
    advertised = heads.get(f"refs/heads/{source.branch}")
    if advertised is None:
        raise FetchFailed(
            f"branch {source.branch!r} not found on remote {source.remote} "
            f"({redact_url(source.url)})"
        )
    tracking = repo.references.get(source.tracking_ref)
    if tracking is None or tracking.target != advertised:
        raise FetchFailed(
            f"fetched {source.tracking_ref} does not match the advertised tip {advertised}"
        )
    return advertised


def fetch_options(
    repo: pygit2.Repository,
    source: Source,
    network: Network,
    env: Mapping[str, str] | None = None,
    progress: bool = False,
    checkpoint: Callable[[], None] = lambda: None,
) -> FetchOptions:
    """The fetch's options from resolved settings; secrets stay in ``env``."""
    from gitsafe.credentials import CredentialConfig
    from gitsafe.transport import FetchOptions, git_config_subset

    env = os.environ if env is None else env
    home = env.get("HOME") or os.path.expanduser("~")
    known_hosts = network.known_hosts.value
    if known_hosts.startswith("~/"):
        known_hosts = os.path.join(home, known_hosts[2:])
    ssh_key = network.ssh_key.value
    if ssh_key and ssh_key.startswith("~/"):
        ssh_key = os.path.join(home, ssh_key[2:])
    return FetchOptions(
        known_hosts=os.path.abspath(known_hosts),
        credentials=CredentialConfig(
            env=env,
            home=home,
            ssh_key=ssh_key,
            ssh_passphrase_env=network.ssh_passphrase_env.value,
            http_user_env=network.http_user_env.value,
            http_password_env=network.http_password_env.value,
        ),
        retries=network.retries.value,
        retry_delay=network.retry_delay.value,
        timeout=network.timeout.value,
        depth=network.depth.value,
        accept_new_host_key=network.accept_new_host_key.value,
        progress=progress,
        checkpoint=checkpoint,
        config=git_config_subset(repo, source.remote),
    )


def tracking_tip(repo: pygit2.Repository, source: Source) -> pygit2.Oid | None:
    ref = repo.references.get(source.tracking_ref)
    if ref is None:
        return None
    target = ref.resolve().target
    return target if isinstance(target, pygit2.Oid) else None
