"""Benchmark: one export file through Azurite (download, anonymize, upload, queue message) with the
function's handler (`fhir-anonymize watch --blob`), against the command line on the same file from
local disk, with the same worker count (one), measured in one run; and the handler's peak memory.

    python bench/bench_azure.py --size-mb 100
    python bench/bench_azure.py --size-mb 1000     # peak memory on a 1 GB blob

Needs Azurite (`.ci/run` installs it into .ci/azurite).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from azure.storage.blob import BlobServiceClient  # noqa: E402

from bench.bench import KEYS, build_input, command_line, input_arguments  # noqa: E402
from tests.azurite import running_azurite  # noqa: E402

BLOB = "2026-11-24T000000-bench/Export-1-1.ndjson"


def _one_file(folder: Path, target: Path) -> None:
    with target.open("wb") as out:
        for path in sorted(folder.glob("*.ndjson")):
            out.write(path.read_bytes())


def main() -> None:
    args = input_arguments(__doc__, 100).parse_args()
    with tempfile.TemporaryDirectory(prefix="fhir-bench-azure-") as scratch:
        scratch_path = Path(scratch)
        print(f"building a {args.size_mb} MB export file ...", flush=True)
        build_input(args.source, scratch_path / "parts", args.size_mb)
        local = scratch_path / "local"
        local.mkdir()
        _one_file(scratch_path / "parts", local / "Export-1-1.ndjson")
        size_mb = (local / "Export-1-1.ndjson").stat().st_size / 1e6
        with running_azurite() as connection:
            env = {
                "AzureWebJobsStorage": connection,
                "ANONYMIZER_SOURCE_CONTAINER": "fhir-export",
                "ANONYMIZER_DESTINATION_CONTAINER": "fhir-anonymized",
                "ANONYMIZER_REFERENCE_DATE": "2026-01-01",
                **KEYS,
            }
            os.environ.update(env)
            service = BlobServiceClient.from_connection_string(connection)
            container = service.create_container("fhir-export")
            start = time.perf_counter()
            with (local / "Export-1-1.ndjson").open("rb") as handle:
                container.upload_blob(BLOB, handle, max_concurrency=2)
            print(f"uploaded {size_mb:.1f} MB to Azurite in {time.perf_counter() - start:.1f} s")
            cli_seconds, cli_peak = command_line(local, scratch_path / "out", 1)
            handler_seconds, handler_peak = command_line(
                local, scratch_path / "unused", 1, command=["watch", "--blob", BLOB]
            )
            destination = service.get_blob_client("fhir-anonymized", BLOB).get_blob_properties()
            local_out = (scratch_path / "out" / "Export-1-1.ndjson").stat().st_size
        print(f"\n{'run (1 worker)':44} {'seconds':>8} {'MB/s':>7} {'peak RSS':>9}")
        print(
            f"{'command line, local disk':44} {cli_seconds:8.2f} {size_mb / cli_seconds:7.1f} "
            f"{cli_peak / 1024:7.0f}MB"
        )
        print(
            f"{'function handler through Azurite':44} {handler_seconds:8.2f} "
            f"{size_mb / handler_seconds:7.1f} "
            f"{handler_peak / 1024:7.0f}MB"
        )
        print(f"\nhandler / command line speed: {cli_seconds / handler_seconds:.2f}")
        print(f"destination blob {destination.size} bytes, local output {local_out} bytes")


if __name__ == "__main__":
    main()
