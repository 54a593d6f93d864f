// The portal page: sign-in, the signed-in user's devices, the key view, and
// for helpdesk agents and auditors their own screens. Settings come from
// /config.json; which screens show depends on the permissions in the access
// token (the API enforces them; the page only hides what would be refused).

import { h, focus } from "./dom.js";
import { completeSignIn, decodeJwt, endSession, loadSession, returnedFromSignOut, signIn, signOut, SignInError } from "./oidc.js";
import { createApi } from "./api.js";
import { hideKey, showKey, volumeLabel } from "./keyview.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");

let config = null;
let session = null;
let api = null;
let permissions = new Set();

// ---------------------------------------------------------------------------
// Screens and messages
// ---------------------------------------------------------------------------

function screen(name, ...children) {
  hideKey();
  for (const b of nav.querySelectorAll("button[data-screen]")) {
    if (b.dataset.screen === name) b.setAttribute("aria-current", "page");
    else b.removeAttribute("aria-current");
  }
  // replaceChildren would show a left-out (null) child as the text "null".
  main.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
  const heading = main.querySelector("h1");
  if (heading) focus(heading);
}

function alertBox(message, ...actions) {
  return h("div", { class: "alert", role: "alert" }, h("p", {}, message), actions.length ? h("div", { class: "actions" }, actions) : null);
}

function button(label, onclick, attrs = {}) {
  return h("button", { type: "button", ...attrs, onclick }, label);
}

/** Shows an API or sign-in error the way a person needs it. */
function showError(err, retry) {
  if (err && err.kind === "unauthorized") return showSignIn(err.message);
  if (err && err.kind === "nokey") return showNoKey(err.message, err.helpdesk);
  if (err && err.kind === "misconfigured") {
    // Trying again cannot help: someone in IT must fix the settings.
    return screen("error", h("h1", {}, "The portal is misconfigured"), alertBox(err.message));
  }
  const message = err instanceof Error && err.message ? err.message : "Something went wrong. Try again, or contact your IT support.";
  const actions = [];
  // After a 429 retrying at once cannot help: the message says when.
  if (retry && !(err && err.kind === "rate")) actions.push(button("Try again", retry));
  actions.push(button("Back to devices", showDevices));
  screen("error", h("h1", {}, "That did not work"), alertBox(message, ...actions));
}

async function guarded(action, retry) {
  try {
    await action();
  } catch (err) {
    showError(err, retry);
  }
}

// ---------------------------------------------------------------------------
// Sign-in
// ---------------------------------------------------------------------------

/** The start screen; `message` an error, `done` a plain confirmation. */
function showSignIn(message, note, done) {
  hideKey();
  signOut();
  session = null;
  nav.hidden = true;
  who.hidden = true;
  const start = button("Sign in", async () => {
    start.disabled = true;
    try {
      await signIn(config);
    } catch (err) {
      start.disabled = false;
      showSignIn(err instanceof SignInError ? err.message : "The sign-in could not start. Try again.");
    }
  }, { class: "primary" });
  screen(
    "signin",
    h("h1", {}, "Get your BitLocker recovery key"),
    message ? alertBox(message) : null,
    done ? h("p", { class: "info", role: "status" }, done) : null,
    note ? h("p", { class: "notice", "data-testid": "signout-note" }, note) : null,
    h("p", {}, "Locked out of your work PC? Sign in with your work account on this phone or another computer, pick the PC, and read the 48-digit recovery key its screen asks for."),
    start,
  );
}

/**
 * Sign out: of the organisation's sign-in too (RP-initiated logout) when
 * the issuer offers it, so that the next person to press Sign in on a
 * borrowed phone is asked for their own password.
 */
function signOutEverywhere() {
  hideKey();
  const s = session;
  session = null;
  if (endSession(s, config)) {
    main.replaceChildren(h("p", { class: "loading" }, "Signing you out…"));
    return;
  }
  showSignIn(
    null,
    "Your organization's sign-in may still be open in this browser. On a device that isn't yours, close every window of this browser, or sign out on your organization's sign-in page, so that the next person cannot use your account.",
    "You are signed out of this portal.",
  );
}

function permissionsOf(token) {
  const claims = decodeJwt(token) || {};
  const out = new Set();
  for (const claim of [claims.scp, claims.scope]) {
    if (typeof claim === "string") claim.split(/\s+/).forEach((p) => p && out.add(p));
    else if (Array.isArray(claim)) claim.forEach((p) => out.add(String(p)));
  }
  if (Array.isArray(claims.roles)) claims.roles.forEach((p) => out.add(String(p)));
  return { perms: out, claims };
}

