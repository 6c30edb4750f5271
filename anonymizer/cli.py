"""`fhir-anonymize` (also `python -m anonymizer`): docs/contract.md section 4.

A user's mistake (a missing folder, a typo in a command, a bad setting) is one line on stderr and
exit status 2, never a traceback; `--quiet` leaves only errors.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import signal
import sys
import threading
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

from anonymizer.bulk import BulkOptions, BulkResult, run_folder
from anonymizer.config import read_configuration_text
from anonymizer.core import choose_engine
from anonymizer.engine import ENGINE_VERSION, Engine
from anonymizer.errors import ConfigurationError
from anonymizer.settings import (
    ON_INVALID_LINE,
    RunSettings,
    parse_positive,
    parse_reference_date,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DROPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
SUBCOMMANDS = ("demo", "validate", "watch", "verify", "share", "spark", "export", "status")
PROG = "fhir-anonymize"
log = logging.getLogger("anonymizer")


class UsageError(Exception):
    """A mistake in the command line: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (no usage block)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def version_text() -> str:
    """The version, and the engine a run would use (ANONYMIZER_ENGINE, else auto)."""
    try:
        kind = choose_engine()
    except ConfigurationError as exc:
        return f"{PROG} {ENGINE_VERSION} (engine: none: {exc})"
    return f"{PROG} {ENGINE_VERSION} (engine: {kind})"


def shipped_config(name: str = "safe-harbor.json") -> Path:
    return Path(str(resources.files("anonymizer") / "configs" / name))


def resolve_config(option: str | None, settings: RunSettings | None = None) -> Path:
    if option:
        return Path(option)
    configured = (settings or RunSettings.from_env()).config
    return Path(configured) if configured else shipped_config()


def _positive(text: str) -> int:
    try:
        return parse_positive(text, "the value")
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("the value ", "")) from None


