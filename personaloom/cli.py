"""The ``personaloom`` command.

Exit codes: 0 every target met; 1 error; 2 invalid spec, arguments or configuration;
3 a budget ended the run first; 4 the run stalled (nothing accepted for many rounds);
130 interrupted (the run can be resumed with ``--resume``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from personaloom import __version__, data_cli, trace_cli
from personaloom.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, ConfigError
from personaloom.estimate import budget_warning
from personaloom.spec import ROLES, SpecError, load_spec, total_target

EPILOG = """exit codes: 0 all targets met, 1 error, 2 invalid spec/arguments,
3 budget ended the run first, 4 stalled, 130 interrupted (resume with --resume RUN_DIR)"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="personaloom",
        description="Persona-driven synthetic data generation with coverage targets.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"personaloom {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="generate a dataset from a spec", epilog=EPILOG)
    _run_arguments(run)
    run.add_argument("--events", action="store_true", help="JSON-lines events on stdout")

    validate = commands.add_parser("validate", help="check a spec and the files it names")
    validate.add_argument("spec", type=Path)

    estimate = commands.add_parser(
        "estimate",
        help="calls, tokens and cost to meet a spec's targets, with no LLM call",
        epilog="Every figure rests on the assumptions it prints; see docs/cli.md#estimate.",
    )
    estimate.add_argument("spec", type=Path)
    estimate.add_argument(
        "--acceptance-rate",
        type=float,
        metavar="P",
        help="share of attempts (a writer and a critic call) that pass (default 0.7)",
    )
    estimate.add_argument(
        "--words", type=float, metavar="N", help="words in the main text field of a sample"
    )
    estimate.add_argument("--base-url", help="OpenAI-compatible endpoint for every role")
    estimate.add_argument("--model", help="model name for every role")
    estimate.add_argument("--json", action="store_true", help="the figures as JSON on stdout")

    init = commands.add_parser("init", help="write a commented starter spec and corpus")
    init.add_argument("directory", nargs="?", type=Path, default=Path("."))
    init.add_argument("--force", action="store_true", help="overwrite an existing spec.yaml")

    serve = commands.add_parser("serve", help="keep the embedded local model running")
    serve.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")

    report = commands.add_parser(
        "report", help="rewrite report.json, report.md and coverage.png of a run"
    )
    report.add_argument("run_dir", type=Path, help="a run directory")
    report.add_argument(
        "--chroma-url", help="the Chroma server holding the run's store, if it moved"
    )
    report.add_argument(
        "--baseline",
        type=int,
        metavar="N",
        help="also ask the run's writer model for N samples (2 or more) with the task "
        "instruction alone (no persona, traits or words) and compare their diversity",
    )
    report.add_argument(
        "--base-url", help="with --baseline: the endpoint to ask (default: the spec's writer)"
    )
    report.add_argument("--model", help="with --baseline: the model to ask")

    tui = commands.add_parser(
        "tui", help="run a spec supervised in the terminal dashboard", epilog=EPILOG
    )
    _run_arguments(tui)
    tui.add_argument("--review", action="store_true", help="start in review mode")

    watch = commands.add_parser(
        "watch", help="follow a run started elsewhere in the dashboard, read-only"
    )
    watch.add_argument("run_dir", type=Path, help="a run directory, running or finished")

    trace_cli.add_parser(commands)
    data_cli.add_parsers(commands)
    _memory_parser(commands)
    return parser


