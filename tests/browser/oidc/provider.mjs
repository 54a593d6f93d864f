// node-oidc-provider (npm `oidc-provider`, panva; OpenID Certified) for the
// browser tests, on loopback, in its documented minimum setup for a public
// SPA client and an API addressed by a resource indicator (RFC 8707):
//
// - the client `recovery-portal-web`: authorization code with PKCE, no
//   secret (token_endpoint_auth_method `none`), the portal page as its
//   redirect and post-logout redirect URI;
// - `features.resourceIndicators`: `resource=api://recovery-portal` gets a
//   JWT access token (RFC 9068, `typ: at+jwt`) with that audience, signed
//   PS256; without a `resource` the provider issues an opaque token for its
//   own UserInfo endpoint (the failure issue 18 describes);
// - `extraTokenClaims`: the access token carries `tenant` (the portal reads
//   it with PORTAL_TENANT_CLAIM=tenant), `roles` (`agent` is a helpdesk
//   agent) and `auth_time`;
// - `devInteractions` (the default): the provider's own login and consent
//   pages; any password signs in, the login name becomes `sub`;
// - `rpInitiatedLogout` (the default): `end_session_endpoint`.
//
// Usage: node provider.mjs --port PORT --redirect URL [--keys FILE]
//   --keys: the signing key (a private JWK) is read from FILE, or generated
//   and written there; a new FILE means new keys (a rotation). Prints
//   `listening <issuer>` on stdout once it accepts connections.

import { generateKeyPairSync, randomUUID } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import Provider from "oidc-provider";

const { values: args } = parseArgs({
  options: {
    port: { type: "string" },
    redirect: { type: "string", multiple: true },
    keys: { type: "string" },
  },
});
if (!args.port || !args.redirect) {
  console.error("usage: node provider.mjs --port PORT --redirect URL [--redirect URL] [--keys FILE]");
  process.exit(2);
}

const API = "api://recovery-portal";
const ROLES = { agent: ["RecoveryKey.Read.All"], auditor: ["AuditLog.Read.All"] };

function signingKey() {
  if (args.keys && existsSync(args.keys)) return JSON.parse(readFileSync(args.keys, "utf8"));
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: "jwk" }), kid: randomUUID(), use: "sig" };
  if (args.keys) writeFileSync(args.keys, JSON.stringify(jwk), { mode: 0o600 });
  return jwk;
}

const issuer = `http://127.0.0.1:${args.port}`;
const provider = new Provider(issuer, {
  clients: [
    {
      client_id: "recovery-portal-web",
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code"],
      response_types: ["code"],
      redirect_uris: args.redirect,
      post_logout_redirect_uris: args.redirect,
    },
  ],
  jwks: { keys: [signingKey()] },
  cookies: { keys: [randomUUID()] },
  pkce: { required: () => true },
  scopes: ["openid", "profile"],
  claims: { openid: ["sub"], profile: ["name"] },
  features: {
    resourceIndicators: {
      enabled: true,
      getResourceServerInfo(ctx, resourceIndicator) {
        if (resourceIndicator !== API) throw new Provider.errors.InvalidTarget();
        return {
          scope: "RecoveryKey.Read Devices.Read",
          audience: API,
          accessTokenTTL: 600,
          accessTokenFormat: "jwt",
          jwt: { sign: { alg: "PS256" } },
        };
      },
    },
  },
  async extraTokenClaims(ctx, token) {
    const code = ctx.oidc.entities.AuthorizationCode;
    return {
      tenant: "contoso",
      roles: ROLES[token.accountId] || [],
      auth_time: code && code.authTime,
    };
  },
  async findAccount(ctx, id) {
    return { accountId: id, claims: () => ({ sub: id, name: id }) };
  },
});

provider.listen(Number(args.port), "127.0.0.1", () => {
  console.log(`listening ${issuer}`);
});
