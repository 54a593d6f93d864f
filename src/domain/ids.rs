//! Identifier types. Each one is validated once, at the edge, so the rest of
//! the code can never hold a malformed id.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Why a string is not a valid identifier (the field name is added by callers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must be 1 to 128 characters from A-Z a-z 0-9 . _ -")]
    Opaque,
    #[error("must be a GUID such as 1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b")]
    Guid,
    #[error("must be at least 8 hexadecimal digits of a key ID (dashes are ignored)")]
    Prefix,
}

/// How many characters an opaque ID (tenant, device, user) has.
pub const OPAQUE_LEN: std::ops::RangeInclusive<usize> = 1..=128;

fn is_opaque(s: &str) -> bool {
    OPAQUE_LEN.contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, IdError> {
                if is_opaque(s) { Ok(Self(s.to_owned())) } else { Err(IdError::Opaque) }
            }
            pub fn as_str(&self) -> &str { &self.0 }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(&self.0) }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> { s.serialize_str(&self.0) }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

opaque_id!(
    /// A tenant (an Entra tenant GUID, an Okta org name, ...).
    TenantId
);
opaque_id!(
    /// A device, as the MDM names it.
    DeviceId
);
opaque_id!(
    /// A user: matched against the token's `oid` (else `sub`).
    UserId
);

impl UserId {
    /// The audit actor of a `portal import` run by `name` (an OS user or
    /// `--actor`): `import:<name>`. A token's user id cannot contain `:`, so
    /// no caller can pose as an importer in the audit trail.
    pub fn importer(name: &str) -> Result<Self, IdError> {
        if is_opaque(name) {
            Ok(Self(format!("{IMPORTER_PREFIX}{name}")))
        } else {
            Err(IdError::Opaque)
        }
    }

    /// The audit actor of a one-way sync from `source` (`sync:entra`). As
    /// for importers, no token's user id can contain `:`, so no caller can
    /// pose as a sync job in the audit trail.
    pub fn syncer(source: &str) -> Result<Self, IdError> {
        if is_opaque(source) {
            Ok(Self(format!("{SYNC_PREFIX}{source}")))
        } else {
            Err(IdError::Opaque)
        }
    }

    /// Is this a directory sync's actor (`sync:<source>`)? No token's user
    /// id can be one (`:` is not allowed), so only the sync code writes as it.
    pub fn is_directory_sync(&self) -> bool {
        self.0.starts_with(SYNC_PREFIX)
    }

    /// A user id, an importer (`import:<name>`) or a sync job
    /// (`sync:<source>`), as audit events name their actor.
    pub fn parse_actor(s: &str) -> Result<Self, IdError> {
        if let Some(name) = s.strip_prefix(IMPORTER_PREFIX) {
            Self::importer(name)
        } else if let Some(source) = s.strip_prefix(SYNC_PREFIX) {
            Self::syncer(source)
        } else {
            Self::parse(s)
        }
    }
}

const IMPORTER_PREFIX: &str = "import:";
const SYNC_PREFIX: &str = "sync:";

/// A BitLocker key protector ID: a GUID, kept as 16 bytes and printed in the
/// canonical upper-case form shown on the recovery screen.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(u128);

impl KeyId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        // The recovery screen and PowerShell show the ID with or without braces.
        let t = match s.strip_prefix('{') {
            Some(rest) => rest.strip_suffix('}').ok_or(IdError::Guid)?,
            None => s,
        };
        let b = t.as_bytes();
        let dashed = b.len() == 36 && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-');
        if !(dashed || b.len() == 32) {
            return Err(IdError::Guid);
        }
        let hex: String = t.chars().filter(|&c| c != '-').collect();
        if hex.len() != 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(IdError::Guid);
        }
        u128::from_str_radix(&hex, 16)
            .map(KeyId)
            .map_err(|_| IdError::Guid)
    }

    /// 32 lower-case hex digits, the form the prefix index sorts on.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = format!("{:032X}", self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}
impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}
impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// At least 8 hex digits of a key ID, as typed from a recovery screen:
/// case-insensitive, dashes ignored. Stored lower-case without dashes.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct KeyIdPrefix(String);

