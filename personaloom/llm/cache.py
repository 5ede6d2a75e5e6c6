"""A diskcache of endpoint replies and embeddings, with an explicit size limit.

Keys are SHA-256 digests of canonical JSON over everything that shapes a reply (model, base
URL without credentials, messages, sampling parameters, schema, strategy): never the API key.
Values are JSON strings, and the cache's ``Disk`` refuses to unpickle anything, so a value
planted in the folder by someone else is a cache miss, never code run. The folder is created
0700.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import diskcache

from personaloom.errors import ConfigError

if TYPE_CHECKING:
    from personaloom.spec import Spec


def default_cache_dir() -> Path:
    env = os.environ.get("PERSONALOOM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "personaloom"


def public_url(url: str | None) -> str | None:
    """A URL without user:password, safe to hash, log or store."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class _NoPickleDisk(diskcache.Disk):
    """diskcache's Disk, except that a pickled value (which personaloom never writes) is
    refused instead of unpickled."""

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode == diskcache.core.MODE_PICKLE:
            raise UnsafeValue("a pickled value in the reply cache (personaloom writes JSON)")
        return super().fetch(mode, filename, value, read)


class UnsafeValue(ValueError):
    """A cache value personaloom did not write: ignored, as a miss."""


class ReplyCache:
    def __init__(self, directory: str | Path, *, size_limit_mb: int = 512):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        self._cache = diskcache.Cache(
            str(self.directory),
            size_limit=size_limit_mb * 2**20,
            eviction_policy="least-recently-used",
            disk=_NoPickleDisk,
        )

    def get(self, key: str) -> Any | None:
        try:
            value = self._cache.get(key)
            return None if value is None else json.loads(value)
        except (ValueError, TypeError):  # UnsafeValue, or JSON that is not
            return None  # planted or damaged: asked again, and overwritten by the reply

    def set(self, key: str, value: Any) -> None:
        self._cache.set(key, json.dumps(value, ensure_ascii=False))

    def close(self) -> None:
        self._cache.close()


def cache_root(spec: Spec) -> Path:
    """The spec's cache folder: ``cache.dir``, else PERSONALOOM_CACHE_DIR or the default."""
    return spec.resolve(spec.cache.dir) if spec.cache.dir else default_cache_dir()


def open_cache(
    spec: Spec, stack: ExitStack | AsyncExitStack, root: Path | None = None
) -> ReplyCache | None:
    """The spec's reply cache (None when disabled), closed when ``stack`` closes; ``root``
    over the spec's folder (a Ray worker opens the coordinator's).

    A cache folder that cannot be used (not a folder, not writable, a damaged database) is a
    configuration problem, named with what to do, before the run directory is made."""
    if not spec.cache.enabled:
        return None
    root = root or cache_root(spec)
    try:
        cache = ReplyCache(root / "replies", size_limit_mb=spec.cache.size_limit_mb)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(
            f"the reply cache at {root / 'replies'} cannot be used ({type(exc).__name__}: {exc}); "
            "fix or remove that folder, point cache.dir or PERSONALOOM_CACHE_DIR elsewhere, "
            "or set cache.enabled: false"
        ) from None
    stack.callback(cache.close)
    return cache
