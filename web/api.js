// Calls to the portal API (/v1), and the one place where its answers become
// messages for a person. Problem documents are read for their `type`,
// `detail` and `helpdesk`; raw JSON is never shown.

export class ApiError extends Error {
  /**
   * kind: "unauthorized" | "nokey" | "rate" | "unavailable" | "misconfigured" |
   * "forbidden" | "ambiguous" | "other"
   */
  constructor(kind, message, extra = {}) {
    super(message);
    this.kind = kind;
    Object.assign(this, extra);
  }
}

/** Seconds from a Retry-After header (delta-seconds or an HTTP date). */
export function retryAfterSeconds(value) {
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, Math.round((at - Date.now()) / 1000));
}

function problemSlug(p) {
  return p && typeof p.type === "string" ? p.type.split("/").pop() : "";
}

/** The server's human `detail`, if it is plain text of a sane length. */
function detailOf(p) {
  return p && typeof p.detail === "string" && p.detail.length <= 400 ? p.detail : null;
}

function toError(status, headers, p) {
  const slug = problemSlug(p);
  const helpdesk = p && typeof p.helpdesk === "object" ? p.helpdesk : null;
  switch (status) {
    case 401:
      // PORTAL_WEB_MAX_AGE: the sign-in is too old for a key (the detail says how recent).
      if (p && Number.isInteger(p.max_age) && detailOf(p)) return new ApiError("unauthorized", detailOf(p));
      return new ApiError("unauthorized", "Your sign-in has expired or is no longer valid. Sign in again.");
    case 429: {
      const secs = retryAfterSeconds(headers.get("Retry-After"));
      if (secs === null) {
        return new ApiError("rate", "You have retrieved the most recovery keys allowed for now. Try again later, or contact your IT support.");
      }
      const minutes = Math.max(1, Math.ceil(secs / 60));
      const at = new Date(Date.now() + secs * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      return new ApiError(
        "rate",
        `You have retrieved the most recovery keys allowed for now. Try again in ${minutes} minute${minutes === 1 ? "" : "s"} (at ${at}), or contact your IT support.`,
        { retryAfter: secs },
      );
    }
    case 503:
      if (slug === "identity-provider-misconfigured") {
        return new ApiError("misconfigured", "The portal is misconfigured: it cannot check anyone's sign-in with your organization's sign-in service. Nothing was disclosed. Tell your IT support; trying again will not help until they fix it.");
      }
      return new ApiError("unavailable", "The service is briefly unavailable and nothing was disclosed. Try again in a few seconds.");
    case 502:
    case 504:
      return new ApiError("unavailable", "The service is briefly unavailable and nothing was disclosed. Try again in a few seconds.");
    case 403:
      if (slug === "self-service-disabled") {
        return new ApiError("nokey", "Your organization does not let you read recovery keys yourself. Your IT support can read the key to you.", { helpdesk, reason: "self-service" });
      }
      return new ApiError("forbidden", detailOf(p) || "Your account is not allowed to do this. Ask your IT administrator for access.");
    case 404:
      if (slug === "no-recovery-key") {
        return new ApiError("nokey", detailOf(p) || "No recovery key is stored for this device.", { helpdesk, reason: "none" });
      }
      return new ApiError("other", detailOf(p) || "That was not found. Check the device in your device list, or contact your IT support.");
    case 409:
      return new ApiError("ambiguous", detailOf(p) || "Several keys match. Enter more of the key ID.", {
        candidates: Array.isArray(p && p.candidates) ? p.candidates : [],
      });
    default:
      if (status >= 400 && status < 500 && detailOf(p)) return new ApiError("other", detailOf(p));
      return new ApiError("other", `Something went wrong (error ${status}). Try again, or contact your IT support.`);
  }
}

/** An API client: `base` is the API's origin (empty: this page's origin). */
export function createApi(base, getToken) {
  const root = (base || location.origin).replace(/\/+$/, "");
  async function call(method, path, body) {
    const headers = { Authorization: `Bearer ${getToken()}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let r;
    try {
      r = await fetch(root + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
        referrerPolicy: "no-referrer",
      });
    } catch {
      throw new ApiError("unavailable", "The portal cannot reach the service. Check your connection, then try again.");
    }
    if (r.ok) {
      try {
        return await r.json();
      } catch {
        throw new ApiError("other", "The service sent an answer the portal cannot read. Try again, or contact your IT support.");
      }
    }
    let problem = null;
    try {
      problem = await r.json();
    } catch {
      // not JSON: the status alone decides
    }
    throw toError(r.status, r.headers, problem);
  }
  const q = (params) => {
    const s = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v) s.set(k, v);
    const text = s.toString();
    return text ? `?${text}` : "";
  };
  return {
    devices: () => call("GET", "/v1/devices"),
    findKeys: (prefix) => call("GET", `/v1/recovery-keys${q({ key_id_prefix: prefix })}`),
    recoveryKey: (deviceId, body) =>
      call("POST", `/v1/devices/${encodeURIComponent(deviceId)}/recovery-key`, body),
    auditEvents: (filters) => call("GET", `/v1/audit-events${q(filters)}`),
  };
}
