"""The report in a real browser: Debian's headless chromium, driven through chromium-driver
by selenium, loads the page served by ``mlops report --serve``'s server; every image
loads, the console has no errors, and the screenshot shows the plots."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops.observe.report import serve_report, write_report
from mlops.runner import run_pipeline
from mlops.store.workspace import Workspace
from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def backend() -> str:
    """A local store: the store is not what these tests are about."""
    return "local"


@pytest.fixture
def report_dir(make_config: Any, tmp_path: Path) -> Path:
    """A report of four runs (two with drift reports), written to a folder."""
    cfg = make_config()
    for i in range(4):
        cfg = make_config(data={"n_samples": 300, "n_features": 3, "random_state": i},
                          monitoring={"drift_method": "psi"})
        run_pipeline(cfg, run_id=f"run-{i:02d}")
    out = tmp_path / "report"
    write_report(Workspace.open(cfg), out)
    return out


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless chromium through chromium-driver (no download: Debian's binaries)."""
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        skip_or_fail("chromium and chromium-driver are not installed (apt-get install "
                     "chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        skip_or_fail("selenium is not installed (pip install the dev extras)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=1300,1800", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(driver_path)),
                              options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_report_loads_in_headless_chromium(report_dir: Path, browser: Any,
                                          tmp_path: Path) -> None:
    from PIL import Image

    server = serve_report(report_dir, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        browser.get(f"http://127.0.0.1:{server.server_port}/report.html")
        assert browser.title == "mlops run report"
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, "
            "i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width])")
        # The third: the nights' estimated scores (CBPE) beside any realized by labels.
        assert [alt for alt, *_ in images] == ["accuracy per run", "Drift over time",
                                               "Realized vs estimated score"]
        for alt, complete, width, height, shown in images:
            assert complete and width > 300 and height > 200 and shown > 300, alt
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        tables = browser.execute_script("return document.querySelectorAll('table').length")
        assert tables >= 2
        png = browser.get_screenshot_as_png()
    finally:
        server.shutdown()
        server.server_close()
    (tmp_path / "screenshot.png").write_bytes(png)  # for a person to look at (--basetemp)
    shot = Image.open(io.BytesIO(png)).convert("RGB")
    assert shot.size[0] >= 1000 and shot.size[1] >= 1000
    pixels = np.asarray(shot, dtype=np.int16).reshape(-1, 3)
    white = int((pixels.min(axis=1) > 245).sum())
    colored = int((pixels.max(axis=1) - pixels.min(axis=1) > 60).sum())
    assert white < 0.95 * len(pixels)  # not an empty page
    assert colored > 0.002 * len(pixels)  # plot lines and markers in colour are visible


def test_report_serve_command_prints_a_working_url(make_config: Any, tmp_path: Path) -> None:
    cfg = make_config(data={"n_samples": 300, "n_features": 3})
    run_pipeline(cfg, run_id="run-00")
    conf = tmp_path / "c.yaml"
    conf.write_text(f"storage: {{uri: '{cfg.storage.uri}'}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "mlops", "report", "-c", str(conf), "-o",
                             str(tmp_path / "out"), "--serve", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = ""
        for _ in range(10):  # the written files, then the URL
            line = proc.stdout.readline()
            if line.startswith("serving "):
                break
        assert line.startswith("serving http://127.0.0.1:"), line
        url = line.split()[1]
        with urllib.request.urlopen(url, timeout=10) as resp:
            page = resp.read().decode()
        assert resp.status == 200 and "<title>mlops run report</title>" in page
        with urllib.request.urlopen(url.replace("report.html", "accuracy.png"),
                                    timeout=10) as resp:
            assert resp.read(8) == b"\x89PNG\r\n\x1a\n"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
