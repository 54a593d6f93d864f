// Sign-in: OpenID Connect authorization code flow with PKCE (S256) for a
// public client, with WebCrypto. The access token lives in memory and in
// sessionStorage (so a reload keeps the session, closing the tab ends it);
// never in localStorage.

const PENDING = "portal.oidc.pending";
const SESSION = "portal.session";
const SIGNED_OUT = "portal.signedout";

/** Parameters the page sets itself; /config.json's auth_params cannot. */
const OWN = new Set([
  "response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
  "code_challenge", "code_challenge_method", "max_age",
]);

/** The extra authorization parameters of /config.json (`auth_params`). */
function extraParams(config) {
  const out = [];
  if (typeof config.auth_params !== "string") return out;
  for (const [k, v] of new URLSearchParams(config.auth_params)) if (k && !OWN.has(k)) out.push([k, v]);
  return out;
}

export class SignInError extends Error {}

function b64url(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(bytes) {
  const a = new Uint8Array(bytes);
  crypto.getRandomValues(a);
  return b64url(a);
}

async function s256(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return b64url(new Uint8Array(digest));
}

/** The payload of a JWT, or null. For display decisions only: the API verifies. */
export function decodeJwt(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(part + "=".repeat((4 - (part.length % 4)) % 4));
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

export async function discover(issuer) {
  const url = issuer.replace(/\/+$/, "") + "/.well-known/openid-configuration";
  let doc;
  try {
    const r = await fetch(url, { credentials: "omit", cache: "no-store" });
    if (!r.ok) throw new Error(String(r.status));
    doc = await r.json();
  } catch {
    throw new SignInError("The sign-in service cannot be reached right now. Try again in a moment.");
  }
  // OIDC Discovery §4.3: the document must name the issuer we asked.
  if (doc.issuer !== issuer || !doc.authorization_endpoint || !doc.token_endpoint) {
    throw new SignInError("The sign-in service is misconfigured. Contact your IT support.");
  }
  return doc;
}

export function redirectUri() {
  return location.origin + location.pathname;
}

/** Sends the browser to the issuer's sign-in page. */
export async function signIn(config) {
  const doc = await discover(config.issuer);
  const verifier = randomString(32);
  const extra = extraParams(config);
  const pending = {
    verifier,
    state: randomString(16),
    nonce: randomString(16),
    token_endpoint: doc.token_endpoint,
    end_session_endpoint: typeof doc.end_session_endpoint === "string" ? doc.end_session_endpoint : null,
    redirect_uri: redirectUri(),
    // RFC 8707 §2.2: the token request names the resource again.
    resource: extra.filter(([k]) => k === "resource").map(([, v]) => v),
  };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  const u = new URL(doc.authorization_endpoint);
  const q = u.searchParams;
  q.set("response_type", "code");
  q.set("client_id", config.client_id);
  q.set("redirect_uri", pending.redirect_uri);
  q.set("scope", config.scopes);
  q.set("state", pending.state);
  q.set("nonce", pending.nonce);
  q.set("code_challenge", await s256(verifier));
  q.set("code_challenge_method", "S256");
  if (Number.isInteger(config.max_age) && config.max_age > 0) q.set("max_age", String(config.max_age));
  for (const [k, v] of extra) q.append(k, v);
  location.assign(u.toString());
}

/**
 * Finishes a sign-in when the page was opened by the issuer's redirect:
 * checks `state`, redeems the code with the PKCE verifier, checks the ID
 * token's `nonce`, `iss`, `aud` and `exp`. Returns the session, or null
 * when this page load is not a redirect from the issuer.
 */
export async function completeSignIn(config) {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return null;
  // The code leaves the address bar and the history entry at once.
  history.replaceState(null, "", location.pathname);
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING);
  if (!pending || params.get("state") !== pending.state) {
    throw new SignInError("This sign-in could not be completed (it was not started here, or started twice). Sign in again.");
  }
  if (params.has("error")) {
    const code = (params.get("error") || "").replace(/[^a-z_]/g, "").slice(0, 40);
    throw new SignInError(`The sign-in was not completed (${code}). Sign in again, or contact your IT support.`);
  }
  let tokens;
  try {
    const body = new URLSearchParams({
      grant_type: "authorization_code",
      code: params.get("code"),
      redirect_uri: pending.redirect_uri,
      client_id: config.client_id,
      code_verifier: pending.verifier,
    });
    for (const r of pending.resource || []) body.append("resource", r);
    const r = await fetch(pending.token_endpoint, { method: "POST", credentials: "omit", cache: "no-store", body });
    tokens = await r.json();
    if (!r.ok) throw new Error(String(r.status));
  } catch {
    throw new SignInError("The sign-in could not be completed. Sign in again.");
  }
  if (typeof tokens.access_token !== "string" || !/^bearer$/i.test(tokens.token_type || "")) {
    throw new SignInError("The sign-in service returned no usable access token. Contact your IT support.");
  }
  let profile = null;
  if (tokens.id_token) {
    profile = decodeJwt(tokens.id_token);
    const aud = profile && (Array.isArray(profile.aud) ? profile.aud : [profile.aud]);
    const ok =
      profile &&
      profile.nonce === pending.nonce &&
      profile.iss === config.issuer &&
      aud.includes(config.client_id) &&
      typeof profile.exp === "number" &&
      profile.exp * 1000 > Date.now() - 60_000;
    if (!ok) throw new SignInError("The sign-in response did not match this sign-in. Sign in again.");
  }
  const lifetime = Number(tokens.expires_in) > 0 ? Number(tokens.expires_in) : 3600;
  const session = {
    access_token: tokens.access_token,
    expires_at: Date.now() + lifetime * 1000,
    name: profile && (profile.name || profile.preferred_username || profile.email),
    // For RP-initiated logout (id_token_hint), when the issuer offers it.
    id_token: typeof tokens.id_token === "string" ? tokens.id_token : null,
    end_session_endpoint: pending.end_session_endpoint || null,
  };
  sessionStorage.setItem(SESSION, JSON.stringify(session));
  return session;
}

/** The session kept from before a reload, if it has not expired. */
export function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION) || "null");
    if (s && typeof s.access_token === "string" && s.expires_at > Date.now()) return s;
  } catch {
    // fall through: a damaged entry is dropped
  }
  sessionStorage.removeItem(SESSION);
  return null;
}

