"""The portal page against a real OpenID provider: node-oidc-provider (panva,
OpenID Certified) in its documented minimum setup for a public SPA client
with PKCE and an API addressed by a resource indicator (RFC 8707), JWT
access tokens signed PS256, and `tenant`/`sub`/`roles` claims (see
tests/browser/oidc/provider.mjs). The portal is configured only through its
documented variables: PORTAL_ISSUER, PORTAL_AUDIENCE,
PORTAL_WEB_AUTH_PARAMS=resource=api://recovery-portal, PORTAL_TENANT_CLAIM
and PORTAL_USER_CLAIM.

The tests that restart the provider (an outage, a key rotation) come last:
the key rotation withdraws the key every earlier sign-in was signed with.
"""

import json
import re
import subprocess
import time
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Page, expect

from conftest import API_AUDIENCE, Portal
from test_portal import ALICE_LAPTOP_KEY, assert_not_kept, device_card, shot


def provider_login(page: Page, provider, user: str, screenshot: str | None = None):
    """The provider's own login page, then its consent page when it asks."""
    page.wait_for_url(re.compile(re.escape(provider.issuer) + r"/interaction/"))
    expect(page.locator("input[name=login]")).to_be_visible()
    if screenshot:
        shot(page, screenshot)
    page.locator("input[name=login]").fill(user)
    page.locator("input[name=password]").fill("any password")
    page.get_by_role("button", name="Sign-in").click()
    consent = page.get_by_role("button", name="Continue")
    signed_in = page.locator("#nav button#sign-out")
    expect(consent.or_(signed_in)).to_be_visible()
    if consent.is_visible():
        consent.click()
    expect(signed_in).to_be_visible()
    assert "code=" not in page.url and "state=" not in page.url, page.url


def sign_in(page: Page, portal: Portal, provider, user: str, screenshot: str | None = None):
    page.goto(portal.base + "/")
    page.get_by_role("button", name="Sign in").click()
    provider_login(page, provider, user, screenshot)


def authorization_requests(page: Page, provider) -> list:
    """The query of every authorization request the page sends, and the
    form of every token request."""
    seen = []

    def record(request):
        if request.url.startswith(provider.issuer + "/auth?"):
            seen.append(("auth", parse_qs(urlsplit(request.url).query)))
        elif request.url == provider.issuer + "/token" and request.method == "POST":
            seen.append(("token", parse_qs(request.post_data or "")))

    page.on("request", record)
    return seen


def test_sign_in_read_a_key_sign_out_and_be_asked_for_a_password_again(page: Page, oidc, oidc_portal, seed):
    provider = oidc.provider
    page.clock.install()
    seen = authorization_requests(page, provider)
    sign_in(page, oidc_portal, provider, "alice", screenshot="provider-login-360")
    # RFC 8707: the resource in the authorization and the token request;
    # the page's own parameters are its own.
    auth = dict(seen)["auth"]
    assert auth["resource"] == [API_AUDIENCE], auth
    assert auth["code_challenge_method"] == ["S256"] and auth["client_id"] == ["recovery-portal-web"]
    assert dict(seen)["token"]["resource"] == [API_AUDIENCE]
    # The access token is the provider's JWT for the API, with its claims.
    claims = page.evaluate(
        """() => {
            const t = JSON.parse(sessionStorage.getItem("portal.session")).access_token;
            return JSON.parse(atob(t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
        }"""
    )
    assert claims["aud"] == API_AUDIENCE and claims["sub"] == "alice" and claims["tenant"] == "contoso", claims
    expect(page.get_by_role("heading", name="Your devices")).to_be_visible()
    expect(page.locator("#who")).to_have_text("Signed in as alice")
    laptop = device_card(page, "Alice's work laptop")
    laptop.get_by_role("button", name="Get recovery key").click()
    expected = seed[ALICE_LAPTOP_KEY]
    expect(page.get_by_test_id("recovery-password")).to_have_text(expected)
    # Five minutes later the key is gone, and Sign out is what is offered.
    page.clock.run_for(300_000)
    expect(page.get_by_test_id("recovery-password")).to_have_count(0)
    finish = page.get_by_test_id("finish")
    expect(finish).to_contain_text("isn't yours")
    shot(page, "provider-key-hidden-360")
    finish.get_by_role("button", name="Sign out").click()

    # RP-initiated logout: the provider asks, then comes back to the page.
    page.wait_for_url(re.compile(re.escape(provider.issuer) + r"/session/end"))
    shot(page, "provider-logout-360")
    page.get_by_role("button", name=re.compile("Yes, sign me out", re.I)).click()
    page.wait_for_url(oidc_portal.base + "/")
    expect(page.get_by_role("status")).to_contain_text("You are signed out.")
    assert_not_kept(page, expected)
    assert page.evaluate("sessionStorage.getItem('portal.session')") is None
    shot(page, "provider-signed-out-360")

    # The next person who presses Sign in is asked for a password.
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(provider.issuer) + r"/interaction/"))
    expect(page.locator("input[name=password]")).to_be_visible()
    expect(page.locator("input[name=password]")).to_have_value("")


