"""The ablation lab (notebooks/09_ablation_lab.ipynb) in a real browser.

JupyterLab runs from this environment on a free local port with a token, with its user state (settings,
workspaces, runtime and data folders) in a temporary folder; Debian's Chromium (/usr/bin/chromium) is driven through
Playwright's Python package (its own browser download is never used). The test runs the notebook, moves the lambda
slider and checks the displayed mAP against the library's value for that lambda, switches the Interaction Adapter off,
presses Run with one seed and waits for the selection's row. A screenshot is saved under the test's tmp_path.

The notebook uses the repository's smoke cache (its CACHE_DIR, ../cache from notebooks/); the fixture fills the
part the notebook needs first, so that a fresh checkout pays the training once, here, and later runs reuse it.
"""
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = "09_ablation_lab.ipynb"
TOKEN = "hoilib-lab-test"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not installed "
                                                                "(apt-get install -y chromium chromium-driver)")]


@pytest.fixture(scope="module")
def lab_cache():
    """The Lab the notebook builds (smoke profile, the repository's cache), with its default selection trained and
    the stored outputs of LAIN seed 0 in place."""
    from hoilib import lab, study

    cfg = study.experiment_config("smoke", cache_dir=str(REPO / "cache"))
    t0 = time.perf_counter()
    the_lab = lab.Lab(cfg)
    the_lab.run_training()
    the_lab.outputs("LAIN", 0)
    print(f"\nsmoke cache ready in {time.perf_counter() - t0:.1f} s")
    return the_lab


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory, lab_cache):
    """JupyterLab serving notebooks/ with a token; user state isolated in a temporary folder."""
    state = tmp_path_factory.mktemp("jupyter")
    settings = state / "settings"
    for plugin, value in (("apputils-extension/notification", {"fetchNews": "false"}),
                          ("docmanager-extension/plugin", {"autosave": False})):
        f = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(state / "ws"),
               JUPYTER_RUNTIME_DIR=str(state / "runtime"), JUPYTER_DATA_DIR=str(state / "data"),
               JUPYTER_CONFIG_DIR=str(state / "config"), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("MPLBACKEND", None)  # the kernel's own inline backend
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1",
                             f"--port={port}", f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={REPO / 'notebooks'}",
                             "--allow-root"], env=env, stdout=subprocess.DEVNULL, stderr=open(state / "server.log", "w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.terminate()
                raise RuntimeError(f"JupyterLab did not start; see {state / 'server.log'}")
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_lab_in_chromium(lab_server, lab_cache, tmp_path):
    from hoilib import lab

    expect = sync_api.expect
    t0 = time.perf_counter()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        try:
            page.goto(f"{lab_server}/lab/tree/{NOTEBOOK}?token={TOKEN}&reset")
            expect(page.locator(".jp-StatusBar-TextItem", has_text="| Idle")).to_be_visible(timeout=60_000)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

            # The lab shows LAIN, seed 0, at its own settings: the library's number.
            own = lab.map_text(lab_cache.inference("LAIN", 0))
            map_line = page.locator(".lab-map")
            expect(map_line).to_have_text(own, timeout=120_000)
            expect(page.locator(".jp-OutputArea-output", has_text="knobs swept")).to_have_count(1, timeout=60_000)

            # Lambda 2.8 -> 2.0 (eight steps of 0.1 to the left): the displayed mAP follows.
            handle = page.locator(".lab-lambda .noUi-handle")
            handle.focus()
            for _ in range(8):
                page.keyboard.press("ArrowLeft")
            expect(page.locator(".lab-lambda .widget-readout")).to_have_text("2.00")
            moved = lab.map_text(lab_cache.inference("LAIN", 0, lam=2.0))
            assert moved != own
            t_slider = time.perf_counter()
            expect(map_line).to_have_text(moved, timeout=10_000)
            slider_s = time.perf_counter() - t_slider

            # A training switch: without the Interaction Adapter, one seed, Run; the new row appears.
            page.locator(".lab-switch-use_ia input[type=checkbox]").click()
            seeds = page.locator(".lab-seeds .noUi-handle")
            seeds.focus()
            page.keyboard.press("ArrowLeft")
            expect(page.locator(".lab-seeds .widget-readout")).to_have_text("1")
            page.locator(".lab-go").click()
            results = page.locator(".lab-results")
            expect(results).to_contain_text("LAIN: use_ia=False", timeout=180_000)
            expect(page.locator(".lab-status")).to_contain_text("done")
            rows = results.locator("tbody tr")
            assert rows.count() == 4  # LAIN (full, unseen) and the new selection (full, unseen)
            assert re.search(r"LAIN: use_ia=False\s+nf_uc\s+1\s+full", rows.nth(2).inner_text())
            expect(page.locator(".lab-go")).to_be_enabled()
            results.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "ablation_lab.png"))
        finally:
            browser.close()
    assert (tmp_path / "ablation_lab.png").stat().st_size > 0
    print(f"\nbrowser part {time.perf_counter() - t0:.1f} s; slider answer seen after {slider_s:.2f} s; "
          f"screenshot {tmp_path / 'ablation_lab.png'}")