impl KeyIdPrefix {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let hex: String = s.chars().filter(|&c| c != '-').collect();
        if !(8..=32).contains(&hex.len()) || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(IdError::Prefix);
        }
        Ok(Self(hex.to_ascii_lowercase()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn matches(&self, id: &KeyId) -> bool {
        id.hex().starts_with(&self.0)
    }
}

/// Which key a retrieval asks for: a full ID or a prefix of one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySelector {
    Exact(KeyId),
    Prefix(KeyIdPrefix),
}

impl KeySelector {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        match KeyId::parse(s) {
            Ok(id) => Ok(Self::Exact(id)),
            Err(_) => KeyIdPrefix::parse(s).map(Self::Prefix),
        }
    }
    pub fn matches(&self, id: &KeyId) -> bool {
        match self {
            Self::Exact(k) => k == id,
            Self::Prefix(p) => p.matches(id),
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn only_the_sync_code_writes_as_a_directory_sync() {
        let sync = UserId::syncer("entra").unwrap();
        assert!(sync.is_directory_sync());
        assert_eq!(UserId::parse_actor("sync:entra").unwrap(), sync);
        // No token's user id can pose as one.
        assert!(UserId::parse("sync:entra").is_err());
        assert!(!UserId::parse("sync-entra").unwrap().is_directory_sync());
        assert!(!UserId::importer("ops").unwrap().is_directory_sync());
    }

    use super::*;

    #[test]
    fn opaque_ids_accept_guid_numbers_and_names_only() {
        for ok in ["a", "12345", "laptop-01.corp_x", &"x".repeat(128)] {
            assert!(DeviceId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", "a#b", &"x".repeat(129)] {
            assert_eq!(DeviceId::parse(bad), Err(IdError::Opaque), "{bad}");
        }
    }

    #[test]
    fn importers_are_actors_no_token_can_name() {
        let admin = UserId::importer("admin").unwrap();
        assert_eq!(admin.as_str(), "import:admin");
        assert_eq!(UserId::parse_actor("import:admin"), Ok(admin));
        assert_eq!(UserId::parse("import:admin"), Err(IdError::Opaque));
        assert_eq!(UserId::parse_actor("alice"), UserId::parse("alice"));
        for bad in ["import:", "import:a b", "import:import:x", "x:y"] {
            assert!(UserId::parse_actor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sync_jobs_are_actors_no_token_can_name() {
        let entra = UserId::syncer("entra").unwrap();
        assert_eq!(entra.as_str(), "sync:entra");
        assert_eq!(UserId::parse_actor("sync:entra"), Ok(entra));
        assert_eq!(UserId::parse("sync:entra"), Err(IdError::Opaque));
        for bad in ["sync:", "sync:a b", "sync:sync:x", "sync:import:x"] {
            assert!(UserId::parse_actor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_ids_round_trip_in_canonical_form() {
        let id = KeyId::parse("1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b").unwrap();
        assert_eq!(id.to_string(), "1F2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A5B");
        assert_eq!(
            KeyId::parse("{1F2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A5B}"),
            Ok(id)
        );
        assert_eq!(KeyId::parse("1f2e3d4c5b6a47988a9b0c1d2e3f4a5b"), Ok(id));
        assert_eq!(id.hex(), "1f2e3d4c5b6a47988a9b0c1d2e3f4a5b");
        for bad in [
            "",
            "1f2e3d4c",
            "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5",
            "{1f2e3d4c5b6a47988a9b0c1d2e3f4a5b",
            "zz2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b",
            "1f2e3d4c5-b6a-4798-8a9b-0c1d2e3f4a5b",
        ] {
            assert!(KeyId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_ignore_case_and_dashes() {
        let id = KeyId::parse("1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b").unwrap();
        assert!(KeyIdPrefix::parse("1F2E3D4C").unwrap().matches(&id));
        assert!(KeyIdPrefix::parse("1f2e3d4c-5b").unwrap().matches(&id));
        assert!(!KeyIdPrefix::parse("1f2e3d4d").unwrap().matches(&id));
        assert!(KeyIdPrefix::parse("1f2e3d4").is_err());
        assert!(KeyIdPrefix::parse("1f2e3d4g").is_err());
    }
}
