"""The portal page in Chromium, as a person uses it on a phone (360 x 740):
sign in through the development identity provider's form, read a key that
disappears after display_seconds (with Playwright's clock, not real
minutes), the helpdesk card, the error messages, and the helpdesk and audit
screens. Every test also fails on a CSP violation (see conftest.py).
"""

import json
import re

from playwright.sync_api import Page, expect

from conftest import SCREENSHOTS

ALICE_LAPTOP_KEY = "3B8FAA18-37F8-488B-97FC-695A07A0CA6E"  # newest OS key of DESKTOP-7Q2M4K1


def shot(page: Page, name: str):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, base: str, tenant: str, user: str, scope: str):
    page.goto(base + "/")
    page.get_by_role("button", name="Sign in").click()
    # The development identity provider's form: inputs tenant, user, scope.
    page.wait_for_url(re.compile(r"/authorize\?"))
    page.locator("input[name=tenant]").fill(tenant)
    page.locator("input[name=user]").fill(user)
    page.locator("input[name=scope]").fill(scope)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    # Back on the portal, the code is gone from the address bar.
    assert "code=" not in page.url and "state=" not in page.url, page.url


def device_card(page: Page, name: str):
    return page.locator("li.card").filter(has=page.get_by_role("heading", name=name, exact=True))


def stored_everywhere(page: Page) -> str:
    """Everything a later visitor could find: storage, URL, title, history length."""
    return page.evaluate(
        """() => JSON.stringify({
            local: Object.entries(localStorage),
            session: Object.entries(sessionStorage),
            url: location.href,
            title: document.title,
        })"""
    )


def assert_not_kept(page: Page, password: str):
    kept = stored_everywhere(page)
    digits = password.replace("-", "")
    assert password not in kept and digits not in kept, kept
    for group in password.split("-"):
        assert group not in page.url and group not in page.title()
    assert json.loads(kept)["local"] == [], "nothing may be kept in localStorage"


def test_sign_in_read_the_key_and_it_disappears_after_display_seconds(page: Page, portal, seed):
    page.clock.install()
    sign_in(page, portal.base, "contoso", "alice", "RecoveryKey.Read")
    expect(page.get_by_role("heading", name="Your devices")).to_be_visible()
    laptop = device_card(page, "Alice's work laptop")
    expect(laptop).to_contain_text("Windows 11 Enterprise 24H2")
    expect(laptop).to_contain_text("Organization device")
    expect(laptop).to_contain_text("3B8FAA18")
    expect(laptop).to_contain_text("Operating system drive")
    expect(device_card(page, "Alice's home PC")).to_contain_text("Personal device")
    # The token lives in sessionStorage at most, never in localStorage.
    assert page.evaluate("localStorage.length") == 0
    shot(page, "devices-360")

    laptop.get_by_role("button", name="Get recovery key").click()
    password = page.get_by_test_id("recovery-password")
    expect(password).to_be_visible()
    expected = seed[ALICE_LAPTOP_KEY]
    assert password.text_content() == expected
    assert re.sub(r"\D", "", password.inner_text()) == expected.replace("-", "")
    expect(page.locator("code.keyid")).to_have_text(ALICE_LAPTOP_KEY)
    countdown = page.get_by_test_id("countdown")
    expect(countdown).to_have_attribute("aria-live", "polite")
    expect(countdown).to_contain_text("5:00")
    # Nothing is wider than the phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    shot(page, "key-view-360")
    assert_not_kept(page, expected)

    page.clock.run_for(60_000)
    expect(countdown).to_contain_text("4:00")
    page.clock.run_for(239_000)
    expect(countdown).to_contain_text("0:01")
    expect(password).to_be_visible()
    page.clock.run_for(1_000)
    # At zero the password is removed from the DOM, not hidden with CSS.
    expect(page.get_by_test_id("recovery-password")).to_have_count(0)
    expect(page.get_by_test_id("countdown")).to_have_count(0)
    assert expected not in page.content()
    assert expected.split("-")[3] not in page.content()
    expect(page.get_by_text("no longer shown")).to_be_visible()
    assert_not_kept(page, expected)
    shot(page, "key-hidden-360")


