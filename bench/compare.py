"""One benchmark on two versions of personaloom, side by side: a git revision against the
working tree, their runs interleaved so the shared machine's noise hits both alike.

    python bench/compare.py overhead --base 03a5db0 [--rounds 2] [-- --repeats 3]

The base is exported with ``git archive`` into a temporary folder laid out as the installed
package (``personaloom/`` with ``agents/``, ``graphs/``, ``prompts/``, ``tui/`` inside) and
put first on ``PYTHONPATH``; both sides run the working tree's benchmark script, so they are
measured the same way. Prints each headline figure per side (median over rounds) and the
ratio, and writes ``<out>/compare_<benchmark>.json`` with every run's results.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common

NAMESPACE = ("agents", "graphs", "prompts", "tui")  # installed as personaloom.<name>

# The figures compared, per benchmark: (label, path into its JSON results).
HEADLINES: dict[str, list[tuple[str, tuple[Any, ...]]]] = {
    "overhead": [
        ("ms per sample, concurrency 1", ("concurrency_1", "wall_ms_per_sample_median")),
        ("ms per sample, concurrency 4", ("concurrency_4", "wall_ms_per_sample_median")),
        ("ms per sample, endpoint embedding", ("endpoint_embeddings", "wall_ms_per_sample_median")),
    ],
    "concurrency": [
        (f"samples/s at concurrency {level}", ("levels", index, "samples_per_s"))
        for index, level in enumerate((1, 4, 16, 64))
    ],
    "cache_resume": [
        ("first run, s", ("first_wall_s",)),
        ("second run, s", ("second_wall_s",)),
    ],
    # With --skip-local (rows: fixed 16, fixed 64, long tail 16, cpu).
    "engines": [
        ("stream, 200 ms endpoint, c16: share of ideal", ("rows", 0, "stream", "efficiency")),
        ("stream, 200 ms endpoint, c64: share of ideal", ("rows", 1, "stream", "efficiency")),
        ("stream, long tail, c16: share of ideal", ("rows", 2, "stream", "efficiency")),
        ("stream, c16, generating", ("rows", 0, "stream", "efficiency_generation")),
        ("stream, c64, generating", ("rows", 1, "stream", "efficiency_generation")),
        ("stream, long tail, c16, generating", ("rows", 2, "stream", "efficiency_generation")),
        ("stream, CPU ms per sample, c1", ("rows", 3, "stream", "cpu_ms_per_sample")),
        ("batch, CPU ms per sample, c1", ("rows", 3, "batch", "cpu_ms_per_sample")),
    ],
}


def export(revision: str, folder: Path) -> Path:
    """The revision's files, laid out as the installed package; returns the PYTHONPATH."""
    archive = subprocess.run(
        ["git", "-C", str(common.REPO), "archive", "--format=tar", revision],
        capture_output=True,
        check=True,
    ).stdout
    source = folder / "source"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(source, filter="data")
    package = folder / "path" / "personaloom"
    shutil.copytree(source / "personaloom", package)
    for name in NAMESPACE:
        if (source / name).is_dir():
            shutil.copytree(source / name, package / name)
    return folder / "path"


def run_once(name: str, pythonpath: Path | None, out: Path, extra: list[str]) -> dict[str, Any]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    else:
        env.pop("PYTHONPATH", None)
    command = [sys.executable, str(common.BENCH_DIR / f"{name}.py"), "--out", str(out), *extra]
    # Not from the repository: its personaloom/ folder would shadow the base on sys.path.
    done = subprocess.run(command, env=env, cwd=out, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed ({'base' if pythonpath else 'head'}):\n{done.stderr}")
    return json.loads((out / f"{name}.json").read_text())


def dig(data: Any, path: tuple[Any, ...]) -> float | None:
    for key in path:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data if isinstance(data, (int, float)) else None


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("benchmark", choices=sorted(HEADLINES))
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=2, help="runs per side, interleaved")
    parser.epilog = "Arguments after -- go to the benchmark."
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    started = time.perf_counter()
    extra = [*argv[split + 1 :], *(["--quick"] if args.quick else [])]
    runs: dict[str, list[dict[str, Any]]] = {"base": [], "head": []}
    with tempfile.TemporaryDirectory(prefix="personaloom-compare-") as tmp:
        base_path = export(args.base, Path(tmp))
        for round_ in range(args.rounds):
            for side, path in (("base", base_path), ("head", None)):
                out = Path(tmp) / f"{side}-{round_}"
                out.mkdir()
                print(f"round {round_ + 1}/{args.rounds}: {side}", file=sys.stderr, flush=True)
                runs[side].append(run_once(args.benchmark, path, out, extra))
    rows, figures = [], []
    for label, path in HEADLINES[args.benchmark]:
        base = [v for r in runs["base"] if (v := dig(r, path)) is not None]
        head = [v for r in runs["head"] if (v := dig(r, path)) is not None]
        if not base or not head:
            continue
        b, h = common.median(base), common.median(head)
        figures.append({"figure": label, "base": base, "head": head, "ratio": h / b if b else None})
        rows.append([label, f"{b:,.2f}", f"{h:,.2f}", f"{h / b:.2f}x" if b else "-"])
    print(
        f"\n{args.benchmark}: {args.base} (base) against the working tree (head), medians of "
        f"{args.rounds} interleaved rounds\n"
    )
    print(common.table(["figure", "base", "head", "head/base"], rows))
    data = {"base": args.base, "rounds": args.rounds, "figures": figures, "runs": runs}
    path = common.write_results(args.out, f"compare_{args.benchmark}", data, started)
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
