//! Domain records: tenants, devices, key metadata, and the recovery password.

mod incident;
pub use incident::{Incident, IncidentId, IncidentState, OpenIncident};

use crate::domain::ids::{DeviceId, KeyId, TenantId, UserId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::{Zeroize, Zeroizing};

/// What kind of volume a key unlocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeType {
    OperatingSystem,
    FixedData,
    RemovableData,
}

impl VolumeType {
    pub const ALL: [Self; 3] = [Self::OperatingSystem, Self::FixedData, Self::RemovableData];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OperatingSystem => "operating_system",
            Self::FixedData => "fixed_data",
            Self::RemovableData => "removable_data",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Who encrypted the device: the organisation escrows keys; a user's own
/// encryption is never escrowed, so no key can be shown for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManagedBy {
    Organization,
    User,
}

impl ManagedBy {
    pub const ALL: [Self; 2] = [Self::Organization, Self::User];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Organization => "organization",
            Self::User => "user",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "organization" => Some(Self::Organization),
            "user" => Some(Self::User),
            _ => None,
        }
    }
}

/// Where a user gets help when no key can be shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Helpdesk {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl Helpdesk {
    /// Longest value of a helpdesk field.
    pub const MAX_CHARS: usize = 256;

    /// The card a locked-out user reads and acts on: plain text without
    /// control, format (bidi, zero-width) or separator characters; `url`
    /// an `https:` URL; `email` one plain address (no `mailto:`, no query
    /// that could add recipients). `Err` names the field and the rule.
    pub fn check(&self) -> Result<(), String> {
        for (name, value) in [
            ("name", &self.name),
            ("email", &self.email),
            ("phone", &self.phone),
            ("url", &self.url),
        ] {
            let Some(v) = value else { continue };
            if v.trim().is_empty()
                || v.chars().count() > Self::MAX_CHARS
                || v.chars().any(crate::domain::text::hidden)
            {
                return Err(format!(
                    "helpdesk.{name} must be 1 to {} characters of plain text, without control, format (bidi or zero-width) or line-separator characters",
                    Self::MAX_CHARS
                ));
            }
        }
        if let Some(u) = &self.url
            && !crate::domain::text::is_https_url(u)
        {
            return Err(
                "helpdesk.url must be an https:// address such as https://help.example.com".into(),
            );
        }
        if let Some(e) = &self.email
            && !crate::domain::text::is_plain_email(e)
        {
            return Err(
                "helpdesk.email must be one plain address such as it@example.com (no mailto:, no ? or , parts)".into(),
            );
        }
        Ok(())
    }
}

/// When a key retrieval must carry a `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequireReason {
    #[default]
    Never,
    /// Only retrievals on helpdesk grounds (`RecoveryKey.Read.All`).
    Helpdesk,
    Always,
}

impl RequireReason {
    pub const ALL: [Self; 3] = [Self::Never, Self::Helpdesk, Self::Always];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Never => "never",
            Self::Helpdesk => "helpdesk",
            Self::Always => "always",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A tenant's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPolicy {
    /// Whether device owners may retrieve their own keys.
    pub self_service: bool,
    pub helpdesk: Option<Helpdesk>,
    /// When a retrieval without `reason` is refused.
    pub require_reason: RequireReason,
    /// How long a superseded key stays readable by the helpdesk (by key ID)
    /// before it is deleted.
    pub superseded_key_retention_days: u16,
    /// Keys per device owner per rolling hour; `None`: the deployment's
    /// `PORTAL_KEY_RATE_LIMIT`.
    pub self_service_rate_limit: Option<u32>,
    /// Keys per helpdesk agent per rolling hour; `None`: the deployment's
    /// `PORTAL_HELPDESK_RATE_LIMIT`. An open incident's limit replaces it.
    pub helpdesk_rate_limit: Option<u32>,
    /// How long a retired device stays restorable, its keys readable by the
    /// helpdesk by key ID (with a reason), before it is deleted.
    pub retired_device_retention_days: u16,
    /// The incident the tenant record last opened (it may have expired or
    /// been closed since: see `OpenIncident::is_open`). Not a setting: a
    /// settings change keeps it as it is.
    pub incident: Option<OpenIncident>,
}

impl TenantPolicy {
    pub const DEFAULT_RETENTION_DAYS: u16 = 30;
    pub const RETENTION_DAYS: std::ops::RangeInclusive<u16> = 1..=3650;
    /// Range of the per-tenant rate limits (as `PORTAL_HELPDESK_RATE_LIMIT`).
    pub const RATE_LIMITS: std::ops::RangeInclusive<u32> = 1..=100_000;

    /// The incident open at `now`, if any.
    pub fn open_incident(&self, now: time::OffsetDateTime) -> Option<&OpenIncident> {
        self.incident.as_ref().filter(|i| i.is_open(now))
    }
}

impl Default for TenantPolicy {
    /// A tenant with no record: no self-service (never on by default) and no
    /// helpdesk details.
    fn default() -> Self {
        Self {
            self_service: false,
            helpdesk: None,
            require_reason: RequireReason::Never,
            superseded_key_retention_days: Self::DEFAULT_RETENTION_DAYS,
            retired_device_retention_days: Self::DEFAULT_RETENTION_DAYS,
            self_service_rate_limit: None,
            helpdesk_rate_limit: None,
            incident: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub policy: TenantPolicy,
}

/// Metadata of one escrowed key: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMeta {
    pub key_id: KeyId,
    pub volume_type: VolumeType,
    pub created_at: OffsetDateTime,
    /// The first granted disclosure: a person has read the key, so it is due
    /// for rotation until a newer key supersedes it.
    pub disclosed_at: Option<OffsetDateTime>,
    /// When a newer key of the same volume type was escrowed.
    pub superseded_at: Option<OffsetDateTime>,
    /// When a superseded key stops being readable and is deleted.
    pub expires_at: Option<OffsetDateTime>,
}

impl KeyMeta {
    /// A current key, never disclosed.
    pub fn new(key_id: KeyId, volume_type: VolumeType, created_at: OffsetDateTime) -> Self {
        Self {
            key_id,
            volume_type,
            created_at,
            disclosed_at: None,
            superseded_at: None,
            expires_at: None,
        }
    }

