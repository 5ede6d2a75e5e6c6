"""Deterministic ids and seeds: the same spec and seed make the same requests, so a rerun is
served from the cache and a resumed node recreates the same ids instead of duplicates."""

from __future__ import annotations

import hashlib


def stable_seed(*parts: object) -> int:
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def short_id(prefix: str, *parts: object) -> str:
    text = "\x1f".join(str(p) for p in parts)
    return prefix + hashlib.sha256(text.encode()).hexdigest()[:10]
