"""JupyterLab as a user sees it: the Table 1 notebook opened in headless Chromium renders its title and parameters,
and a cell run there with Shift+Enter shows a stage's progress as an ipywidgets bar.

The server is started by README's command, `make lab` (run without its `install` prerequisite, with this
environment's jupyter), on a free local port with a random token, its configuration, data, runtime, settings and
workspaces in a temporary folder (so nothing of `~/.jupyter` leaks in), and its two internet features (news,
update check) switched off. Its log must not carry ipykernel's warning about unencrypted kernel channels. The browser is Debian's `chromium`, driven by Playwright with
that executable: `playwright install` is never run (it downloads a browser). The notebook is a copy in a
temporary root, so that autosave cannot touch `nbs/`. The page must make no request outside 127.0.0.1.

Two pitfalls, found while building this test, shape the code: the browser is closed only once no HTTP request
has been in flight for half a second (a shutdown that arrives while Lab's start-up `GET /api/nbconvert` runs can
hang jupyter_server for good, the class of jupyterlab/jupyterlab#10442), and the server is killed if it has not
stopped 10 s after `POST /api/shutdown`. Locally the test is skipped when Chromium or Playwright is missing; in
CI (`CI` set) that is a failure.
"""
import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "nbs" / "tab1_tagood.ipynb"
SCREENSHOTS = REPO / "runs" / "screenshots"  # runs/ is gitignored
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVER_CONFIG = """\
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.handlers.announcements.NeverCheckForUpdate"
c.LabApp.extension_manager = "readonly"
"""


def require_browser() -> None:
    "Skip (locally) or fail (in CI) when the browser or its driver is missing."
    missing = []
    if not Path(CHROMIUM).is_file():
        missing.append("Debian's chromium (`make install` installs it: apt-get install chromium fonts-liberation)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (the dev extra: pip install -e '.[dev]')")
    if missing:
        message = "JupyterLab browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def make_environment() -> dict:
    "This process's environment without what an enclosing `make test` hands its sub-makes (its variables, its level)."
    return {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


def lab_command(*variables: str, dry_run: bool = False) -> list:
    "`make lab` with `variables`, without remaking `install` (the environment is the one running this test)."
    return ["make", "--no-print-directory", *(["--dry-run"] if dry_run else []), "--old-file=install", "lab", *variables]


def test_make_lab_allows_root_only_for_root():
    "`jupyter lab` refuses to run as root without --allow-root; the recipe passes it exactly when uid is 0."
    recipe = subprocess.run(lab_command(dry_run=True), cwd=REPO, env=make_environment(), capture_output=True,
                            text=True, check=True).stdout.split()
    assert recipe[:2] == [".venv/bin/jupyter", "lab"] and "--ServerApp.root_dir=nbs" in recipe, recipe
    assert ("--allow-root" in recipe) == (os.getuid() == 0), recipe
    assert "--KernelManager.transport_encryption=auto" in recipe, recipe


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LabServer:
    def __init__(self, process: subprocess.Popen, port: int, token: str, log: Path):
        self.process, self.port, self.token, self.log = process, port, token, log

    def url(self, notebook: str) -> str:
        return f"http://127.0.0.1:{self.port}/lab/tree/{notebook}?token={self.token}"

    def api(self, path: str, method: str = "GET", timeout: float = 5.0):
        "(status, parsed JSON or None) of a REST call with the token."
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            return response.status, (json.loads(body) if body else None)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def wait_until(condition, timeout: float, what: str, server: LabServer) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"jupyter lab exited ({server.process.returncode}) while waiting for {what}:\n"
                                 f"{server.log_tail()}")
        try:
            if condition():
                return
        except (OSError, urllib.error.URLError, ValueError):
            pass  # not up yet, or a transient 500 while the kernel starts
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{server.log_tail()}")