def test_a_helpdesk_agent_from_the_roles_claim_starts_on_the_helpdesk(page: Page, oidc, oidc_portal, seed):
    sign_in(page, oidc_portal, oidc.provider, "agent")
    expect(page.get_by_role("heading", name="Helpdesk: find a recovery key")).to_be_visible()
    expect(page.get_by_role("button", name="Helpdesk")).to_have_attribute("aria-current", "page")
    page.get_by_label("Key ID from the user's recovery screen").fill("3B8FAA18")
    page.get_by_role("button", name="Find device").click()
    page.get_by_label(re.compile("^Reason")).fill("ticket 4711")
    page.get_by_role("button", name="Get recovery key").click()
    expect(page.get_by_test_id("recovery-password")).to_have_text(seed[ALICE_LAPTOP_KEY])


def test_max_age_asks_the_provider_for_a_recent_sign_in(page: Page, oidc):
    portal = oidc.portal("maxage", PORTAL_WEB_MAX_AGE="600")
    try:
        seen = authorization_requests(page, oidc.provider)
        sign_in(page, portal, oidc.provider, "alice")
        assert dict(seen)["auth"]["max_age"] == ["600"]
        expect(page.get_by_role("heading", name="Your devices")).to_be_visible()
        assert page.evaluate("fetch('/config.json').then(r => r.json())")["max_age"] == 600
    finally:
        portal.stop()


def test_portal_serve_refuses_an_issuer_that_discovery_does_not_name(oidc, tmp_path):
    """A trailing slash is another issuer (OIDC Discovery §4.3): start-up
    stops with both values rather than serving 503s forever."""
    with_slash = oidc.provider.issuer + "/"
    binary = Portal.binary()
    run = subprocess.run(
        [binary, "serve", "--addr", "127.0.0.1:0"],
        env={
            "PATH": "/usr/bin:/bin",
            "PORTAL_DEV_KEY_FILE": str(tmp_path / "k.p8"),
            "PORTAL_ISSUER": with_slash,
            "PORTAL_AUDIENCE": API_AUDIENCE,
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode != 0
    assert with_slash in run.stderr and f'"{oidc.provider.issuer}"' in run.stderr, run.stderr


def test_the_provider_stopped_is_503_then_recovers(page: Page, oidc):
    provider = oidc.provider
    portal = oidc.portal("outage")
    try:
        # Signed in, but the API not called yet: its keys are not fetched.
        page.route(f"{portal.base}/v1/**", lambda route: route.abort())
        sign_in(page, portal, provider, "alice")
        expect(page.get_by_role("button", name="Try again")).to_be_visible()
        provider.stop()
        page.unroute(f"{portal.base}/v1/**")
        with page.expect_response(f"{portal.base}/v1/devices") as r:
            page.get_by_role("button", name="Try again").click()
        assert r.value.status == 503
        assert r.value.json()["type"].endswith("/identity-provider-unavailable")
        expect(page.get_by_role("alert")).to_contain_text("Try again in a few seconds")
        shot(page, "provider-down-360")
        provider.restart()
        # After the back-off (1 s after the first failure) it answers again.
        for _ in range(10):
            time.sleep(1)
            page.get_by_role("button", name="Try again").click()
            heading = page.get_by_role("heading", name="Your devices")
            try:
                expect(heading).to_be_visible(timeout=3000)
                break
            except AssertionError:
                continue
        expect(page.get_by_role("heading", name="Your devices")).to_be_visible()
    finally:
        portal.stop()
        if provider.proc is None:
            provider.start()


def test_a_token_signed_by_a_withdrawn_key_is_refused(page: Page, oidc):
    provider = oidc.provider
    portal = oidc.portal("keys")
    try:
        page.route(f"{portal.base}/v1/**", lambda route: route.abort())
        sign_in(page, portal, provider, "alice")
        expect(page.get_by_role("button", name="Try again")).to_be_visible()
        # The provider rotates its key: the page's token is signed by a key
        # its JWKS no longer lists.
        provider.restart(rotate=True)
        page.unroute(f"{portal.base}/v1/**")
        with page.expect_response(f"{portal.base}/v1/devices") as r:
            page.get_by_role("button", name="Try again").click()
        assert r.value.status == 401
        challenge = r.value.headers["www-authenticate"]
        assert challenge == 'Bearer error="invalid_token", error_description="unknown signing key"', challenge
        body = r.value.json()
        assert body["type"].endswith("/unauthenticated") and "Sign in" in body["detail"], json.dumps(body)
        expect(page.get_by_role("alert")).to_contain_text("Sign in again")
        # Signing in again (a password: the provider restarted) gets a token
        # signed by the new key.
        page.get_by_role("button", name="Sign in").click()
        provider_login(page, provider, "alice")
        expect(page.get_by_role("heading", name="Your devices")).to_be_visible()
    finally:
        portal.stop()
