"""Compare the streaming core of this checkout with another one (an earlier commit checked out
elsewhere: `git worktree add /tmp/old <commit>`) in one run: rounds alternate between the two, each
a fresh process that measures the orjson pass and then the engine over the same input, so each
ratio is taken on the same machine state. Prints every round and the medians.

    python bench/compare.py --against /tmp/old                 # the Synthea export
    python bench/compare.py --against /tmp/old --size-mb 200   # an input built from it
    python bench/compare.py --against /tmp/old --config ms-sample.json --rounds 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench import KEYS, build_input  # noqa: E402

# Runs in the checkout under test: one orjson pass, then a fresh engine streaming every file.
_ROUND = """
import json, os, sys, time
from datetime import date
from pathlib import Path
import orjson
sys.path.insert(0, os.getcwd())
folder, config = Path(sys.argv[1]), sys.argv[2]
files = sorted(folder.glob("*.ndjson"))
start = time.perf_counter()
for path in files:
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                orjson.dumps(orjson.loads(line))
base = time.perf_counter() - start
from anonymizer import Engine
from anonymizer.stream import anonymize_stream
engine = Engine.from_file(Path("anonymizer/configs") / config, reference_date=date(2026, 1, 1))
start = time.perf_counter()
for path in files:
    with path.open("rb") as handle:
        for _ in anonymize_stream(iter(lambda: handle.read(1 << 20), b""), engine, input_complete=True):
            pass
core = time.perf_counter() - start
print(json.dumps({"orjson": base, "core": core}))
"""


def one_round(tree: Path, folder: Path, config: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _ROUND, str(folder), config],
        cwd=tree,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **KEYS},
    )
    if result.returncode != 0:
        raise SystemExit(f"{tree}: {result.stderr[-2000:]}")
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--against", type=Path, required=True, help="the other checkout")
    parser.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "synthea-export")
    parser.add_argument("--size-mb", type=int, default=0)
    parser.add_argument("--config", default="safe-harbor.json", help="a profile in anonymizer/configs")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trees = {"this": REPO, "other": args.against.resolve()}
    with tempfile.TemporaryDirectory(prefix="fhir-compare-") as scratch:
        folder = args.source
        if args.size_mb:
            folder = Path(scratch) / "input"
            build_input(args.source, folder, args.size_mb)
        ratios: dict[str, list[float]] = {name: [] for name in trees}
        for number in range(args.rounds):
            order = list(trees) if number % 2 == 0 else list(reversed(trees))
            for name in order:
                figures = one_round(trees[name], folder, args.config)
                ratio = figures["orjson"] / figures["core"]
                ratios[name].append(ratio)
                print(
                    f"round {number + 1} {name:5} core {figures['core']:.3f} s, ratio {ratio:.3f}", flush=True
                )
    medians = {name: statistics.median(values) for name, values in ratios.items()}
    for name, value in medians.items():
        print(f"median ratio to the orjson pass, {name}: {value:.3f}")
    print(f"this / other: {medians['this'] / medians['other']:.3f}")


if __name__ == "__main__":
    main()
