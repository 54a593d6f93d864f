// The key view: the 48-digit recovery password in its 8 groups for the
// API's display_seconds, then removed from the DOM and dropped from memory
// (not hidden with CSS). The password is never put in the URL, the history,
// the title or any storage.

import { h, focus } from "./dom.js";

const VOLUME = {
  operating_system: "Operating system drive",
  fixed_data: "Fixed data drive",
  removable_data: "Removable drive",
};

export function volumeLabel(v) {
  return VOLUME[v] || "Drive";
}

let active = null;

/** Removes the key on screen, if any (on navigation, sign-out, page hide). */
export function hideKey() {
  if (active) active.hide("left");
}

addEventListener("pagehide", hideKey);

function clock(seconds) {
  const m = Math.floor(seconds / 60);
  const s = String(seconds % 60).padStart(2, "0");
  return `${m}:${s}`;
}

function spokenRemaining(seconds) {
  if (seconds > 60) return `The key will be hidden in ${Math.ceil(seconds / 60)} minutes.`;
  if (seconds > 30) return "The key will be hidden in 1 minute.";
  if (seconds > 10) return "The key will be hidden in 30 seconds.";
  return "The key will be hidden in 10 seconds.";
}

/**
 * Shows `disclosure` (the API's answer) in `main`. Takes the password out
 * of `disclosure`, so this view holds the only reference to it.
 */
export function showKey(main, disclosure, { deviceName, onBack, onAgain, onSignOut }) {
  hideKey();
  let password = typeof disclosure.recovery_password === "string" ? disclosure.recovery_password : "";
  delete disclosure.recovery_password;
  const seconds =
    Number.isFinite(disclosure.display_seconds) && disclosure.display_seconds > 0
      ? Math.min(disclosure.display_seconds, 3600)
      : 300;
  // The deadline on two clocks: a backgrounded or sleeping phone throttles
  // or freezes timers, and its monotonic clock (performance.now) may stop
  // while it sleeps, but the wall clock (Date.now) runs on; the wall clock
  // can be set back, the monotonic one cannot. The key goes when either
  // says the time is up.
  const limitMs = seconds * 1000;
  const startWall = Date.now();
  const startMono = performance.now();
  const elapsedMs = () => Math.max(Date.now() - startWall, performance.now() - startMono);
  const keyId = String(disclosure.key_id || "");

  const groups = password.split("-");
  const passwordEl = h(
    "p",
    { class: "password", "data-testid": "recovery-password" },
    groups.map((g, i) => h("span", { class: "group" }, g, i < groups.length - 1 ? h("span", { class: "sep" }, "-") : null)),
  );
  const visible = h("span", { "aria-hidden": "true" });
  const spoken = h("span", { class: "visually-hidden" });
  const countdown = h(
    "p",
    { class: "countdown", "data-testid": "countdown", role: "timer", "aria-live": "polite", "aria-atomic": "true" },
    visible,
    spoken,
  );
  const status = h("p", { class: "status", role: "status" });
  const copy = h("button", { type: "button", onclick: copyPassword }, "Copy");
  const hideNow = h("button", { type: "button", onclick: () => hide("manual") }, "Hide now");
  const actions = h("div", { class: "actions" }, copy, hideNow);
  const title = h("h1", { id: "key-title" }, "Recovery key");
  const view = h(
    "section",
    { class: "keyview", "aria-labelledby": "key-title" },
    title,
    h("p", { class: "device" }, "For ", h("strong", {}, deviceName || disclosure.device_id || "this device"), ` · ${volumeLabel(disclosure.volume_type)}`),
    h("p", { class: "keyid-line" }, "Key ID ", h("code", { class: "keyid" }, h("strong", {}, keyId.slice(0, 8)), keyId.slice(8))),
    h("p", { class: "hint" }, `Check that the key ID on the recovery screen starts with ${keyId.slice(0, 8)}, then type these 48 digits there.`),
    passwordEl,
    countdown,
    actions,
    status,
  );
  main.replaceChildren(view);

  let lastSpoken = "";
  function tick() {
    const left = Math.max(0, Math.ceil((limitMs - elapsedMs()) / 1000));
    if (left === 0) return hide("expired");
    visible.textContent = `Hidden in ${clock(left)}`;
    const say = spokenRemaining(left);
    if (say !== lastSpoken) {
      lastSpoken = say;
      spoken.textContent = say;
    }
  }
  const timer = setInterval(tick, 1000);
  // Timers of a background tab may not have run: check the moment the page
  // is shown again (tab switch, screen on, back/forward cache), not at the
  // next tick.
  document.addEventListener("visibilitychange", tick);
  addEventListener("pageshow", tick);
  tick();

  let copied = false;
  async function copyPassword() {
    if (!password) return;
    try {
      await navigator.clipboard.writeText(password);
      copied = true;
      status.textContent = "Copied. Paste it only into the recovery screen; the clipboard is cleared when the key is hidden.";
    } catch {
      status.textContent = "This browser does not allow copying here: type the digits instead.";
    }
  }

  function hide(why) {
    clearInterval(timer);
    document.removeEventListener("visibilitychange", tick);
    removeEventListener("pageshow", tick);
    password = null;
    // What Copy put on the clipboard goes with it (best effort: a browser
    // may refuse when the page is not focused).
    if (copied) navigator.clipboard.writeText("").catch(() => {});
    groups.length = 0;
    passwordEl.remove();
    countdown.remove();
    actions.remove();
    if (active === handle) active = null;
    if (why === "left") return;
    const done = h(
      "p",
      { class: "done" },
      why === "expired"
        ? "Time is up: the recovery key is no longer shown."
        : "The recovery key is no longer shown.",
    );
    const again = h("button", { type: "button", onclick: onAgain }, "Show the key again");
    const back = h("button", { type: "button", onclick: onBack }, "Back");
    status.textContent = "";
    // Finished: signing out matters most on a phone or PC borrowed for this.
    const finish = onSignOut
      ? h("div", { class: "finish", "data-testid": "finish" },
        h("p", {}, "Done? Sign out now, especially on a phone or computer that isn't yours, so the next person cannot see your keys."),
        h("button", { type: "button", class: "primary", onclick: onSignOut }, "Sign out"))
      : null;
    view.append(...[done, finish, h("div", { class: "actions" }, again, back)].filter(Boolean));
    focus(done);
  }

  const handle = { hide };
  active = handle;
  focus(title);
}
