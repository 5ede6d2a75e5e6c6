"""Run every benchmark (``make bench``): each ``bench/<name>.py`` that defines ``main``.

Each runs in its own process (so one's memory, threads and Chroma clients do not weigh on
the next), in the order below and then any other script found, with its output shown as it
comes, and given ``--out`` and ``--quick`` if it takes them (it builds its parser with
``_common.parser``). At the end: the wall time of each, and ``<out>/run_all.json``.

    python bench/run_all.py [--quick] [--out DIR] [--only overhead,concurrency]
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import _common as common

ORDER = ["overhead", "concurrency", "novelty_scale", "cache_resume", "coverage_efficiency"]
# Benchmarks with their own make target: the embedded model makes them too slow for `make bench`.
SEPARATE = ("engines", "persona_quality", "soak", "workers")  # their own make targets
_MAIN = re.compile(r"^def main\(", re.MULTILINE)
_CONVENTIONS = re.compile(r"\bcommon\.parser\(")  # takes --out DIR and --quick


def scripts() -> list[str]:
    """Benchmark names: files of bench/ not starting with "_" that define ``main``."""
    found = {
        path.stem
        for path in common.BENCH_DIR.glob("*.py")
        if not path.stem.startswith("_")
        and path.stem not in ("run_all", "compare")  # tools, not benchmarks
        and path.stem not in SEPARATE
        and _MAIN.search(path.read_text(encoding="utf-8"))
    }
    return [name for name in ORDER if name in found] + sorted(found - set(ORDER))


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated benchmark names")
    args = parser.parse_args(argv)
    names = scripts()
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"unknown benchmarks {unknown}; there are {names}")
        names = [n for n in names if n in wanted]
    started = time.perf_counter()
    rows, failed = [], []
    for name in names:
        path = common.BENCH_DIR / f"{name}.py"
        command = [sys.executable, str(path)]
        print(f"\n=== {name} ===", flush=True)
        if _CONVENTIONS.search(path.read_text(encoding="utf-8")):
            command += ["--out", str(args.out)] + (["--quick"] if args.quick else [])
        else:
            print("(not on _common.parser yet, see bench/README.md: run with its own defaults)")
        began = time.perf_counter()
        code = subprocess.run(command).returncode
        seconds = time.perf_counter() - began
        rows.append([name, seconds, "ok" if code == 0 else f"exit {code}"])
        if code:
            failed.append(name)
    total = time.perf_counter() - started
    print("\n=== summary ===")
    print(common.table(["benchmark", "wall s", "result"], [*rows, ["total", total, ""]]))
    common.write_results(
        args.out,
        "run_all",
        {"benchmarks": {name: {"seconds": s, "result": r} for name, s, r in rows}},
        started,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