def test_a_tab_back_from_the_background_drops_an_expired_key_at_once(page: Page, portal, seed):
    """A phone that backgrounds the tab throttles or freezes its timers while
    the wall clock runs on. Here Playwright's clock is paused (no timer
    fires) and its system time moved past display_seconds; the key must go
    the moment the page is visible again (visibilitychange, pageshow), not
    at some later tick."""
    page.clock.install()
    sign_in(page, portal.base, "contoso", "alice", "RecoveryKey.Read")
    laptop = device_card(page, "Alice's work laptop")
    expected = seed[ALICE_LAPTOP_KEY]

    for event in ["visibilitychange", "pageshow"]:
        page.clock.resume()
        if event == "visibilitychange":
            laptop.get_by_role("button", name="Get recovery key").click()
        else:
            page.get_by_role("button", name="Show the key again").click()
        password = page.get_by_test_id("recovery-password")
        expect(password).to_have_text(expected)
        expect(page.get_by_test_id("countdown")).to_contain_text("5:00")
        # In the background: timers stop, the wall clock does not.
        # (Playwright for Python takes these times in seconds.)
        now = page.evaluate("Date.now()") / 1000
        page.clock.pause_at(now + 1)
        page.clock.set_system_time(now + 301)
        # No timer ran, so the key is still in the DOM...
        expect(password).to_have_text(expected)
        # ...until the page is shown again.
        if event == "visibilitychange":
            page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
        else:
            page.evaluate("window.dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))")
        expect(page.get_by_test_id("recovery-password")).to_have_count(0, timeout=2_000)
        expect(page.get_by_test_id("countdown")).to_have_count(0)
        expect(page.get_by_text("Time is up")).to_be_visible()
        assert expected.split("-")[3] not in page.content()


