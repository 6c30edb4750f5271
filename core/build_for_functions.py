"""Build the compiled core for an Azure Functions deployment: a manylinux2014 (glibc 2.17+) x86_64
build, whatever this machine's glibc, with maturin and zig from PyPI, placed in the package as
`anonymizer/_core.abi3.so` (the deployment copies the package as app files).

    python -m pip install maturin ziglang
    python core/build_for_functions.py

Other builds of the core in the package folder (an editable install's) are removed: Python would
import them first.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CORE = Path(__file__).resolve().parent
PACKAGE = CORE.parent / "anonymizer"


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        command = [
            sys.executable, "-m", "maturin", "build", "--release", "--zig",
            "--compatibility", "manylinux2014", "--target", "x86_64-unknown-linux-gnu",
            "-m", str(CORE / "Cargo.toml"), "-o", scratch,
        ]  # fmt: skip
        if subprocess.run(command).returncode != 0:
            print("the build failed (is maturin installed? python -m pip install maturin ziglang)")
            return 1
        wheel = next(Path(scratch).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            library = next(name for name in archive.namelist() if name.endswith(".so"))
            data = archive.read(library)
    for old in PACKAGE.glob("_core*.so"):
        old.unlink()
    target = PACKAGE / "_core.abi3.so"
    target.write_bytes(data)
    print(f"{target} ({len(data) // 1024} KiB): the core for Linux x86_64, glibc 2.17 or later")
    return 0


if __name__ == "__main__":
    sys.exit(main())
