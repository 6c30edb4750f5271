"""The deployment layout a Functions build makes: `requirements.txt` installed into
`.python_packages/lib/site-packages`, the app files `.funcignore` does not exclude copied beside
it, and `function_app` imported there with nothing else on the path (no site-packages of this
machine, no editable install), its function indexed."""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

from anonymizer import core

REPO = Path(__file__).resolve().parent.parent


def _patterns() -> list[str]:
    lines = (REPO / ".funcignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def excluded(path: PurePosixPath, patterns: list[str]) -> bool:
    """gitignore-style matching, as much of it as .funcignore uses: `dir/` excludes a folder at
    any depth, other patterns match a name at any depth or the whole relative path."""
    for pattern in patterns:
        if pattern.endswith("/"):
            if any(fnmatch.fnmatch(part, pattern[:-1]) for part in path.parts[:-1]):
                return True
        elif fnmatch.fnmatch(path.name, pattern) or fnmatch.fnmatch(str(path), pattern):
            return True
    return False


def _published(patterns: list[str]) -> list[PurePosixPath]:
    """The files a publish of this folder takes, as the Functions tools walk it."""
    found = []
    for folder, folders, files in os.walk(REPO):
        here = PurePosixPath(Path(folder).relative_to(REPO).as_posix())
        folders[:] = [f for f in folders if not excluded(here / f / "x", patterns)]
        found += [here / name for name in files if not excluded(here / name, patterns)]
    return found


def test_funcignore_leaves_out_what_must_not_be_published():
    patterns = _patterns()
    kept_out = (".ci/azurite/node_modules/x.js", "tests/test_cli.py", "local.settings.json", "bench/bench.py")
    for path in kept_out:
        assert excluded(PurePosixPath(path), patterns), path
    for path in ("function_app.py", "host.json", "requirements.txt", "anonymizer/configs/safe-harbor.json"):
        assert not excluded(PurePosixPath(path), patterns), path
    gitignored = (REPO / ".gitignore").read_text().splitlines()
    assert "local.settings.json" in gitignored
    assert not any(line.startswith("-e") for line in (REPO / "requirements.txt").read_text().splitlines())


def test_deployment_layout_imports_function_app(tmp_path):
    app = tmp_path / "app"
    site = app / ".python_packages" / "lib" / "site-packages"
    install = subprocess.run(
        [
            *(
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-compile",
            ),
            *("--target", str(site), "-r", str(REPO / "requirements.txt")),
        ],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    for path in _published(_patterns()):
        (app / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, app / path)
    assert (app / "anonymizer" / "configs" / "safe-harbor.json").exists()
    assert not (app / "tests").exists() and not (app / ".ci").exists()
    code = (
        "import sys\n"
        f"sys.path[:0] = [{str(app)!r}, {str(site)!r}]\n"
        "import function_app, anonymizer\n"
        f"assert anonymizer.__file__.startswith({str(app)!r}), anonymizer.__file__\n"
        "print([f.get_function_name() for f in function_app.app.get_functions()])\n"
        "from anonymizer import Engine\n"
        "from anonymizer.cli import shipped_config\n"
        "engine = Engine.from_file(shipped_config(), keys={'cryptoHashKey': 'k' * 32})\n"
        "patient = {'resourceType': 'Patient', 'id': 'p', 'birthDate': '1980-02-03'}\n"
        "print(engine.anonymize(patient)['birthDate'])\n"
        "print(engine.kind)\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],  # no site-packages: only the layout
        cwd=app,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "ANONYMIZER_TRIGGER_SOURCE": "LogsAndContainerScan"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The compiled core, when built (a build for Functions: core/build_for_functions.py), is
    # published with the package and imported there.
    engine = "core" if core.available() else "python"
    assert result.stdout.splitlines() == ["['anonymize_export']", "1980", engine]
