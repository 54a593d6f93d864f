//! recovery-portal: the backend of a company portal's "Get recovery key" page.
//!
//! Ports and adapters, one folder per layer:
//!
//! - [`domain`]: identifiers, the data model, the verified caller, policy,
//!   audit events, rate limiting, device listing, key retrieval and the domain
//!   errors; and its own ports in [`domain::ports`]: the traits it depends on
//!   (`Store`, `ImportStore`, `LifecycleStore`, `KeyCipher`, `Clock`,
//!   `TokenVerifier`, `Metrics`) and `Portal`, one implementation of each.
//!   The ports speak in domain types; the domain imports nothing below it.
//! - [`adapters`]: the implementations: `embedded` (in-process store and
//!   cipher), `jwt` (bearer tokens against the issuer's JWKS) with its
//!   `token_cache`, and `aws` (DynamoDB, KMS).
//! - [`api`]: requests to domain calls and domain errors to HTTP answers, the
//!   one implementation of every route.
//! - [`frontends`]: `lambda` and the local `server`, both around `api`.
//! - [`tools`]: the seed format, the bulk import and (feature `dev-idp`) the
//!   development identity provider.
//!
//! At the top: [`config`] (the environment), [`app`] (the composition root:
//! adapters wired into a `Portal`) and [`telemetry`].

pub mod adapters;
pub mod api;
pub mod app;
pub mod config;
pub mod domain;
pub mod frontends;
pub mod telemetry;
pub mod tools;
