"""The reply cache never unpickles: a value planted in its folder is a miss, not code run."""

from __future__ import annotations

import os
from pathlib import Path

import diskcache

from personaloom.llm import ReplyCache
from personaloom.runner import run


class _Bomb:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_planted_pickle_is_never_unpickled(tmp_path: Path) -> None:
    folder, marker = tmp_path / "cache", tmp_path / "pwned"
    ReplyCache(folder).close()
    with diskcache.Cache(str(folder)) as planted:  # diskcache's own Disk: pickles
        planted.set("k" * 64, _Bomb(marker))
        planted.set("raw", b'{"raw": "fine"}')
    cache = ReplyCache(folder)
    assert cache.get("k" * 64) is None
    assert not marker.exists(), "the planted value was unpickled"
    assert cache.get("raw") == {"raw": "fine"}, "a JSON value is still read"
    cache.set("k" * 64, {"raw": "real"})
    assert cache.get("k" * 64) == {"raw": "real"}


def test_a_run_over_a_cache_full_of_planted_pickles_runs_and_unpickles_none(
    make_spec, tmp_path: Path
) -> None:
    spec = make_spec()
    first = run(spec, out=tmp_path / "first")  # fills the cache with the real keys
    assert first.status == "complete"
    folder, marker = Path(os.environ["PERSONALOOM_CACHE_DIR"]), tmp_path / "pwned"
    with diskcache.Cache(str(folder / "replies")) as planted:
        keys = list(planted.iterkeys())
        assert keys, "the run used the cache"
        for key in keys:
            planted.set(key, _Bomb(marker))
    second = run(spec, out=tmp_path / "second")
    assert second.status == "complete"
    assert not marker.exists()
    assert second.report["calls"] > 0, "every planted value was a miss, asked again"
