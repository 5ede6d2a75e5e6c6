"""``personaloom tui`` and ``personaloom watch``: check the arguments before the screen is
taken over (a bad spec is an error on the terminal, not in a dashboard), run the app, and
say afterwards where the run is and how to continue it."""

from __future__ import annotations

import argparse
import sys

from personaloom.endpoints import Overrides
from personaloom.errors import EXIT_INTERRUPTED, EXIT_OK, ConfigError
from personaloom.spec import load_spec
from personaloom.store import load_run


def main(args: argparse.Namespace) -> int:
    from personaloom.cli import chroma_url
    from personaloom.tui.app import PersonaloomApp

    if args.command == "watch":
        load_run(args.run_dir)  # a clear error for a directory that is not a run
        PersonaloomApp(watch=args.run_dir).run()
        return EXIT_OK
    if args.spec is None and args.resume is None:
        raise ConfigError("give a spec, or --resume RUN_DIR")
    if args.out is not None and args.resume is not None:
        raise ConfigError("--out and --resume exclude each other: a resumed run stays in RUN_DIR")
    if args.spec is not None:
        load_spec(args.spec)
    if args.resume is not None:
        load_run(args.resume)
    app = PersonaloomApp(
        spec=args.spec,
        out=args.out,
        resume=args.resume,
        overrides=Overrides(
            base_url=args.base_url,
            model=args.model,
            embeddings=args.embeddings,
            chroma_url=chroma_url(args),
            workers=args.workers or (1 if args.ray_address else None),
            ray_address=args.ray_address,
        ),
        review=args.review,
    )
    code = app.run()
    code = app.exit_code if code is None else code
    where = app.run_dir
    if app.result is not None:
        result = app.result
        reason = f" ({result.stop_reason})" if result.stop_reason else ""
        print(f"{result.status}{reason}: {result.run_dir}", file=sys.stderr)
        if result.status == "stopped":
            print(f"continue with  personaloom tui --resume {result.run_dir}", file=sys.stderr)
    elif app.error is not None:
        print(f"error: {app.error}", file=sys.stderr)
    elif code == EXIT_INTERRUPTED and where is not None:
        print(f"interrupted: continue with  personaloom tui --resume {where}", file=sys.stderr)
    return code
