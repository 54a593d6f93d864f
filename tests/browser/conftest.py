"""Fixtures for the browser tests: `portal serve` processes, a real OpenID
provider (node-oidc-provider) and Chromium.

The tests drive Debian's Chromium (/usr/bin/chromium, installed by
scripts/test.sh when missing) through Playwright for Python; Playwright never
downloads a browser of its own here. Each server runs the `portal` binary
built by cargo (PORTAL_BIN, default target/debug/portal) with its own dev
signing key in a temporary directory, on a free loopback port. The OpenID
provider is tests/browser/oidc/provider.mjs under Node, with the
`oidc-provider` package scripts/test.sh installs there (`npm ci`).
"""

import json
import os
import re
import shutil
import socket
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Portal:
    """A `portal serve` child process; `base` is its http://127.0.0.1:PORT."""

    @staticmethod
    def binary() -> str:
        binary = os.environ.get("PORTAL_BIN", str(ROOT / "target" / "debug" / "portal"))
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"{binary} not found: run `cargo build --bin portal` first (scripts/test.sh does)")
        return binary

    def __init__(self, tmp: Path, rate_limit: int, port: int = 0, env_extra: dict | None = None):
        binary = self.binary()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
        env["PORTAL_DEV_KEY_FILE"] = str(tmp / "dev-signing-key.p8")
        env["PORTAL_KEY_RATE_LIMIT"] = str(rate_limit)
        env.update(env_extra or {})
        self.proc = subprocess.Popen(
            [binary, "serve", "--addr", f"127.0.0.1:{port}"],
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


OIDC_DIR = ROOT / "tests" / "browser" / "oidc"
API_AUDIENCE = "api://recovery-portal"


class OidcProvider:
    """node-oidc-provider (tests/browser/oidc/provider.mjs) on loopback:
    `issuer` is http://127.0.0.1:PORT. Its signing key lives in `keys`;
    `restart(rotate=True)` starts it again with a new key (the old one is
    withdrawn from its JWKS)."""

    def __init__(self, tmp: Path, redirects: list[str]):
        node = shutil.which("node")
        if not node or not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(
                "node-oidc-provider is not installed: run `npm ci` in tests/browser/oidc (scripts/test.sh does)"
            )
        self.node, self.tmp, self.redirects = node, tmp, redirects
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.generation = 0
        self.proc = None
        self.log = []
        self.start()

    @property
    def keys(self) -> Path:
        return self.tmp / f"signing-key-{self.generation}.json"

    def start(self):
        args = [self.node, str(OIDC_DIR / "provider.mjs"), "--port", str(self.port), "--keys", str(self.keys)]
        for r in self.redirects:
            args += ["--redirect", r]
        self.proc = subprocess.Popen(
            args, cwd=OIDC_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        found = threading.Event()

        def drain(proc):
            for line in proc.stdout:
                self.log.append(line)
                if line.startswith("listening "):
                    found.set()

        threading.Thread(target=drain, args=(self.proc,), daemon=True).start()
        if not found.wait(30):
            self.stop()
            raise RuntimeError("node-oidc-provider did not start:\n" + "".join(self.log))

    def stop(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self, rotate: bool = False):
        self.stop()
        if rotate:
            self.generation += 1
        self.start()


class ProviderSetup:
    """Loopback ports chosen up front, so the provider can list every
    portal's page as a redirect URI and every portal can name the issuer."""

    def __init__(self, tmp_path_factory):
        self.ports = {name: free_port() for name in ("main", "keys", "outage", "maxage")}
        redirects = [f"http://127.0.0.1:{p}/" for p in self.ports.values()]
        self.provider = OidcProvider(tmp_path_factory.mktemp("oidc"), redirects)
        self.tmp_path_factory = tmp_path_factory

    def portal(self, name: str, **env) -> Portal:
        """A `portal serve` signing in at the provider, as its documented
        minimum setup needs: the API's resource indicator, and the
        provider's claims (`tenant`, `sub`) mapped."""
        settings = {
            "PORTAL_ISSUER": self.provider.issuer,
            "PORTAL_AUDIENCE": API_AUDIENCE,
            "PORTAL_WEB_AUTH_PARAMS": f"resource={API_AUDIENCE}",
            "PORTAL_TENANT_CLAIM": "tenant",
            "PORTAL_USER_CLAIM": "sub",
        }
        settings.update(env)
        return Portal(self.tmp_path_factory.mktemp(name), rate_limit=1000, port=self.ports[name], env_extra=settings)


@pytest.fixture(scope="session")
def oidc(tmp_path_factory):
    setup = ProviderSetup(tmp_path_factory)
    yield setup
    setup.provider.stop()


@pytest.fixture(scope="session")
def oidc_portal(oidc):
    p = oidc.portal("main")
    yield p
    p.stop()


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
