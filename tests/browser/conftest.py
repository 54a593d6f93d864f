"""Fixtures for the browser tests: `portal serve` processes and Chromium.

The tests drive Debian's Chromium (/usr/bin/chromium, installed by
scripts/test.sh when missing) through Playwright for Python; Playwright never
downloads a browser of its own here. Each server runs the `portal` binary
built by cargo (PORTAL_BIN, default target/debug/portal) with its own dev
signing key in a temporary directory, on a free loopback port.
"""

import json
import os
import re
import subprocess
import threading
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "target" / "screenshots"
CHROMIUM = os.environ.get("PORTAL_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {"width": 360, "height": 740}


class Portal:
    """A `portal serve` child process; `base` is its http://127.0.0.1:PORT."""

    def __init__(self, tmp: Path, rate_limit: int):
        binary = os.environ.get("PORTAL_BIN", str(ROOT / "target" / "debug" / "portal"))
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"{binary} not found: run `cargo build --bin portal` first (scripts/test.sh does)")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
        env["PORTAL_DEV_KEY_FILE"] = str(tmp / "dev-signing-key.p8")
        env["PORTAL_KEY_RATE_LIMIT"] = str(rate_limit)
        self.proc = subprocess.Popen(
            [binary, "serve", "--addr", "127.0.0.1:0"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log = []
        found = threading.Event()

        def drain():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"listening addr=(\S+)", line)
                if m and not found.is_set():
                    self.base = f"http://{m.group(1)}"
                    found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(60):
            self.stop()
            raise RuntimeError("portal serve did not start:\n" + "".join(self.log))

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="session")
def portal(tmp_path_factory):
    p = Portal(tmp_path_factory.mktemp("portal"), rate_limit=1000)
    yield p
    p.stop()


@pytest.fixture(scope="session")
def strict_portal(tmp_path_factory):
    """A second server allowing one key per caller and hour (the 429 case)."""
    p = Portal(tmp_path_factory.mktemp("strict"), rate_limit=1)
    yield p
    p.stop()


@pytest.fixture(scope="session")
def seed():
    """Recovery passwords of the demo data, by key ID."""
    data = json.loads((ROOT / "src" / "tools" / "demo-seed.json").read_text())
    return {k["key_id"]: k["recovery_password"] for d in data["devices"] for k in d["recovery_keys"]}


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser context at phone size; fails the test on any CSP
    violation or uncaught script error, and saves a final screenshot."""
    context = browser.new_context(viewport=PHONE)
    pg = context.new_page()
    problems = []
    pg.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}")
        if "Content Security Policy" in m.text or "Content-Security-Policy" in m.text
        else None,
    )
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    yield pg
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        pg.screenshot(path=str(SCREENSHOTS / f"{request.node.name}-end.png"), full_page=True)
    except Exception:  # the page may already be gone
        pass
    context.close()
    assert not problems, "\n".join(problems)
