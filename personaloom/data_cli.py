"""``personaloom export`` and ``personaloom mix``: data out of a run, and into a training set.

Both are readers of run directories; the work is in ``personaloom.export`` and
``personaloom.mix``. Heavy imports (pyarrow, datasets, the embedders) wait for the command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EXPORT_EPILOG = """formats: parquet (data/train-*.parquet), hf (a folder datasets.load_from_disk
opens), jsonl (data/train.jsonl), chat (data/train.jsonl of {"messages": [...]}, needs --chat).
Every export has a dataset card, README.md, in the Hugging Face Hub's format; upload the
folder with: hf upload USER/NAME OUT --repo-type dataset   (see docs/export.md)"""

MIX_EPILOG = """The synthetic share (synthetic / all records) never exceeds
--max-synthetic-share; synthetic samples that near-duplicate a real record (the run's
embeddings and novelty.threshold) are dropped first. Writes OUT/train.jsonl,
OUT/composition.json and OUT/dropped.jsonl (see docs/export.md#personaloom-mix)."""


def add_parsers(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export",
        help="write a run's samples as Parquet, a datasets folder, JSONL or chat JSONL, with a card",
        epilog=EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("run_dir", type=Path, help="a run directory")
    export.add_argument(
        "--format", choices=["parquet", "hf", "jsonl", "chat"], default="parquet", dest="fmt"
    )
    export.add_argument("--out", type=Path, required=True, help="folder to write (new or empty)")
    export.add_argument("--force", action="store_true", help="write into a non-empty folder")
    export.add_argument(
        "--chat",
        metavar="ROLE=FIELD,...",
        help="chat format: output fields as messages, in order, e.g. user=question,assistant=answer",
    )
    export.add_argument("--system", help="chat format: a system message for every record")
    export.add_argument(
        "--license", default="unknown", help="the card's license id, e.g. cc-by-4.0 (unknown)"
    )
    export.add_argument(
        "--task-category",
        action="append",
        dest="task_categories",
        metavar="NAME",
        help="the card's task category (repeatable; default text-generation)",
    )
    export.add_argument(
        "--shard-rows", type=int, default=50_000, help="parquet: rows per shard (50000)"
    )

    mix = commands.add_parser(
        "mix",
        help="mix real records with runs' samples under a cap on the synthetic share",
        epilog=MIX_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mix.add_argument(
        "--real",
        nargs="+",
        action="extend",
        type=Path,
        required=True,
        metavar="FILE",
        help="real records: .jsonl, .csv or .parquet",
    )
    mix.add_argument(
        "--synthetic",
        nargs="+",
        action="extend",
        type=Path,
        required=True,
        metavar="RUN",
        help="run directories whose accepted samples are mixed in",
    )
    mix.add_argument(
        "--max-synthetic-share",
        type=float,
        required=True,
        metavar="SHARE",
        help="the most the synthetic records may be of the whole, 0 to 1 (e.g. 0.3)",
    )
    mix.add_argument("--out", type=Path, required=True, help="folder to write (new or empty)")
    mix.add_argument(
        "--field",
        metavar="OUTPUT=REAL,...",
        help="which field of the real records holds each output field (default: the same name)",
    )
    mix.add_argument("--seed", type=int, default=0, help="seed of the sampling and shuffle (0)")
    mix.add_argument("--force", action="store_true", help="write into a non-empty folder")


def export_main(args: argparse.Namespace) -> int:
    from personaloom.export import export

    result = export(
        args.run_dir,
        args.fmt,
        args.out,
        force=args.force,
        chat=args.chat,
        system=args.system,
        license=args.license,
        task_categories=args.task_categories,
        shard_rows=args.shard_rows,
    )
    print(f"exported {result.rows} samples ({args.fmt}) to {result.out}")
    for name in result.files:
        print(f"  {name}")
    return 0


def mix_main(args: argparse.Namespace) -> int:
    from personaloom.mix import mix, render_composition

    composition = mix(
        args.real,
        args.synthetic,
        max_share=args.max_synthetic_share,
        out=args.out,
        fields=args.field,
        seed=args.seed,
        force=args.force,
    )
    print(render_composition(composition), end="")
    return 0
