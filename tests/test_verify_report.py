"""The HTML verification report as a browser shows it: headless Chromium (Debian's `chromium`,
installed by .ci/run) renders the report of a clean and of a leaky run, takes screenshots, and its
network log shows the page loaded nothing; the page holds the element table, the findings and the
histogram, and the leaky run's report none of the leaked source values in clear."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from anonymizer.cli import main, shipped_config
from tests.conftest import SYNTHEA, need

KEYS = {
    "ANONYMIZER_CRYPTO_HASH_KEY": "report-crypto-key-0000001",
    "ANONYMIZER_DATE_SHIFT_KEY": "report-date-key-000001",
}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Chromium's traffic annotation of the resources a page loads (Blink's resource loader); its own
# background requests (updates, time, accounts) carry others.
PAGE_RESOURCE_ANNOTATION = 101845102
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")


@pytest.fixture
def keys(monkeypatch):
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)


def _report(tmp_path: Path, name: str, config: dict | None) -> tuple[Path, int]:
    out = tmp_path / f"out-{name}"
    arguments = ["-i", str(need(SYNTHEA)), "-o", str(out), "-b", "--quiet"]
    if config is not None:
        (tmp_path / f"{name}.json").write_text(json.dumps(config))
        arguments += ["-c", str(tmp_path / f"{name}.json")]
    assert main([*arguments, "--summary", str(tmp_path / f"{name}-summary.json")]) == 0
    page = tmp_path / f"{name}.html"
    status = main(
        [
            "verify",
            str(SYNTHEA),
            str(out),
            "--html",
            str(page),
            "--summary",
            str(tmp_path / f"{name}-summary.json"),
        ]
    )
    return page, status


def _leaky_config() -> dict:
    """Microsoft's sample without its rule for names: the subjects' names stay in the output."""
    config = json.loads(shipped_config("ms-sample.json").read_text())
    config["fhirPathRules"] = [r for r in config["fhirPathRules"] if r["path"] != "nodesByType('HumanName')"]
    return config


def _chromium(page: Path, tmp_path: Path, action: list[str], log_name: str) -> tuple[str, list[str]]:
    """Chromium's stdout for `action` on the page, and the URLs the page itself requested."""
    net_log = tmp_path / f"{log_name}.netlog.json"
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, *FLAGS, f"--log-net-log={net_log}", *action, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, _page_requests(net_log)


def _page_requests(net_log: Path) -> list[str]:
    text = net_log.read_text()
    try:
        log = json.loads(text)
    except ValueError:  # a log cut at exit lacks its closing brackets
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    sources: dict[int, dict] = {}
    for event in log["events"]:
        params = event.get("params") or {}
        source = sources.setdefault(event["source"]["id"], {})
        if "url" in params:
            source["url"] = params["url"]
        if "traffic_annotation" in params:
            source["annotation"] = params["traffic_annotation"]
    return sorted(
        {s["url"] for s in sources.values() if s.get("annotation") == PAGE_RESOURCE_ANNOTATION and "url" in s}
    )


def _source_names() -> set[str]:
    names = set()
    for line in (need(SYNTHEA) / "Patient.ndjson").read_text().splitlines():
        for name in json.loads(line).get("name", []):
            names.update(name.get("given", []))
            if "family" in name:
                names.add(name["family"])
    return names


def _check_rendered(page: Path, tmp_path: Path, name: str) -> str:
    """Screenshot and DOM of the page in Chromium; no resource loaded by either. Returns the DOM."""
    screenshot = tmp_path / f"{name}.png"
    _, requested = _chromium(page, tmp_path, [f"--screenshot={screenshot}", "--window-size=1200,3000"], name)
    assert requested == []
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 20_000
    dom, requested = _chromium(page, tmp_path, ["--dump-dom"], f"{name}-dom")
    assert requested == []
    # The element table, the histogram and the resource chart, as the browser built them.
    element_rows = re.search(r'<table id="elements">(.*?)</table>', dom, re.S)
    assert element_rows is not None and element_rows[1].count("<tr") > 100
    assert '<svg xmlns="http://www.w3.org/2000/svg" id="histogram"' in dom
    assert '<svg xmlns="http://www.w3.org/2000/svg" id="resources-chart"' in dom
    assert '<table id="identity">' in dom and "configuration digest" in dom
    return dom


def test_the_reports_of_a_clean_and_a_leaky_run_in_a_browser(tmp_path, keys):
    clean, status = _report(tmp_path, "clean", None)
    assert status == 1  # 40 patients: k = 1 < 5, explained
    dom = _check_rendered(clean, tmp_path, "clean")
    assert 'class="verdict failed"' in dom and "The population is small for k = 5" in dom
    assert '<p id="findings">None.</p>' in dom
    summary = json.loads((tmp_path / "clean-summary.json").read_text())
    assert summary["config"]["digest"] in dom  # the run's identity

    leaky, status = _report(tmp_path, "leaky", _leaky_config())
    assert status == 1
    dom = _check_rendered(leaky, tmp_path, "leaky")
    findings = re.search(r'<div id="findings">(.*?)</div>', dom, re.S)
    assert findings is not None and "<h3>name: " in findings[1]
    assert re.search(r"<code>name:[0-9a-f]{8}</code>", findings[1])
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in findings[1]  # the chart of findings per kind
    # No leaked value in clear: Synthea's names carry digits (Abbott774), so a match is a leak.
    page_text = leaky.read_text()
    leaked = [name for name in _source_names() if re.search(rf"\b{re.escape(name)}\b", page_text)]
    assert leaked == []
    assert len(_source_names()) > 50


def test_the_network_check_sees_a_page_that_loads_resources(tmp_path, keys):
    """The check above would fail for a page that loads anything: the same report with an image
    and a style sheet from the network added."""
    clean, _ = _report(tmp_path, "clean", None)
    page = tmp_path / "with-resources.html"
    page.write_text(
        clean.read_text().replace(
            "<h1>",
            '<img src="http://192.0.2.1/tracker.png"><link rel="stylesheet" href="https://192.0.2.1/x.css"><h1>',
            1,
        )
    )
    _, requested = _chromium(page, tmp_path, ["--dump-dom"], "with-resources")
    assert requested == ["http://192.0.2.1/tracker.png", "https://192.0.2.1/x.css"]