def _memory_parser(commands: Any) -> None:
    memory = commands.add_parser(
        "memory", help="list, show or drop novelty memories (novelty.memory)"
    )
    actions = memory.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every memory, with its size")
    show = actions.add_parser("show", help="a memory's size, embedder and runs")
    show.add_argument("name")
    drop = actions.add_parser("drop", help="delete a memory (asks first, or --yes)")
    drop.add_argument("name")
    drop.add_argument("--yes", action="store_true", help="do not ask")
    for action in (listing, show, drop):
        action.add_argument(
            "--chroma-url",
            help="memories on this Chroma server (default: the local memory folder, "
            "$PERSONALOOM_MEMORY_DIR)",
        )


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    """What ``run`` and ``tui`` both take: a spec or a run to resume, and endpoint overrides."""
    parser.add_argument("spec", nargs="?", type=Path, help="the spec YAML (optional with --resume)")
    parser.add_argument("--out", type=Path, help="run directory (default runs/<name>-<time>)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a stopped run")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint for every role")
    parser.add_argument("--model", help="model name for every role")
    parser.add_argument("--embeddings", choices=["local", "openai"], help="embedding provider")
    parser.add_argument(
        "--chroma-url", help="a Chroma server for the novelty store (over novelty.store)"
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="run the drafts on N Ray worker actors (a local Ray cluster unless --ray-address; "
        "needs personaloom[ray])",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="join this Ray cluster (default: $RAY_ADDRESS, else start one on 127.0.0.1)",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return value


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(trace_cli.normalise(sys.argv[1:] if argv is None else argv))
    handler = {
        "run": _run,
        "validate": _validate,
        "estimate": _estimate,
        "init": _init,
        "serve": _serve,
        "report": _report,
        "traces": trace_cli.main,
        "tui": _tui,
        "watch": _tui,
        "export": data_cli.export_main,
        "mix": data_cli.mix_main,
        "memory": _memory,
    }[args.command]
    try:
        return handler(args)
    except (SpecError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `personaloom traces export RUN | head`: the reader has enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - any other failure: one line, exit 1
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _validate(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    targets = spec.targets()
    print(f"{args.spec}: ok — {spec.name}, {total_target(spec)} samples needed at least")
    for trait, values in targets.items():
        print(f"  {trait}: " + ", ".join(f"{v}={t}" for v, t in values.items()))
    for source in spec.personas.pool:
        sample = f", sample {source.sample}" if source.sample else ", every row"
        columns = source.trait_columns()
        traits = f"; traits {', '.join(columns)} from its columns" if columns else ""
        print(f"  pool: {source.path}, field {source.field!r}{sample}{traits}")
    for item in spec.novelty.avoid:
        fields = f", field {', '.join(map(repr, item.fields()))}" if item.field else ""
        print(f"  avoid: {item.path}{fields}")
    if spec.novelty.avoid:
        words = f"{spec.novelty.ngram} words in a row" if spec.novelty.ngram else "no n-gram"
        print(f"  contaminated: sharing {words}, or similarity >= {spec.novelty.threshold:g}")
    endpoints = None
    if spec.prices or spec.budget.max_cost is not None:
        endpoints = _validate_prices(spec)
    if warning := budget_warning(spec, endpoints):
        print(f"warning: {warning}", file=sys.stderr)
    from personaloom.corpus import MAX_TEXT_CHARS, Corpus

    if long := Corpus(spec).long_texts():
        print(
            f"note: {long} corpus text(s) are longer than {MAX_TEXT_CHARS} characters; "
            f"personas are mined from the first {MAX_TEXT_CHARS} of each"
        )
    return EXIT_OK


def _validate_prices(spec: Any) -> dict[str, Any]:
    """Prices against the models the roles resolve to here (the environment included); the
    roles' endpoints."""
    from personaloom.endpoints import check_prices, model_name, resolve_endpoints

    endpoints, _ = resolve_endpoints(spec)
    if problems := check_prices(spec, endpoints):
        raise SpecError(spec.source, problems)
    for model, price in spec.prices.items():
        roles = [r for r in ROLES if model_name(endpoints[r]) == model]
        used = f" ({', '.join(roles)})" if roles else " (no role calls it with this environment)"
        print(f"  price: {model}{used}: {price.input:g} in, {price.output:g} out per 1M tokens")
    if spec.budget.max_cost is not None:
        print(f"  max_cost: {spec.budget.max_cost:g}")
    return endpoints


def _estimate(args: argparse.Namespace) -> int:
    from personaloom.endpoints import Overrides, check_prices, resolve_endpoints
    from personaloom.estimate import ASSUMED_ACCEPTANCE, estimate, render
    from personaloom.pool import load_pool

    rate = ASSUMED_ACCEPTANCE if args.acceptance_rate is None else args.acceptance_rate
    if not 0 < rate <= 1:
        raise ConfigError(
            f"--acceptance-rate is a share of attempts: above 0, at most 1 (got {rate:g})"
        )
    if args.words is not None and args.words <= 0:
        raise ConfigError(f"--words must be above 0 (got {args.words:g})")
    spec = load_spec(args.spec)
    endpoints, _ = resolve_endpoints(spec, Overrides(base_url=args.base_url, model=args.model))
    if problems := check_prices(spec, endpoints):
        raise SpecError(spec.source, problems)
    pool = [p["persona"] for source in load_pool(spec) for p in source.personas]
    result = estimate(spec, endpoints, acceptance=rate, words=args.words, pool_personas=pool)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(render(spec, result))
    return EXIT_OK


def _init(args: argparse.Namespace) -> int:
    from personaloom.starter import write_starter

    for path in write_starter(args.directory, force=args.force):
        print(f"wrote {path}")
    print(f"next: personaloom validate {args.directory / 'spec.yaml'}")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from personaloom.local.server import serve_forever

    serve_forever(args.port)
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from personaloom.report import regenerate

    url = chroma_url(args)
    if args.baseline is None:
        if args.base_url or args.model:
            raise ConfigError(
                "--base-url and --model choose the baseline's endpoint: use them with --baseline N"
            )
    else:
        if args.baseline < 2:
            raise ConfigError(
                f"--baseline N: N is the number of baseline samples, at least 2 (got "
                f"{args.baseline}): the diversity measures compare samples with each other"
            )
        from personaloom import baseline
        from personaloom.endpoints import Overrides

        _own_interrupts()
        overrides = Overrides(base_url=args.base_url, model=args.model)
        try:
            collected = asyncio.run(
                baseline.collect(
                    args.run_dir,
                    args.baseline,
                    overrides=overrides,
                    progress=baseline.Progress(args.baseline),
                )
            )
        except KeyboardInterrupt:
            print(
                "\ninterrupted: the baseline replies already fetched are in the reply cache; "
                "ask again to continue from them (report.json was not changed)",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
    path = regenerate(args.run_dir, url=url)
    if args.baseline is not None:
        report = json.loads(path.read_text(encoding="utf-8"))
        for line in baseline.summary(report["baseline"], collected):
            print(line, file=sys.stderr)
    print(path)
    return EXIT_OK


def chroma_url(args: argparse.Namespace) -> str | None:
    """``--chroma-url``, checked like ``novelty.store``."""
    from personaloom.spec import server_url

    if not getattr(args, "chroma_url", None):
        return None
    try:
        return server_url(args.chroma_url)
    except ValueError as exc:
        raise ConfigError(f"--chroma-url {args.chroma_url}: {exc}") from None


def _memory(args: argparse.Namespace) -> int:
    from personaloom import memory

    url = chroma_url(args)
    if args.action == "list":
        found = memory.list_memories(url)
        where = f"on the Chroma server at {url}" if url else f"in {memory.memory_dir()}"
        if not found:
            print(f"no novelty memory {where}")
        for info in found:
            print(_memory_line(info))
        return EXIT_OK
    if args.action == "show":
        info, runs = memory.show_memory(args.name, url)
        print(_memory_line(info))
        print(f"  embedder: {info.embedder or 'unknown'}; created {info.created or 'unknown'}")
        for share in runs:
            print(
                f"  {share.run}: {share.samples} samples ({share.run_dir or 'directory unknown'})"
            )
        return EXIT_OK
    info, runs = memory.show_memory(args.name, url)
    if not args.yes:
        question = (
            f"drop novelty memory {info.name} ({info.samples} samples of {len(runs)} runs, "
            f"{info.where})? [y/N] "
        )
        if not sys.stdin.isatty():
            raise ConfigError(
                f"memory drop {args.name}: confirm with --yes (stdin is not a terminal)"
            )
        if input(question).strip().lower() not in ("y", "yes"):
            print("kept")
            return EXIT_OK
    dropped = memory.drop_memory(args.name, url)
    print(f"dropped novelty memory {dropped.name} ({dropped.samples} samples, {dropped.where})")
    return EXIT_OK


def _memory_line(info: Any) -> str:
    size = f"{info.samples} samples" if info.samples is not None else info.note
    return f"{info.name}: {size} ({info.where})"


def _run(args: argparse.Namespace) -> int:
    if args.spec is None and args.resume is None:
        raise ConfigError("give a spec, or --resume RUN_DIR")
    if args.out is not None and args.resume is not None:
        raise ConfigError("--out and --resume exclude each other: a resumed run stays in RUN_DIR")
    from personaloom.endpoints import Overrides
    from personaloom.runner import arun

    events_mode = args.events or not sys.stdout.isatty()
    overrides = Overrides(
        base_url=args.base_url,
        model=args.model,
        embeddings=args.embeddings,
        chroma_url=chroma_url(args),
        workers=args.workers or (1 if args.ray_address else None),
        ray_address=args.ray_address,
    )
    listener = _print_event if events_mode else None
    progress = None
    if not events_mode:
        from personaloom.progress import ProgressDisplay

        progress = ProgressDisplay()
        listener = progress.on_event
    _own_interrupts()
    try:
        result = asyncio.run(
            arun(
                args.spec,
                out=args.out,
                resume=args.resume,
                overrides=overrides,
                listeners=[listener] if listener else [],
            )
        )
    except KeyboardInterrupt:
        if progress:
            progress.close()
        where = args.resume or args.out or "the run directory printed above"
        print(f"interrupted: continue with  personaloom run --resume {where}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:
        if progress:
            progress.close()
        raise
    if progress:
        progress.close()
        progress.summary(result)
    return result.exit_code


def _tui(args: argparse.Namespace) -> int:
    """``tui`` and ``watch``: Textual is imported here only, so ``--help`` stays light."""
    try:
        from personaloom.tui.run import main as tui_main
    except ModuleNotFoundError as exc:
        if exc.name != "textual":
            raise
        raise ConfigError("the dashboard needs Textual: pip install 'personaloom[tui]'") from None
    return tui_main(args)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _own_interrupts() -> None:
    """Ctrl-C and SIGTERM end the work below as an interrupt (exit 130, resumable).

    SIGINT goes back to Python's own handler first: ``asyncio.run`` cancels its task on Ctrl-C
    only when it finds that handler in place, so one left behind by a host program or a library
    would otherwise make Ctrl-C do nothing until the work is over."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)


def _print_event(event: dict[str, Any]) -> None:
    print(json.dumps(event, ensure_ascii=False, default=str), flush=True)


if __name__ == "__main__":
    sys.exit(main())