function startSession(s) {
  session = s;
  api = createApi(config.api_base_url, () => session && session.access_token);
  const { perms, claims } = permissionsOf(s.access_token);
  permissions = perms;
  nav.querySelector('[data-screen="helpdesk"]').hidden = !perms.has("RecoveryKey.Read.All");
  nav.querySelector('[data-screen="audit"]').hidden = !perms.has("AuditLog.Read.All");
  nav.hidden = false;
  const name = s.name || claims.name || claims.preferred_username || claims.upn || claims.oid || claims.sub;
  who.textContent = name ? `Signed in as ${name}` : "Signed in";
  who.hidden = false;
  // Each person starts on the screen of their work: a helpdesk agent on
  // the helpdesk search, an auditor without keys of their own on the audit.
  if (perms.has("RecoveryKey.Read.All")) showHelpdesk();
  else if (perms.has("AuditLog.Read.All") && !perms.has("RecoveryKey.Read") && !perms.has("Devices.Read")) showAudit();
  else showDevices();
}

// ---------------------------------------------------------------------------
// Devices
// ---------------------------------------------------------------------------

function newestOsKey(keys) {
  const byDate = [...keys].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
  return byDate.find((k) => k.volume_type === "operating_system") || byDate[0];
}

function shortDate(iso) {
  return String(iso || "").slice(0, 10);
}

function deviceCard(d, helpdesk, index) {
  const titleId = `device-${index}`;
  const organization = d.managed_by === "organization";
  const keys = Array.isArray(d.recovery_keys) ? d.recovery_keys : [];
  const parts = [
    h("h2", { id: titleId }, d.display_name || d.device_id),
    h("p", { class: "meta" }, `${d.os || "Unknown OS"} · ${organization ? "Organization device" : "Personal device"}`),
  ];
  if (!organization || keys.length === 0) {
    parts.push(h("p", {}, organization ? "No recovery key is stored for this device." : "Its recovery key is not kept by your organization."));
    parts.push(button("Get help", () => showNoKey(
      organization
        ? "No recovery key is stored for this device."
        : "This is a personal device: you encrypted it yourself, so your organization does not keep its recovery key. If you saved the key to your account or printed it, look there.",
      helpdesk,
    ), { "aria-describedby": titleId }));
    return h("li", { class: "card" }, parts);
  }
  const chosen = newestOsKey(keys);
  const describe = (k) => [h("code", {}, String(k.key_id).slice(0, 8)), ` ${volumeLabel(k.volume_type)} · ${shortDate(k.created_at)}`];
  let choices = null;
  if (keys.length === 1) {
    parts.push(h("ul", { class: "keys", "aria-label": "Recovery key" }, h("li", {}, describe(keys[0]))));
  } else {
    // Radio buttons, not a <select>: each key's whole description wraps
    // on a narrow phone instead of being cut off.
    choices = h("fieldset", { class: "key-choice" },
      h("legend", {}, "Key ID shown on the recovery screen"),
      keys.map((k, i) => h("div", { class: "choice" },
        h("input", { type: "radio", name: `key-${index}`, id: `key-${index}-${i}`, value: k.key_id, checked: k === chosen }),
        h("label", { for: `key-${index}-${i}` }, describe(k)))));
    parts.push(choices);
  }
  parts.push(button("Get recovery key", () => {
    const picked = choices && choices.querySelector("input:checked");
    const keyId = picked ? picked.value : chosen.key_id;
    retrieve(d.device_id, { key_id: keyId }, d.display_name);
  }, { class: "primary", "aria-describedby": titleId }));
  return h("li", { class: "card" }, parts);
}

async function showDevices() {
  screen("devices", h("h1", {}, "Your devices"), h("p", { class: "loading" }, "Loading your devices…"));
  await guarded(async () => {
    const listing = await api.devices();
    const devices = Array.isArray(listing.devices) ? listing.devices : [];
    const helpdesk = listing.helpdesk || null;
    if (devices.length === 0) {
      return showNoKey("No devices are registered to you.", helpdesk);
    }
    screen(
      "devices",
      h("h1", {}, "Your devices"),
      h("p", {}, "Pick the PC whose screen asks for a recovery key. Compare the key ID on that screen with the ones listed here."),
      h("ul", { class: "devices" }, devices.map((d, i) => deviceCard(d, helpdesk, i))),
    );
  }, showDevices);
}