def test_hide_now_copy_and_sign_out(page: Page, portal, seed):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, portal.base, "contoso", "alice", "RecoveryKey.Read")
    desktop = device_card(page, "Alice's desktop")
    # Keyboard only: Tab to the button, Enter; focus is visible.
    button = desktop.get_by_role("button", name="Get recovery key")
    for _ in range(40):
        page.keyboard.press("Tab")
        if button.evaluate("b => b === document.activeElement"):
            break
    else:
        raise AssertionError("Get recovery key cannot be reached with Tab")
    assert button.evaluate("b => getComputedStyle(b).outlineStyle") != "none"
    page.keyboard.press("Enter")
    expected = seed["43B7A3A6-9A8D-4A03-980D-7B71D8F56413"]
    expect(page.get_by_test_id("recovery-password")).to_have_text(expected)
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("status").filter(has_text="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == expected
    page.get_by_role("button", name="Hide now").click()
    expect(page.get_by_test_id("recovery-password")).to_have_count(0)
    assert expected not in page.content()
    assert page.evaluate("navigator.clipboard.readText()") == ""
    # The key view's end offers Sign out, for a device that isn't yours.
    finish = page.get_by_test_id("finish")
    expect(finish).to_contain_text("isn't yours")
    finish.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    # The dev identity provider has no end_session_endpoint: the page says
    # the organisation's session may still be open.
    expect(page.get_by_test_id("signout-note")).to_contain_text("may still be open")
    assert page.evaluate("sessionStorage.length") == 0
    assert_not_kept(page, expected)


def test_personal_device_and_device_without_key_show_the_helpdesk(page: Page, portal):
    sign_in(page, portal.base, "contoso", "alice", "RecoveryKey.Read")
    device_card(page, "Alice's home PC").get_by_role("button", name="Get help").click()
    card = page.get_by_test_id("helpdesk")
    expect(card).to_be_visible()
    expect(card).to_contain_text(re.compile("contact your company's IT support", re.I))
    expect(card).to_contain_text("Contoso IT Helpdesk")
    expect(card).to_contain_text("helpdesk@contoso.example")
    expect(card).to_contain_text("+1 555 0100")
    expect(card.get_by_role("link", name="helpdesk@contoso.example")).to_have_attribute(
        "href", "mailto:helpdesk@contoso.example"
    )
    expect(page.get_by_text("personal device")).to_be_visible()
    shot(page, "helpdesk-card-360")
    page.get_by_role("button", name="Back to devices").click()
    device_card(page, "Alice's test laptop").get_by_role("button", name="Get help").click()
    expect(page.get_by_test_id("helpdesk")).to_contain_text("Contoso IT Helpdesk")


def test_self_service_off_tenant_shows_the_helpdesk(page: Page, portal):
    sign_in(page, portal.base, "fabrikam", "carol", "RecoveryKey.Read")
    device_card(page, "Carol's laptop").get_by_role("button", name="Get recovery key").click()
    card = page.get_by_test_id("helpdesk")
    expect(card).to_contain_text("Fabrikam Service Desk")
    expect(card).to_contain_text("servicedesk@fabrikam.example")
    expect(page.get_by_text("does not let you read recovery keys yourself")).to_be_visible()
    expect(page.get_by_test_id("recovery-password")).to_have_count(0)


def test_rate_limit_says_when_to_try_again(page: Page, strict_portal, seed):
    sign_in(page, strict_portal.base, "contoso", "bob", "RecoveryKey.Read")
    device_card(page, "Bob's workstation").get_by_role("button", name="Get recovery key").click()
    expect(page.get_by_test_id("recovery-password")).to_have_text(seed["A9488D99-0BBB-4599-91CE-5DD2B45ED1F0"])
    page.get_by_role("button", name="Hide now").click()
    page.get_by_role("button", name="Show the key again").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(re.compile(r"Try again in (59|60) minutes \(at \d"))
    assert "{" not in alert.inner_text(), "raw JSON shown to a person"
    expect(page.get_by_test_id("recovery-password")).to_have_count(0)
    shot(page, "rate-limited-360")


def test_unavailable_says_retry_shortly_and_retry_works(page: Page, portal, seed):
    sign_in(page, portal.base, "contoso", "alice", "RecoveryKey.Read")
    problem = {
        "type": "https://recovery-portal.dev/problems/unavailable",
        "title": "Temporarily unavailable",
        "status": 503,
        "detail": "raw detail",
        "request_id": "r-1",
    }
    page.route(
        "**/v1/devices/*/recovery-key",
        lambda route: route.fulfill(
            status=503,
            headers={"Retry-After": "2", "Content-Type": "application/problem+json"},
            body=json.dumps(problem),
        ),
    )
    device_card(page, "Alice's work laptop").get_by_role("button", name="Get recovery key").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Try again in a few seconds")
    assert "{" not in alert.inner_text() and "request_id" not in alert.inner_text()
    page.unroute("**/v1/devices/*/recovery-key")
    page.get_by_role("button", name="Try again").click()
    expect(page.get_by_test_id("recovery-password")).to_have_text(seed[ALICE_LAPTOP_KEY])


def test_expired_or_invalid_token_goes_back_to_sign_in(page: Page, portal):
    sign_in(page, portal.base, "contoso", "alice", "RecoveryKey.Read")
    # Another signature on the same claims: the API answers 401.
    page.evaluate(
        """() => {
            const s = JSON.parse(sessionStorage.getItem("portal.session"));
            const [h, p] = s.access_token.split(".");
            s.access_token = `${h}.${p}.AAAA`;
            sessionStorage.setItem("portal.session", JSON.stringify(s));
        }"""
    )
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("Sign in again")
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('portal.session')") is None


def test_a_forged_sign_in_response_is_refused(page: Page, portal):
    # A redirect carrying a code and state this browser never asked for.
    page.goto(portal.base + "/?code=stolen&state=whatever")
    expect(page.get_by_role("alert")).to_contain_text("Sign in again")
    assert "code=" not in page.url
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()


def test_helpdesk_finds_a_key_by_id_and_needs_a_reason(page: Page, portal, seed):
    sign_in(page, portal.base, "contoso", "agent", "RecoveryKey.Read.All")
    expect(page.get_by_role("button", name="Audit")).to_be_hidden()
    page.get_by_role("button", name="Helpdesk").click()
    page.get_by_label("Key ID from the user's recovery screen").fill("3b8faa18")
    page.get_by_role("button", name="Find device").click()
    choice = page.get_by_role("radio", name=re.compile("Alice's work laptop"))
    expect(choice).to_be_checked()
    expect(page.get_by_text(ALICE_LAPTOP_KEY)).to_be_visible()
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    get_key = page.get_by_role("button", name="Get recovery key")
    # Without a reason (or with blanks only) nothing is sent.
    get_key.click()
    reason = page.get_by_label(re.compile("^Reason"))
    assert reason.evaluate("e => e.validity.valid") is False
    reason.fill("   ")
    get_key.click()
    assert reason.evaluate("e => e.validity.valid") is False
    assert posts == []
    expect(page.get_by_test_id("recovery-password")).to_have_count(0)
    # Every control on the screen has a label.
    assert page.evaluate(
        "[...document.querySelectorAll('main input, main select, main textarea')].every(e => e.labels.length > 0)"
    )
    shot(page, "helpdesk-360")
    reason.fill("ticket 4711")
    get_key.click()
    expect(page.get_by_test_id("recovery-password")).to_have_text(seed[ALICE_LAPTOP_KEY])
    expect(page.get_by_test_id("countdown")).to_contain_text(re.compile(r"[45]:\d\d"))
    assert len(posts) == 1


def test_audit_view_filters_by_device_and_user(page: Page, portal, seed):
    # Something to audit: alice reads her desktop's key.
    sign_in(page, portal.base, "contoso", "alice", "RecoveryKey.Read")
    device_card(page, "Alice's desktop").get_by_role("button", name="Get recovery key").click()
    expect(page.get_by_test_id("recovery-password")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, portal.base, "contoso", "auditor", "AuditLog.Read.All")
    expect(page.get_by_role("button", name="Helpdesk")).to_be_hidden()
    page.get_by_role("button", name="Audit").click()
    rows = page.locator("table tbody tr")
    expect(rows.first).to_be_visible()
    expect(page.get_by_role("button", name="More")).to_be_hidden()  # no `next` in the answer
    page.get_by_label("User").fill("alice")
    page.get_by_label("Device ID").fill("DESKTOP-3H8N2P5")
    with page.expect_response(lambda r: "actor=alice" in r.url and "device_id=DESKTOP-3H8N2P5" in r.url):
        page.get_by_role("button", name="Filter").click()
    expect(rows.filter(has_not_text="DESKTOP-3H8N2P5")).to_have_count(0)
    expect(rows.first).to_contain_text("DESKTOP-3H8N2P5")
    for row in rows.all():
        cells = row.locator("td").all_inner_texts()
        assert cells[1] == "alice" and cells[2] == "DESKTOP-3H8N2P5", cells
    expect(rows.first).to_contain_text("granted")
    shot(page, "audit-360")
    # An invalid filter: the API's explanation, never raw JSON.
    page.get_by_label("User").fill("not valid")
    page.get_by_role("button", name="Filter").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("actor")
    assert "{" not in alert.inner_text()


def test_audit_more_button_follows_next(page: Page, portal):
    """When the API pages its answer (`next`), More fetches with `cursor`."""
    seen = []

    def paged(route):
        url = route.request.url
        seen.append(url)
        # The real answer (without the cursor, which this API may not know
        # yet), with a `next` on the first page only.
        real = route.fetch(url=re.sub(r"&?cursor=[^&]*", "", url)).json()
        real["next"] = None if "cursor=" in url else "page-2"
        route.fulfill(status=200, content_type="application/json", body=json.dumps(real))

    sign_in(page, portal.base, "contoso", "auditor", "AuditLog.Read.All")
    page.route("**/v1/audit-events*", paged)
    page.get_by_role("button", name="Audit").click()
    more = page.get_by_role("button", name="More")
    expect(more).to_be_visible()
    first = page.locator("table tbody tr").count()
    more.click()
    expect(more).to_be_hidden()
    assert "cursor=page-2" in seen[-1]
    assert page.locator("table tbody tr").count() == 2 * first


# ---------------------------------------------------------------------------
# The page as a person sees it: every screen at 320 and 360 px
# ---------------------------------------------------------------------------

STRAY = re.compile(r"\b(null|undefined|NaN)\b|\[object Object\]")


def look_at(page: Page, name: str):
    """What a person reads on this screen: no programming value shows, and
    nothing is wider than a 320 or 360 px phone. Saves a 360 px screenshot."""
    text = page.locator("body").inner_text()
    assert not STRAY.search(text), f"{name}: {STRAY.search(text).group(0)!r} on screen:\n{text}"
    for width in (320, 360):
        page.set_viewport_size({"width": width, "height": 740})
        wide = page.evaluate(
            """(w) => [document.documentElement.scrollWidth > w ? "the page" : null,
                ...[...document.querySelectorAll("body *")]
                  .filter((e) => e.getClientRects().length && !e.closest(".table-wrap, .visually-hidden, .skip"))
                  .filter((e) => e.getBoundingClientRect().right > w + 0.5)
                  .map((e) => e.tagName.toLowerCase() + (e.className ? "." + e.className : ""))].filter(Boolean)""",
            width,
        )
        assert not wide, f"{name} at {width} px: wider than the screen: {wide}"
    shot(page, f"screen-{name}-360")


def test_no_screen_shows_null_or_overflows_at_320_and_360(page: Page, portal, seed):
    page.goto(portal.base + "/")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    look_at(page, "start")
    sign_in(page, portal.base, "contoso", "alice", "RecoveryKey.Read")
    expect(page.get_by_role("heading", name="Your devices")).to_be_visible()
    look_at(page, "devices")
    device_card(page, "Alice's work laptop").get_by_role("button", name="Get recovery key").click()
    expect(page.get_by_test_id("recovery-password")).to_be_visible()
    look_at(page, "key")
    page.get_by_role("button", name="Hide now").click()
    look_at(page, "key-hidden")
    page.get_by_role("button", name="Back").click()
    device_card(page, "Alice's home PC").get_by_role("button", name="Get help").click()
    look_at(page, "no-key")
    page.route(
        "**/v1/devices",
        lambda route: route.fulfill(
            status=503,
            headers={"Content-Type": "application/problem+json"},
            body=json.dumps({
                "type": "https://recovery-portal.dev/problems/identity-provider-misconfigured",
                "title": "Portal misconfigured", "status": 503, "detail": "x", "request_id": "r",
            }),
        ),
    )
    page.get_by_role("button", name="Devices", exact=True).click()
    expect(page.get_by_role("heading", name="The portal is misconfigured")).to_be_visible()
    # Retrying cannot help: no Try again, and IT is named.
    expect(page.get_by_role("button", name="Try again")).to_have_count(0)
    expect(page.get_by_role("alert")).to_contain_text("Tell your IT support")
    look_at(page, "misconfigured")
    page.unroute("**/v1/devices")
    page.locator("#sign-out").click()
    expect(page.get_by_test_id("signout-note")).to_be_visible()
    look_at(page, "signed-out")

    sign_in(page, portal.base, "contoso", "agent", "RecoveryKey.Read.All AuditLog.Read.All")
    expect(page.get_by_role("heading", name="Helpdesk: find a recovery key")).to_be_visible()
    look_at(page, "helpdesk")
    page.get_by_label("Key ID from the user's recovery screen").fill("3B8FAA18")
    page.get_by_role("button", name="Find device").click()
    expect(page.get_by_role("heading", name="Results")).to_be_visible()
    look_at(page, "helpdesk-results")
    page.get_by_role("button", name="Audit").click()
    expect(page.get_by_role("status")).to_contain_text("shown")
    look_at(page, "audit")

    page.locator("#sign-out").click()
    sign_in(page, portal.base, "fabrikam", "carol", "RecoveryKey.Read")
    page.get_by_role("button", name="Get recovery key").click()
    expect(page.get_by_test_id("helpdesk")).to_be_visible()
    look_at(page, "self-service-off")


def test_the_start_screen_shows_no_stray_null(page: Page, portal):
    page.goto(portal.base + "/")
    expect(page.get_by_role("heading", name="Get your BitLocker recovery key")).to_be_visible()
    assert "null" not in page.locator("main").inner_text()


def test_a_helpdesk_agent_starts_on_the_helpdesk_screen(page: Page, portal):
    sign_in(page, portal.base, "contoso", "agent", "RecoveryKey.Read.All")
    expect(page.get_by_role("heading", name="Helpdesk: find a recovery key")).to_be_visible()
    expect(page.get_by_text("No devices are registered to you")).to_have_count(0)


def test_the_key_selector_fits_a_360_px_phone(page: Page, portal, seed):
    """Every key of a device with several is readable in full at 360 px
    (a <select> cut its option to "3B8FAA18 · Operating system d"), and
    picking one retrieves that key."""
    sign_in(page, portal.base, "contoso", "alice", "RecoveryKey.Read")
    laptop = device_card(page, "Alice's work laptop")
    for text in ["3B8FAA18 Operating system drive · 2025-01-20", "47229389 Fixed data drive · 2024-03-02"]:
        choice = laptop.get_by_label(text)
        expect(choice).to_be_visible()
        label = laptop.locator("label").filter(has_text=text)
        assert label.evaluate("l => l.scrollWidth <= l.clientWidth && l.getBoundingClientRect().right <= 360")
    expect(laptop.get_by_label(re.compile("^3B8FAA18"))).to_be_checked()
    shot(page, "key-selector-360")
    laptop.get_by_label(re.compile("^47229389")).check()
    laptop.get_by_role("button", name="Get recovery key").click()
    key_id = next(k for k in seed if k.startswith("47229389"))
    expect(page.get_by_test_id("recovery-password")).to_have_text(seed[key_id])