    pub fn is_superseded(&self) -> bool {
        self.superseded_at.is_some()
    }

    /// Not yet past its retention (current keys never expire). Stores may
    /// keep an expired key a little longer (DynamoDB TTL deletes within
    /// days), so every read checks this.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }

    /// Disclosed and not yet superseded: the device should rotate it.
    pub fn rotation_due(&self) -> bool {
        self.disclosed_at.is_some() && self.superseded_at.is_none()
    }
}

/// A device and the metadata of its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub tenant: TenantId,
    pub device_id: DeviceId,
    pub owner: UserId,
    pub display_name: String,
    pub os: String,
    pub managed_by: ManagedBy,
    pub keys: Vec<KeyMeta>,
    /// When the API last gave the device to its current owner (`None`: the
    /// owner it was enrolled or imported with). Ownership is not a key
    /// permission: the owner reads only keys created since then.
    pub owner_since: Option<OffsetDateTime>,
    /// Set while the device is retired (restorable until it expires).
    pub retired: Option<Retirement>,
}

impl Device {
    /// A key its owner may read: one created since they became the owner
    /// (`created_at` is never in the future, so such a key was escrowed
    /// after the ownership change). Older keys take the helpdesk path, so
    /// "re-own, read, re-own back" discloses nothing.
    pub fn owner_may_read(&self, key: &KeyMeta) -> bool {
        self.owner_since.is_none_or(|since| key.created_at >= since)
    }

    /// Retired and past its retention: gone, whatever a store still holds.
    pub fn is_gone(&self, now: OffsetDateTime) -> bool {
        self.retired.as_ref().is_some_and(|r| r.expires_at <= now)
    }
}

/// A retirement: `DELETE /v1/devices/{id}` takes the device out of its
/// owner's list and self-service at once; its keys stay readable by the
/// helpdesk (by key ID, with a reason) and the device restorable until
/// `expires_at`, then everything is deleted (TTL on AWS, the sweep when
/// embedded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retirement {
    pub at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// An encrypted recovery password as the cipher produced it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKey(pub Vec<u8>);

impl std::fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedKey({} bytes)", self.0.len())
    }
}

/// A device with its sealed keys: only the key-retrieval path loads this.
#[derive(Debug, Clone)]
pub struct SealedDevice {
    pub device: Device,
    /// The tenant's policy: read from the tenant record by the stores, never
    /// stored with the device.
    pub policy: TenantPolicy,
    pub sealed: Vec<(KeyId, SealedKey)>,
}

/// What the encryption is bound to: a ciphertext moved to another tenant,
/// device or key ID no longer decrypts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyContext {
    pub tenant: TenantId,
    pub device: DeviceId,
    pub key_id: KeyId,
}

/// A BitLocker recovery password: 48 digits in 8 groups of 6.
///
/// The buffer is zeroed on drop and the type has no `Debug` or `Display`, so
/// it cannot be logged by accident; `expose` is the only way to the digits.
pub struct RecoveryPassword(Zeroizing<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be 8 groups of 6 digits separated by dashes, each group divisible by 11 and below 720896"
)]
pub struct InvalidRecoveryPassword;

impl RecoveryPassword {
    pub fn parse(s: &str) -> Result<Self, InvalidRecoveryPassword> {
        let ok = s.len() == 55
            && s.split('-').count() == 8
            && s.split('-').all(|g| {
                g.len() == 6
                    && g.bytes().all(|b| b.is_ascii_digit())
                    && g.parse::<u32>().is_ok_and(|n| n % 11 == 0 && n < 720_896)
            });
        if ok {
            Ok(Self(Zeroizing::new(s.to_owned())))
        } else {
            Err(InvalidRecoveryPassword)
        }
    }

    /// Parses plaintext bytes from the cipher, wiping the input either way.
    pub fn from_plaintext(mut bytes: Vec<u8>) -> Result<Self, InvalidRecoveryPassword> {
        let out = std::str::from_utf8(&bytes)
            .map_err(|_| InvalidRecoveryPassword)
            .and_then(Self::parse);
        bytes.zeroize();
        out
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Clone for RecoveryPassword {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_password_checks_every_group() {
        let good = "123453-234564-345675-456786-567897-679008-700007-000000";
        assert!(RecoveryPassword::parse(good).is_ok());
        // 123454 is not divisible by 11.
        assert!(
            RecoveryPassword::parse("123454-234564-345675-456786-567897-679008-700007-000000")
                .is_err()
        );
        // 720907 = 11 * 65537 is a multiple of 11 but above the 720896 limit.
        assert!(
            RecoveryPassword::parse("720907-234564-345675-456786-567897-679008-700007-000000")
                .is_err()
        );
        assert!(
            RecoveryPassword::parse("123453-234564-345675-456786-567897-679008-700007").is_err()
        );
        assert!(
            RecoveryPassword::parse("123453-234564-345675-456786-567897-679008-700007-00000a")
                .is_err()
        );
        assert!(
            RecoveryPassword::parse("123453 234564-345675-456786-567897-679008-700007-000000")
                .is_err()
        );
    }
}