async function retrieve(deviceId, body, deviceName, back = showDevices) {
  const again = () => retrieve(deviceId, body, deviceName, back);
  screen("key", h("h1", {}, "Recovery key"), h("p", { class: "loading" }, "Getting the recovery key…"));
  await guarded(async () => {
    const disclosure = await api.recoveryKey(deviceId, body);
    showKey(main, disclosure, { deviceName, onBack: back, onAgain: again, onSignOut: signOutEverywhere });
  }, again);
}

// ---------------------------------------------------------------------------
// No key: the tenant's helpdesk card
// ---------------------------------------------------------------------------

function safeUrl(u) {
  try {
    const url = new URL(u);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

function helpdeskCard(hd) {
  const items = [];
  if (hd && hd.email) items.push(h("li", {}, "Email: ", h("a", { href: `mailto:${hd.email}` }, hd.email)));
  if (hd && hd.phone) items.push(h("li", {}, "Phone: ", h("a", { href: `tel:${String(hd.phone).replace(/[^+\d]/g, "")}` }, hd.phone)));
  const url = hd && safeUrl(hd.url);
  if (url) items.push(h("li", {}, "Web: ", h("a", { href: url, rel: "noopener noreferrer", target: "_blank" }, hd.url)));
  return h(
    "section",
    { class: "card helpdesk", "data-testid": "helpdesk", "aria-labelledby": "helpdesk-title" },
    h("h2", { id: "helpdesk-title" }, "Contact your company's IT support"),
    h("p", {}, hd && hd.name ? `${hd.name} can help you unlock your device.` : "Your company's IT support can help you unlock your device."),
    items.length ? h("ul", { class: "contact" }, items) : null,
  );
}

function showNoKey(message, helpdesk) {
  screen(
    "nokey",
    h("h1", {}, "Get help from your IT support"),
    h("p", {}, message),
    helpdeskCard(helpdesk),
    button("Back to devices", showDevices),
  );
}

// ---------------------------------------------------------------------------
// Helpdesk (RecoveryKey.Read.All)
// ---------------------------------------------------------------------------

function showHelpdesk() {
  const input = h("input", {
    id: "key-prefix", name: "key_id", required: true, minlength: 8, maxlength: 36,
    pattern: "[0-9A-Fa-f\\-]{8,36}", autocomplete: "off", spellcheck: "false", autocapitalize: "characters",
    "aria-describedby": "key-prefix-hint",
  });
  const results = h("div", { class: "results" });
  const form = h("form", { class: "stack", novalidate: false },
    h("label", { for: "key-prefix" }, "Key ID from the user's recovery screen"),
    input,
    h("p", { class: "hint", id: "key-prefix-hint" }, "At least the first 8 characters, for example 3B8FAA18."),
    h("button", { type: "submit" }, "Find device"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    guarded(async () => {
      const found = await api.findKeys(input.value.trim());
      results.replaceChildren(lookupResults(found.recovery_keys || [], input.value.trim()));
      const first = results.querySelector("input, h2");
      if (first) focus(first);
    });
  });
  screen("helpdesk", h("h1", {}, "Helpdesk: find a recovery key"), form, results);
}

function lookupResults(keys, prefix) {
  if (keys.length === 0) {
    return h("p", { class: "alert", role: "alert" }, `No key ID in your organization starts with ${prefix}. Check the characters on the user's screen.`);
  }
  const reason = h("textarea", { id: "reason", name: "reason", required: true, maxlength: 200, rows: 2, "aria-describedby": "reason-hint" });
  const options = keys.map((k, i) =>
    h("div", { class: "choice" },
      h("input", { type: "radio", name: "pick", id: `pick-${i}`, value: String(i), required: true, checked: keys.length === 1 }),
      h("label", { for: `pick-${i}` },
        h("strong", {}, k.display_name || k.device_id), ` (${k.device_id}) · user ${k.owner} · `,
        h("code", {}, k.key_id), ` · ${volumeLabel(k.volume_type)}`)));
  const form = h("form", { class: "stack" },
    h("fieldset", {}, h("legend", {}, "Matching keys"), options),
    h("label", { for: "reason" }, "Reason (required: a ticket number or why you read this key)"),
    reason,
    h("p", { class: "hint", id: "reason-hint" }, "Recorded in the audit log with your name."),
    h("button", { type: "submit", class: "primary" }, "Get recovery key"));
  reason.addEventListener("input", () => reason.setCustomValidity(""));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!reason.value.trim()) {
      reason.setCustomValidity("Give a reason: it goes into the audit log.");
      reason.reportValidity();
      return;
    }
    const picked = form.querySelector('input[name="pick"]:checked');
    if (!picked) return;
    const k = keys[Number(picked.value)];
    retrieve(k.device_id, { key_id: k.key_id, reason: reason.value.trim() }, k.display_name, showHelpdesk);
  });
  return h("section", { "aria-labelledby": "results-title" }, h("h2", { id: "results-title" }, "Results"), form);
}

