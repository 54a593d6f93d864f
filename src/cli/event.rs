//! `portal event`: an API Gateway event for a Lambda function, with a
//! fresh development token.

use super::token::dev_token;
use super::{DEV_ISSUER, fail};
use clap::{Args, ValueEnum};
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct Event {
    #[arg(value_enum)]
    route: EventKind,
    #[arg(long)]
    user: String,
    #[arg(long, default_value = "contoso")]
    tenant: String,
    /// Space-separated permissions [default: the one the route needs].
    #[arg(long)]
    scope: Option<String>,
    /// The device whose key get-recovery-key asks for.
    #[arg(long)]
    device: Option<String>,
    /// Must match PORTAL_ISSUER of the function (`portal dev-env --issuer`).
    #[arg(long, default_value = DEV_ISSUER)]
    issuer: String,
    /// Lifetime of the token in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: i64,
}

impl Event {
    pub(super) fn run(self) -> ExitCode {
        let scope = self.scope.as_deref().unwrap_or(self.route.default_scope());
        let event = dev_token(&self.issuer, &self.tenant, &self.user, scope, self.ttl)
            .and_then(|token| api_gateway_event(self.route, &token, self.device.as_deref()));
        match event {
            Ok(event) => {
                println!("{event}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        }
    }
}

/// The API Gateway events `portal event` prints, one per route; each is
/// `events/<name>.json` with a fresh token.
#[cfg(feature = "dev-idp")]
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(super) enum EventKind {
    /// `GET /v1/devices` (function list-devices).
    ListDevices,
    /// `POST /v1/devices/{device_id}/recovery-key` (function get-recovery-key).
    GetRecoveryKey,
    /// `GET /v1/recovery-keys?key_id_prefix=` (function list-devices).
    FindRecoveryKeys,
    /// `GET /v1/audit-events` (function list-devices).
    AuditEvents,
}

#[cfg(feature = "dev-idp")]
impl EventKind {
    fn template(self) -> &'static str {
        match self {
            Self::ListDevices => include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/events/list-devices.json"
            )),
            Self::GetRecoveryKey => include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/events/get-recovery-key.json"
            )),
            Self::FindRecoveryKeys => include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/events/find-recovery-keys.json"
            )),
            Self::AuditEvents => include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/events/audit-events.json"
            )),
        }
    }

    /// The permission the route needs, as the token's default scope.
    fn default_scope(self) -> &'static str {
        match self {
            Self::ListDevices | Self::GetRecoveryKey => "RecoveryKey.Read",
            Self::FindRecoveryKeys => "RecoveryKey.Read.All",
            Self::AuditEvents => "AuditLog.Read.All",
        }
    }
}

/// `events/<route>.json` carrying `token` (and `device`, for a key retrieval).
#[cfg(feature = "dev-idp")]
fn api_gateway_event(
    route: EventKind,
    token: &str,
    device: Option<&str>,
) -> Result<String, String> {
    let mut event: serde_json::Value =
        serde_json::from_str(route.template()).map_err(|e| format!("event template: {e}"))?;
    event["headers"]["authorization"] = format!("Bearer {token}").into();
    if let Some(device) = device {
        if route != EventKind::GetRecoveryKey {
            return Err("--device applies to get-recovery-key only".into());
        }
        recovery_portal::domain::ids::DeviceId::parse(device)
            .map_err(|e| format!("--device {e}"))?;
        let path = format!("/v1/devices/{device}/recovery-key");
        event["rawPath"] = path.clone().into();
        event["requestContext"]["http"]["path"] = path.into();
        event["pathParameters"]["device_id"] = device.into();
    }
    serde_json::to_string_pretty(&event).map_err(|e| e.to_string())
}