def _anonymize_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="De-identify FHIR R4 resources with a Microsoft anonymizer configuration. "
        f"Subcommands: {', '.join(SUBCOMMANDS)} ({PROG} SUBCOMMAND --help).",
    )
    p.add_argument("--version", action="version", version=version_text())
    p.add_argument("-i", "--inputFolder", required=True, help="folder of input files (or one file)")
    p.add_argument("-o", "--outputFolder", required=True, help="folder for the output (created)")
    p.add_argument(
        "-c",
        "--configFile",
        help="configuration (default: $ANONYMIZER_CONFIG, else the shipped Safe Harbor profile)",
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
    p.add_argument(
        "--threads",
        type=_positive,
        default=None,
        help="threads per worker for the compiled core (default: $ANONYMIZER_THREADS, else 1)",
    )
    p.add_argument("--summary", metavar="FILE", help="write the run summary (JSON) here")
    p.add_argument(
        "--allow-random-keys",
        action="store_true",
        help="generate missing keys for this run only (outputs cannot be linked later)",
    )
    p.add_argument(
        "--reference-date",
        metavar="YYYY-MM-DD",
        help="the 'today' of the 89-year rule (default: $ANONYMIZER_REFERENCE_DATE, else today, UTC)",
    )
    p.add_argument(
        "--on-invalid-line",
        choices=ON_INVALID_LINE,
        help="leave bad lines out and count them (drop, the default; $ANONYMIZER_ON_INVALID_LINE), "
        "or fail their file",
    )
    p.add_argument(
        "--max-line-bytes",
        type=_positive,
        help="longer lines are a fault (default: $ANONYMIZER_MAX_LINE_BYTES, else 256 MiB)",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _say(args: argparse.Namespace, text: str, *, err: bool = True) -> None:
    if not getattr(args, "quiet", False):
        print(text, file=sys.stderr if err else sys.stdout)


def _reference_date(args: argparse.Namespace, settings: RunSettings) -> date | None:
    if args.reference_date:
        return parse_reference_date(args.reference_date, "--reference-date")
    return settings.reference_date


def _load_engine(config_path: Path, args: argparse.Namespace, settings: RunSettings) -> Engine:
    if config_path.is_dir():
        raise ConfigurationError(f"The configuration {config_path} is a folder, not a file")
    if not config_path.is_file():
        raise ConfigurationError(f"Configuration file not found: {config_path}")
    return Engine.from_file(
        config_path,
        allow_random_keys=args.allow_random_keys,
        reference_date=_reference_date(args, settings),
        kind=settings.engine,
    )


def _bulk_options(args: argparse.Namespace, settings: RunSettings, *, bulk: bool) -> BulkOptions:
    return BulkOptions(
        bulk=bulk,
        recursive=getattr(args, "recursive", False),
        skip_existing=getattr(args, "skip", False),
        workers=args.workers or len(os.sched_getaffinity(0)),
        on_invalid_line=args.on_invalid_line or settings.on_invalid_line,
        max_line_bytes=args.max_line_bytes or settings.max_line_bytes,
        progress=not args.quiet and sys.stderr.isatty(),
        threads=args.threads or settings.threads or 1,
    )


def _check_summary_path(option: str | None) -> None:
    """Refused before anything is written: a summary the run could not save is found too late."""
    if not option:
        return
    path = Path(option)
    if path.is_dir():
        raise UsageError(f"--summary {option} is a folder; give a file name")
    if not path.parent.is_dir():
        raise UsageError(f"--summary {option}: the folder {path.parent} does not exist")


def _inside(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def _check_folders(source: Path, target: Path, bulk: bool) -> None:
    if not source.exists():
        raise UsageError(f"input {source} does not exist")
    if target.exists() and not target.is_dir():
        raise UsageError(f"output {target} is a file; -o names a folder")
    if source.is_file():
        wanted = ".ndjson" if bulk else ".json"
        if source.suffix != wanted:
            mode = "bulk mode (-b) reads *.ndjson" if bulk else "JSON mode reads *.json (-b for NDJSON)"
            raise UsageError(f"input file {source} is not a {wanted} file: {mode}")
        if (target / source.name).resolve() == source.resolve():
            raise UsageError("the output would overwrite the input file: choose another -o folder")
        return
    inside, outside = source.resolve(), target.resolve()
    if inside == outside:
        raise UsageError("Input and output folders are the same! Please choose another folder.")
    if _inside(outside, inside):
        raise UsageError(
            f"the output folder {target} is inside the input folder {source}: a later run "
            "would read the output as input; choose a folder outside it"
        )
    if _inside(inside, outside):
        raise UsageError(f"the input folder {source} is inside the output folder {target}")


def _write_summary(path: str | None, summary: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def _finish(result: BulkResult, engine: Engine, args: argparse.Namespace) -> int:
    _write_summary(args.summary, result.summary_dict(engine))
    _say(args, result.report_line())
    for hint in result.hints():
        _say(args, hint)
    if result.failed_files:
        return EXIT_FAILED
    return EXIT_DROPPED if result.dropped_lines else EXIT_OK


def cmd_anonymize(argv: list[str]) -> int:
    args = _anonymize_parser().parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    settings = RunSettings.from_env()
    source, target = Path(args.inputFolder), Path(args.outputFolder)
    _check_folders(source, target, args.bulkData)
    _check_summary_path(args.summary)
    config_path = resolve_config(args.configFile, settings)
    engine = _load_engine(config_path, args, settings)
    _say(args, f"configuration: {config_path}")
    result = run_folder(engine, source, target, _bulk_options(args, settings, bulk=args.bulkData))
    return _finish(result, engine, args)


def cmd_demo(argv: list[str]) -> int:
    p = _Parser(
        prog=f"{PROG} demo",
        description="Anonymize the embedded sample export with the shipped "
        "Safe Harbor profile and random demo keys.",
    )
    p.add_argument("--output", default="anonymized-demo", help="output folder (default: %(default)s)")
    _common_options(p)
    args = p.parse_args(argv)
    _setup_logging(False, args.quiet)
    settings = RunSettings.from_env()
    args.allow_random_keys = True
    source = Path(str(resources.files("anonymizer") / "demo" / "export"))
    target = Path(args.output)
    if target.exists() and not target.is_dir():
        raise UsageError(f"--output {target} is a file; it names a folder")
    _check_summary_path(args.summary)
    config_path = shipped_config()
    _say(args, f"configuration: {config_path} (the shipped HIPAA Safe Harbor profile)", err=False)
    _say(args, "keys: RANDOM DEMO KEYS - this output cannot be linked to any other run\n", err=False)
    engine = _load_engine(config_path, args, settings)
    options = _bulk_options(args, settings, bulk=True)
    options.recursive = True
    result = run_folder(engine, source, target, options)
    summary = result.summary_dict(engine)
    _say(args, json.dumps(summary, indent=2), err=False)
    if not args.quiet:
        _show_patient(source, target)
    _write_summary(args.summary, summary)
    _say(args, f"\noutput written to {target}", err=False)
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

    p = _Parser(
        prog=f"{PROG} validate",
        description="Check a configuration before any data: syntax, key names, methods, rule paths, "
        "FHIRPath, substitute values, regular expressions, and the keys a run will need.",
    )
    p.add_argument("-c", "--configFile", help="configuration (default as for anonymizing)")
    p.add_argument("--strict", action="store_true", help="treat every warning as an error")
    p.add_argument("--require-keys", action="store_true", help="fail when a key a rule needs is not set here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    config_path = resolve_config(args.configFile)
    if not config_path.is_file():
        raise ConfigurationError(f"Configuration file not found: {config_path}")
    raw = read_configuration_text(config_path)
    print(f"configuration: {config_path}")
    report = validate_configuration(raw)
    for message in report.errors:
        print(f"error: {message}")
    for message in report.warnings:
        print(f"{'error' if args.strict else 'warning'}: {message}")
    for message in report.missing_keys:
        print(f"{'error' if args.require_keys else 'to set at run time'}: {message}")
    errors = len(report.errors) + (len(report.warnings) if args.strict else 0)
    errors += len(report.missing_keys) if args.require_keys else 0
    warnings = 0 if args.strict else len(report.warnings)
    print(f"{errors} error(s), {warnings} warning(s)")
    return EXIT_USAGE if errors else EXIT_OK


def _verify_location(location: str) -> Any:
    """A folder, or a container through the configured storage (`container:NAME[/PREFIX]`)."""
    from anonymizer import verify

    if location.startswith("container:"):
        from anonymizer.azure.verify_source import container_location  # the Azure SDK only here

        return container_location(location.removeprefix("container:"))
    folder = Path(location)
    if not folder.is_dir():
        raise UsageError(f"{location} is neither a folder nor container:NAME[/PREFIX]")
    return verify.folder_location(folder)


def _k(text: str) -> int:
    try:
        return int(text) if text.strip() == "0" else parse_positive(text, "the value")
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("the value ", "")) from None


def cmd_verify(argv: list[str]) -> int:
    from anonymizer import report_html, verify
    from anonymizer.bulk import Progress

    p = _Parser(
        prog=f"{PROG} verify",
        description="Compare a source export with its anonymized output: counts per type and element, "
        "a residual-PHI scan, and re-identification risk. SOURCE (the export) and DEST (its "
        "anonymized output) are folders or container:NAME[/PREFIX] (through AzureWebJobsStorage).",
    )
    p.add_argument("source")
    p.add_argument("destination")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    p.add_argument(
        "--min-k",
        type=_k,
        default=verify.DEFAULT_K,
        help="fail when a quasi-identifier class holds fewer patients (default %(default)s; 0: report only)",
    )
    p.add_argument(
        "--summary", metavar="FILE", help="the run's summary (--summary of the run), for its identity"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.html and not Path(args.html).parent.is_dir():
        raise UsageError(f"--html {args.html}: the folder {Path(args.html).parent} does not exist")
    identity = None
    if args.summary:
        try:
            identity = verify.identity_from_summary(
                json.loads(Path(args.summary).read_text(encoding="utf-8"))
            )
        except (OSError, ValueError, AttributeError) as exc:
            raise UsageError(f"--summary {args.summary}: not a run summary ({type(exc).__name__})") from None
    source, destination = _verify_location(args.source), _verify_location(args.destination)
    if identity:
        destination.identity = identity
    progress = Progress(source.size + destination.size, enabled=sys.stderr.isatty() and not args.json)
    with progress:
        report = verify.verify(source, destination, min_k=args.min_k, progress=progress.add)
    problem = verify.mismatch(report)
    if problem is not None:
        raise UsageError(f"verify {args.source} {args.destination}: {problem}")
    if args.html:
        Path(args.html).write_text(report_html.render_html(report), encoding="utf-8")
    print(json.dumps(report.to_dict(), indent=2) if args.json else verify.render_text(report))
    return EXIT_OK if report.passed() else EXIT_FAILED


def cmd_spark(argv: list[str]) -> int:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise UsageError('spark needs PySpark: pip install "fhir-anonymize[spark]"') from None
    from anonymizer import spark

    return spark.main(argv)


def cmd_share(argv: list[str]) -> int:
    p = _Parser(
        prog=f"{PROG} share",
        description="Print a read+list, HTTPS-only SAS URL for a container (or a prefix in it) on stdout.",
    )
    p.add_argument("--container", required=True)
    p.add_argument("--prefix", help="list only blobs under this prefix")
    p.add_argument("--expiry", required=True, help="how long the link works: e.g. 90m, 24h, 7d (at most 7d)")
    p.add_argument("--ip", help="allowed client IPv4 address or range (a.b.c.d or a.b.c.d-e.f.g.h)")
    p.add_argument(
        "--user-delegation",
        action="store_true",
        help="sign with a user delegation key (azure-identity credentials) instead of the account key",
    )
    p.add_argument("--permissions", default="rl", help="r and/or l; anything else is refused")
    args = p.parse_args(argv)
    from anonymizer.azure.share import instructions, share_from_arguments

    url = share_from_arguments(
        args.container,
        expiry=args.expiry,
        prefix=args.prefix,
        ip=args.ip,
        user_delegation=args.user_delegation,
        permissions=args.permissions,
    )
    print(url)
    print(instructions(), file=sys.stderr)
    return EXIT_OK


def cmd_watch(argv: list[str]) -> int:
    p = _Parser(
        prog=f"{PROG} watch",
        description="Run the Azure Function's handler over the source container (settings from the "
        "environment: AzureWebJobsStorage, ANONYMIZER_*): every .ndjson blob whose destination does "
        "not cover its current etag. Exit status 1 when a blob failed.",
    )
    p.add_argument("--once", action="store_true", help="process what is there, then exit")
    p.add_argument("--interval", type=float, default=30.0, help="seconds between scans (default 30)")
    p.add_argument("--blob", help="process this one blob (its name in the source container) and exit")
    args = p.parse_args(argv)
    _setup_logging(False, False)
    from anonymizer.azure.watch import watch  # the Azure SDK is needed only here

    return watch(once=args.once, interval=args.interval, blob=args.blob)


def cmd_export(argv: list[str]) -> int:
    p = _Parser(
        prog=f"{PROG} export",
        description="Start a FHIR bulk export ($export) and record it as a job in the destination "
        "container (settings from the environment: AzureWebJobsStorage, ANONYMIZER_*). Exit status 1 "
        "when the server refuses or fails the export.",
    )
    p.add_argument("--fhir-url", required=True, help="the FHIR server's base URL")
    p.add_argument("--type", help="resource types, comma-separated (_type)")
    p.add_argument(
        "--since", help="an instant (_since), or 'last': the last complete export's transactionTime"
    )
    p.add_argument("--type-filter", help="_typeFilter")
    level = p.add_mutually_exclusive_group()
    level.add_argument("--group", help="export a Group (Group/ID/$export)")
    level.add_argument("--patient", action="store_true", help="Patient/$export (the Patient compartment)")
    p.add_argument("--container", help="_container: the container the FHIR service writes into")
    p.add_argument("--wait", action="store_true", help="follow the export to its manifest")
    p.add_argument("--cancel", metavar="JOB", help="cancel a recorded job (DELETE on its status URL)")
    p.add_argument(
        "--auth",
        choices=("azure", "none"),
        default="azure",
        help="bearer token from azure-identity (default), or none for open test servers",
    )
    p.add_argument("--json", action="store_true", help="print the job record as JSON")
    args = p.parse_args(argv)
    _setup_logging(False, False)
    from anonymizer.azure import export

    settings, _, records = _job_records()
    token = export.azure_token(args.fhir_url) if args.auth == "azure" else (lambda: None)
    client = export.BulkExport(token, say=lambda text: print(text, file=sys.stderr))
    try:
        if args.cancel:
            record = export.cancel_export(client, records, args.cancel)
        else:
            since = args.since
            if since == "last":
                since = records.last_transaction_time(args.fhir_url)
                print(f"since: {since or 'the beginning (no complete export recorded)'}", file=sys.stderr)
            request = export.ExportRequest(
                args.fhir_url,
                types=[t.strip() for t in (args.type or "").split(",") if t.strip()],
                since=since,
                type_filter=args.type_filter,
                group=args.group,
                patient=args.patient,
                container=args.container,
            )
            say = lambda text: print(text, file=sys.stderr)  # noqa: E731
            record = export.run_export(client, records, request, wait=args.wait, say=say)
            if args.wait:  # the manifest says the files are final: finish each
                from anonymizer.azure.handler import Handler

                export.finish_files(record, records, Handler(settings), say)
    except export.ExportFailed as exc:
        print(f"{PROG} export: {exc}", file=sys.stderr)
        return EXIT_FAILED
    described = export.describe(record, settings.source_container)
    if args.json:
        print(json.dumps(described, indent=2))
    else:
        print(f"{record.id}: {record.status}" + (f" ({record.outcome})" if record.outcome else ""))
        for item in described["files"]:
            print(f"  {item['type']}: {item['url']}")
    return EXIT_OK


def _job_records() -> tuple[Any, Any, Any]:
    """The storage settings, the blob service and the export job records (the Azure SDK only here)."""
    from anonymizer.azure import clients, export
    from anonymizer.azure.settings import Settings

    settings = Settings.from_env()
    service = clients.blob_service(settings)
    return settings, service, export.JobRecords(service.get_container_client(settings.destination_container))


def cmd_status(argv: list[str]) -> int:
    p = _Parser(
        prog=f"{PROG} status",
        description="Where every file of the recorded exports stands (from the job records and the "
        "destination's metadata): complete, partial, failed or pending, with sizes, lines and faults. "
        "Exit status 1 when a file failed.",
    )
    p.add_argument("--job", help="one job (its id); default: every recorded job")
    p.add_argument("--json", action="store_true", help="print as JSON")
    args = p.parse_args(argv)
    _setup_logging(False, False)
    from anonymizer.azure import export

    settings, service, records = _job_records()
    jobs = [records.load(args.job)] if args.job else records.all()
    report = [export.job_status(record, settings, service) for record in jobs]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for job in report:
            totals = job["totals"]
            print(f"{job['id']}: {job['status']}" + (f" ({job['progress']})" if job["progress"] else ""))
            for f in job["files"]:
                faults = ", ".join(f"{k} {n}" for k, n in f["faults"].items()) or "no faults"
                print(
                    f"  {f['file']}: {f['state']}, {f['lines'] or 0} line(s), {f['bytes'] or 0} of "
                    f"{f['source_bytes'] or 0} bytes, {faults}"
                )
            states = ", ".join(
                f"{totals.get(s, 0)} {s}" for s in ("complete", "partial", "failed", "pending")
            )
            print(f"  total: {totals['files']} file(s) ({states}), {totals['lines']} line(s)")
    failed = any(f["state"] == "failed" for job in report for f in job["files"])
    return EXIT_FAILED if failed else EXIT_OK


HANDLERS: dict[str, Any] = {
    "demo": cmd_demo,
    "validate": cmd_validate,
    "watch": cmd_watch,
    "verify": cmd_verify,
    "share": cmd_share,
    "spark": cmd_spark,
    "export": cmd_export,
    "status": cmd_status,
}


def _command(argv: list[str]) -> str | None:
    """The subcommand, None for the anonymizing command line (it starts with an option)."""
    if not argv or argv[0].startswith("-"):
        return None
    if argv[0] in SUBCOMMANDS:
        return argv[0]
    close = difflib.get_close_matches(argv[0], SUBCOMMANDS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise UsageError(f"unknown command '{argv[0]}'{hint}: use one of {', '.join(SUBCOMMANDS)}, or options")


def _interrupt_on_sigterm() -> None:
    """SIGTERM ends a run as Ctrl-C does: temporary files removed, workers stopped, status 130."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _interrupt_on_sigterm()
        command = _command(argv)
        if command is None:
            return cmd_anonymize(argv)
        return HANDLERS[command](argv[1:])
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # argparse: --help, --version, and its one-line errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