// ---------------------------------------------------------------------------
// Audit (AuditLog.Read.All)
// ---------------------------------------------------------------------------

function showAudit() {
  const device = h("input", { id: "filter-device", name: "device_id", maxlength: 128, autocomplete: "off" });
  const user = h("input", { id: "filter-user", name: "actor", maxlength: 128, autocomplete: "off" });
  const body = h("tbody");
  const more = button("More", () => load(true), { hidden: true });
  const summary = h("p", { class: "hint", role: "status" });
  let next = null;
  let filters = {};

  const row = (e) =>
    h("tr", {},
      h("td", {}, new Date(e.time).toLocaleString()),
      h("td", {}, e.actor),
      h("td", {}, e.device_id || "—"),
      h("td", {}, e.key_id ? h("code", {}, String(e.key_id).slice(0, 8)) : "—"),
      h("td", { class: e.outcome === "granted" ? "granted" : "denied" }, e.outcome),
      h("td", {}, e.reason || ""),
      h("td", {}, e.justification || ""));

  async function load(append) {
    await guarded(async () => {
      const params = { ...filters, limit: "50" };
      if (append && next) params.cursor = next;
      const page = await api.auditEvents(params);
      const events = Array.isArray(page.events) ? page.events : [];
      if (append) body.append(...events.map(row));
      else body.replaceChildren(...events.map(row));
      next = typeof page.next === "string" && page.next ? page.next : null;
      more.hidden = !next;
      summary.textContent = `${body.rows.length} event${body.rows.length === 1 ? "" : "s"} shown${next ? "; more are available" : ""}.`;
    }, () => load(append));
  }

  const form = h("form", { class: "filters" },
    h("div", {}, h("label", { for: "filter-device" }, "Device ID"), device),
    h("div", {}, h("label", { for: "filter-user" }, "User"), user),
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    filters = { device_id: device.value.trim(), actor: user.value.trim() };
    next = null;
    load(false);
  });
  const table = h("table", {},
    h("caption", { class: "visually-hidden" }, "Audit events, newest first"),
    h("thead", {}, h("tr", {}, ["Time", "User", "Device", "Key ID", "Outcome", "Reason", "Justification"].map((c) => h("th", { scope: "col" }, c)))),
    body);
  screen("audit", h("h1", {}, "Audit events"), form, summary,
    h("div", { class: "table-wrap", role: "region", "aria-label": "Audit events table", tabindex: "0" }, table), more);
  load(false);
}

// ---------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------

nav.addEventListener("click", (e) => {
  const b = e.target.closest("button");
  if (!b) return;
  if (b.id === "sign-out") return signOutEverywhere();
  const go = { devices: showDevices, helpdesk: showHelpdesk, audit: showAudit }[b.dataset.screen];
  if (go) go();
});

async function start() {
  try {
    const r = await fetch("config.json", { cache: "no-store", credentials: "omit" });
    config = await r.json();
    if (!config.issuer || !config.client_id) throw new Error("incomplete");
    config.scopes = config.scopes || "openid";
  } catch {
    main.replaceChildren(h("h1", {}, "Portal unavailable"), alertBox("This portal is not set up correctly. Contact your IT support."));
    return;
  }
  try {
    if (returnedFromSignOut()) return showSignIn(null, null, "You are signed out.");
    const fresh = await completeSignIn(config);
    const s = fresh || loadSession();
    if (s) startSession(s);
    else showSignIn();
  } catch (err) {
    showSignIn(err instanceof SignInError ? err.message : "The sign-in could not be completed. Sign in again.");
  }
}

start();