/** Forgets the session in this page (not at the issuer). */
export function signOut() {
  sessionStorage.removeItem(SESSION);
  sessionStorage.removeItem(PENDING);
}

/**
 * Signs out at the issuer too (OIDC RP-Initiated Logout): forgets the
 * session here, then sends the browser to the issuer's
 * end_session_endpoint, which comes back to this page. Returns false,
 * having only forgotten the session here, when the issuer has no such
 * endpoint (its own session may stay open).
 */
export function endSession(session, config) {
  signOut();
  const endpoint = session && session.end_session_endpoint;
  let u;
  try {
    u = endpoint ? new URL(endpoint) : null;
  } catch {
    u = null;
  }
  if (!u || (u.protocol !== "https:" && u.protocol !== "http:")) return false;
  if (session.id_token) u.searchParams.set("id_token_hint", session.id_token);
  u.searchParams.set("post_logout_redirect_uri", redirectUri());
  u.searchParams.set("client_id", config.client_id);
  sessionStorage.setItem(SIGNED_OUT, "1");
  location.assign(u.toString());
  return true;
}

/** Whether this page load is the issuer's redirect after endSession. */
export function returnedFromSignOut() {
  const back = sessionStorage.getItem(SIGNED_OUT) === "1";
  sessionStorage.removeItem(SIGNED_OUT);
  if (back && location.search) history.replaceState(null, "", location.pathname);
  return back;
}