@contextlib.contextmanager
def jupyter_lab(root: Path, work: Path):
    "A JupyterLab server on a free port, isolated in `work`; shut down (or killed) on exit."
    folders = {name: work / name.lower() for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR",
                                                        "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    (folders["JUPYTER_CONFIG_DIR"] / "jupyter_server_config.py").write_text(SERVER_CONFIG)
    notification = folders["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = make_environment()
    env.pop("JUPYTER_TOKEN", None)
    env.update({name: str(folder) for name, folder in folders.items()}, HF_HUB_OFFLINE="1")
    port, token, log = free_port(), secrets.token_hex(16), work / "jupyter_lab.log"
    options = (f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} --ServerApp.port_retries=0 "
               f"--IdentityProvider.token={token}")
    command = lab_command(f"VENV={sys.prefix}", f"LAB_DIR={root.resolve()}", f"LAB_ARGS={options}")
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = LabServer(process, port, token, log)
    try:
        wait_until(lambda: server.api("/api/status")[0] == 200, 60, "the server to answer", server)
        yield server
    finally:
        try:
            server.api("/api/shutdown", method="POST")
        except (OSError, urllib.error.URLError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # the AnyIO-worker hang: SIGTERM cannot end it
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for_quiet(page, pending: dict) -> None:
    "Until no request of `page` has been in flight for 0.5 s (see the module docstring)."
    quiet_since, deadline = time.monotonic(), time.monotonic() + 30
    while time.monotonic() - quiet_since < 0.5:
        assert time.monotonic() < deadline, f"requests still in flight after 30 s: {list(pending.values())}"
        page.wait_for_timeout(100)  # Playwright dispatches request events only inside its own calls
        if pending:
            quiet_since = time.monotonic()


def track_requests(page, pending: dict) -> None:
    "Keep `pending` (id → URL) up to date with the requests of `page` in flight."
    page.on("request", lambda request: pending.__setitem__(id(request), request.url))
    page.on("requestfinished", lambda request: pending.pop(id(request), None))
    page.on("requestfailed", lambda request: pending.pop(id(request), None))


def parameters_cell(notebook: Path) -> list:
    "The source lines of the cell tagged `parameters`."
    cells = json.loads(notebook.read_text())["cells"]
    tagged = [cell for cell in cells if "parameters" in cell["metadata"].get("tags", [])]
    assert len(tagged) == 1
    return "".join(tagged[0]["source"]).splitlines()


def test_table_notebook_renders_in_jupyterlab(tmp_path):
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    started = time.monotonic()
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    n_cells = len(json.loads(NOTEBOOK.read_text())["cells"])
    first_parameter, second_parameter = parameters_cell(NOTEBOOK)[:2]
    external, pending = [], {}

    def on_request(request):
        if urlparse(request.url).hostname not in ("127.0.0.1", "localhost", None):
            external.append(request.url)

    with jupyter_lab(root, tmp_path / "jupyter") as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", on_request)
            track_requests(page, pending)
            page.goto(server.url(NOTEBOOK.name), wait_until="domcontentloaded", timeout=60_000)

            panel = page.locator(".jp-NotebookPanel", has=page.locator(".jp-Notebook"))
            expect(panel.locator(".jp-Notebook .jp-Cell")).to_have_count(n_cells, timeout=60_000)
            title = panel.locator(".jp-MarkdownCell .jp-RenderedMarkdown h1", has_text="TagOOD Table 1")
            expect(title).to_be_visible(timeout=30_000)
            expect(title).to_be_in_viewport()
            editor = panel.locator(".jp-CodeCell .jp-InputArea-editor .cm-content", has_text=first_parameter.split("#")[0].strip())
            editor.scroll_into_view_if_needed(timeout=30_000)
            expect(editor).to_be_in_viewport()
            expect(editor).to_contain_text(second_parameter.split("#")[0].strip())
            expect(editor).to_contain_text("tau = 0.5")

            # the kernel must be running and idle: the notebook can be run from here
            wait_until(lambda: any(kernel["execution_state"] == "idle" and kernel["connections"] > 0
                                   for kernel in server.api("/api/kernels")[1]), 60, "an idle kernel", server)
            wait_for_quiet(page, pending)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            screenshot = SCREENSHOTS / "tab1_tagood.png"
            page.screenshot(path=str(screenshot))
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
    assert not external, f"the page contacted other hosts: {external[:5]}"
    server_log = server.log.read_text(errors="replace")
    assert "Kernel started" in server_log and "without encryption" not in server_log, server.log_tail()
    print(f"JupyterLab test: {time.monotonic() - started:.1f} s, screenshot {screenshot}")


PROGRESS_CELL = """\
from ood_repro.config import progress_bar, progress_style
for step in progress_bar(range(3), desc="widget stage", unit="steps"):
    pass
print("style:", progress_style())"""


def test_progress_bar_renders_as_a_widget(tmp_path):
    "Run in JupyterLab (the user's Shift+Enter), a stage's progress is an ipywidgets bar, not text."
    require_browser()
    import nbformat
    from playwright.sync_api import expect, sync_playwright

    root = tmp_path / "root"
    root.mkdir()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROGRESS_CELL)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(notebook, root / "progress.ipynb")
    pending = {}
    with jupyter_lab(root, tmp_path / "jupyter") as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            track_requests(page, pending)
            page.goto(server.url("progress.ipynb"), wait_until="domcontentloaded", timeout=60_000)
            panel = page.locator(".jp-NotebookPanel", has=page.locator(".jp-Notebook"))
            editor = panel.locator(".jp-CodeCell .jp-InputArea-editor .cm-content")
            expect(editor).to_contain_text("widget stage", timeout=60_000)
            wait_until(lambda: any(kernel["execution_state"] == "idle" and kernel["connections"] > 0
                                   for kernel in server.api("/api/kernels")[1]), 60, "an idle kernel", server)
            editor.click()
            page.keyboard.press("Shift+Enter")
            output = panel.locator(".jp-CodeCell").first.locator(".jp-OutputArea")  # Shift+Enter added a cell below
            expect(output).to_contain_text("style: widget", timeout=60_000)
            bar = output.locator(".widget-hprogress")  # tqdm.notebook's FloatProgress, drawn by jupyterlab_widgets
            expect(bar).to_be_visible(timeout=30_000)
            expect(output).to_contain_text("widget stage")
            expect(output).to_contain_text("3/3")
            expect(output).not_to_contain_text("IProgress not found")
            wait_for_quiet(page, pending)
        finally:
            browser.close()
