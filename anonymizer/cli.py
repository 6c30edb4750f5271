"""`fhir-anonymize` (also `python -m anonymizer`): CONTRACT section 4."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import date
from importlib import resources
from pathlib import Path

from anonymizer.bulk import BulkOptions, run_folder
from anonymizer.config import read_configuration_text
from anonymizer.engine import Engine
from anonymizer.errors import ConfigurationError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DROPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
SUBCOMMANDS = ("demo", "validate", "watch", "verify", "share")
log = logging.getLogger("anonymizer")


def shipped_config(name: str = "safe-harbor.json") -> Path:
    return Path(str(resources.files("anonymizer") / "configs" / name))


def resolve_config(option: str | None) -> Path:
    if option:
        return Path(option)
    if os.environ.get("ANONYMIZER_CONFIG"):
        return Path(os.environ["ANONYMIZER_CONFIG"])
    return shipped_config()


def _reference_date(text: str | None) -> date | None:
    text = text or os.environ.get("ANONYMIZER_REFERENCE_DATE")
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigurationError(f"--reference-date must be YYYY-MM-DD, not {text!r}") from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _anonymize_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fhir-anonymize",
        description="De-identify FHIR R4 resources with a Microsoft anonymizer configuration. "
        f"Subcommands: {', '.join(SUBCOMMANDS)} (fhir-anonymize SUBCOMMAND --help).",
    )
    p.add_argument("-i", "--inputFolder", required=True, help="folder of input files")
    p.add_argument("-o", "--outputFolder", required=True, help="folder for the output (created)")
    p.add_argument(
        "-c",
        "--configFile",
        help="configuration (default: $ANONYMIZER_CONFIG, else the shipped Safe Harbor configuration)",
    )
    p.add_argument("-b", "--bulkData", action="store_true", help="NDJSON mode: every *.ndjson file")
    p.add_argument("-s", "--skip", action="store_true", help="skip files whose output exists")
    p.add_argument("-r", "--recursive", action="store_true", help="include sub-folders")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging (never content)")
    p.add_argument(
        "--validateInput",
        action="store_true",
        help="accepted for compatibility; input is always validated strictly",
    )
    p.add_argument(
        "--validateOutput",
        action="store_true",
        help="accepted for compatibility; output is built from validated input",
    )
    _common_options(p)
    return p


def _common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers", type=_positive, default=None, help="parallel worker processes (default: CPUs available)"
    )
    p.add_argument("--summary", metavar="FILE", help="write the run summary (JSON) here")
    p.add_argument(
        "--allow-random-keys",
        action="store_true",
        help="generate missing keys for this run only (outputs cannot be linked later)",
    )
    p.add_argument(
        "--reference-date", metavar="YYYY-MM-DD", help="the 'today' of the 89-year rule (default: today, UTC)"
    )
    p.add_argument(
        "--on-invalid-line",
        choices=("drop", "fail"),
        default=os.environ.get("ANONYMIZER_ON_INVALID_LINE", "drop"),
    )
    p.add_argument(
        "--max-line-bytes",
        type=_positive,
        default=int(os.environ.get("ANONYMIZER_MAX_LINE_BYTES", 268_435_456)),
    )
    p.add_argument("--quiet", action="store_true", help="no progress and no summary on stderr")


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _load_engine(config_path: Path, args: argparse.Namespace) -> Engine:
    if not config_path.is_file():
        raise ConfigurationError(f"Configuration file not found: {config_path}")
    return Engine.from_file(
        config_path,
        allow_random_keys=args.allow_random_keys,
        reference_date=_reference_date(args.reference_date),
    )


def _bulk_options(args: argparse.Namespace, *, bulk: bool) -> BulkOptions:
    return BulkOptions(
        bulk=bulk,
        recursive=getattr(args, "recursive", False),
        skip_existing=getattr(args, "skip", False),
        workers=args.workers or len(os.sched_getaffinity(0)),
        on_invalid_line=args.on_invalid_line,
        max_line_bytes=args.max_line_bytes,
        progress=not args.quiet and sys.stderr.isatty(),
    )


def _finish(result, engine: Engine, args: argparse.Namespace) -> int:
    summary = result.summary_dict(engine)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if not args.quiet:
        print(result.report_line(), file=sys.stderr)
    if result.failed_files:
        return EXIT_FAILED
    return EXIT_DROPPED if result.dropped_lines else EXIT_OK


def cmd_anonymize(argv: list[str]) -> int:
    args = _anonymize_parser().parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    source, target = Path(args.inputFolder), Path(args.outputFolder)
    if not source.is_dir():
        print(f"error: input folder {source} does not exist", file=sys.stderr)
        return EXIT_USAGE
    if source.resolve() == target.resolve():
        print("error: Input and output folders are the same! Please choose another folder.", file=sys.stderr)
        return EXIT_USAGE
    config_path = resolve_config(args.configFile)
    print(f"configuration: {config_path}", file=sys.stderr)
    engine = _load_engine(config_path, args)
    result = run_folder(engine, source, target, _bulk_options(args, bulk=args.bulkData))
    return _finish(result, engine, args)


def cmd_demo(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="fhir-anonymize demo",
        description="Anonymize the embedded sample export with the shipped "
        "Safe Harbor configuration and random demo keys.",
    )
    p.add_argument("--output", default="anonymized-demo", help="output folder (default: %(default)s)")
    _common_options(p)
    args = p.parse_args(argv)
    _setup_logging(False, args.quiet)
    args.allow_random_keys = True
    source = Path(str(resources.files("anonymizer") / "demo" / "export"))
    target = Path(args.output)
    config_path = shipped_config()
    print(f"configuration: {config_path} (shipped HIPAA Safe Harbor sample)")
    print("keys: RANDOM DEMO KEYS - this output cannot be linked to any other run\n")
    engine = _load_engine(config_path, args)
    options = _bulk_options(args, bulk=True)
    options.recursive = True
    result = run_folder(engine, source, target, options)
    summary = result.summary_dict(engine)
    print(json.dumps(summary, indent=2))
    _show_patient(source, target)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"\noutput written to {target}")
    return EXIT_FAILED if result.failed_files else EXIT_DROPPED if result.dropped_lines else EXIT_OK


def _show_patient(source: Path, target: Path) -> None:
    for before_file in sorted(source.rglob("Patient*.ndjson")):
        after_file = target / before_file.relative_to(source)
        if after_file.is_file():
            before = before_file.read_text(encoding="utf-8").splitlines()[0]
            after = after_file.read_text(encoding="utf-8").splitlines()[0]
            print("\nOne Patient before (synthetic demo data):")
            print(json.dumps(json.loads(before), indent=2))
            print("\n... and after:")
            print(json.dumps(json.loads(after), indent=2))
            return


def cmd_validate(argv: list[str]) -> int:
    from anonymizer.validate import validate_configuration

    p = argparse.ArgumentParser(
        prog="fhir-anonymize validate",
        description="Check a configuration: syntax, methods, rule paths, keys.",
    )
    p.add_argument("-c", "--configFile", help="configuration (default as for anonymizing)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    config_path = resolve_config(args.configFile)
    print(f"configuration: {config_path}")
    report = validate_configuration(read_configuration_text(config_path))
    for message in report.errors:
        print(f"error: {message}")
    for message in report.warnings:
        print(f"warning: {message}")
    print(f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    return EXIT_USAGE if report.errors else EXIT_OK


def cmd_verify(argv: list[str]) -> int:
    from anonymizer import verify

    p = argparse.ArgumentParser(
        prog="fhir-anonymize verify",
        description="Compare a source export with its anonymized output: counts per type and element, "
        "a residual-PHI scan, and re-identification risk. SOURCE and DEST are folders or "
        "container:NAME[/PREFIX] (through AzureWebJobsStorage).",
    )
    p.add_argument("source")
    p.add_argument("destination")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    p.add_argument("--min-k", type=_positive, help="fail when the smallest quasi-identifier group is smaller")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    try:
        source, destination = verify.open_location(args.source), verify.open_location(args.destination)
        report = verify.verify(source, destination, min_k=args.min_k)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.html:
        Path(args.html).write_text(verify.render_html(report), encoding="utf-8")
    print(json.dumps(report.to_dict(), indent=2) if args.json else verify.render_text(report))
    return EXIT_OK if report.passed() else EXIT_FAILED


def cmd_share(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="fhir-anonymize share",
        description="Print a read+list, HTTPS-only SAS URL for a container (or a prefix in it) on stdout.",
    )
    p.add_argument("--container", required=True)
    p.add_argument("--prefix", help="list only blobs under this prefix")
    p.add_argument("--expiry", required=True, help="how long the link works: e.g. 90m, 24h, 7d (at most 7d)")
    p.add_argument("--ip", help="allowed client IP address or range (a.b.c.d or a.b.c.d-e.f.g.h)")
    p.add_argument(
        "--user-delegation",
        action="store_true",
        help="sign with a user delegation key (azure-identity credentials) instead of the account key",
    )
    p.add_argument("--permissions", default="rl", help="r and/or l; anything else is refused")
    args = p.parse_args(argv)
    from anonymizer.azure.share import instructions, parse_duration, share_url

    url = share_url(
        args.container,
        expiry=parse_duration(args.expiry),
        prefix=args.prefix,
        ip=args.ip,
        user_delegation=args.user_delegation,
        permissions=args.permissions,
    )
    print(url)
    print(instructions(), file=sys.stderr)
    return EXIT_OK


def cmd_watch(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="fhir-anonymize watch",
        description="Run the Azure Function's handler over the source container (settings from the "
        "environment: AzureWebJobsStorage, ANONYMIZER_*): every .ndjson blob whose destination does "
        "not cover its current etag.",
    )
    p.add_argument("--once", action="store_true", help="process what is there, then exit")
    p.add_argument("--interval", type=float, default=30.0, help="seconds between scans (default 30)")
    p.add_argument("--blob", help="process this one blob (its name in the source container) and exit")
    args = p.parse_args(argv)
    _setup_logging(False, False)
    from anonymizer.azure.watch import watch  # the Azure SDK is needed only here

    return watch(once=args.once, interval=args.interval, blob=args.blob)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    handlers = {
        "demo": cmd_demo,
        "validate": cmd_validate,
        "watch": cmd_watch,
        "verify": cmd_verify,
        "share": cmd_share,
    }
    try:
        if command is None:
            return cmd_anonymize(argv)
        return handlers[command](argv[1:])
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
