//! Entra's objects as Graph returns them, turned into the portal's types:
//! `bitlockerRecoveryKey` (list and `$select=key` get), `device` with its
//! `registeredOwners`. Shapes follow Microsoft's published examples:
//! `volumeType` arrives as `1`/`"1"` or as `"operatingSystemVolume"`; a
//! single entity arrives at the top level or wrapped in `value`.

use crate::domain::ids::{DeviceId, KeyId, UserId};
use crate::domain::model::{RecoveryPassword, VolumeType};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

/// The key list: metadata only (the list never returns `key`).
pub const KEYS_PATH: &str = "/v1.0/informationProtection/bitlocker/recoveryKeys";
/// Devices with their registered owners' object IDs (what an Entra access
/// token carries as `oid`).
pub const DEVICES_PATH: &str = "/v1.0/devices?$select=id,deviceId,displayName,operatingSystem,operatingSystemVersion&$expand=registeredOwners($select=id)";

/// One key's password read: the only request that carries `$select=key`.
pub fn key_path(id: &KeyId) -> String {
    format!(
        "/v1.0/informationProtection/bitlocker/recoveryKeys/{}?$select=key",
        id.to_string().to_ascii_lowercase()
    )
}

/// A `bitlockerRecoveryKey` from the list (no `key`).
#[derive(Debug, Clone, Deserialize)]
pub struct RawKey {
    pub id: String,
    #[serde(rename = "createdDateTime")]
    pub created: Option<String>,
    #[serde(rename = "deviceId")]
    pub device_id: Option<String>,
    #[serde(rename = "volumeType")]
    pub volume_type: Option<serde_json::Value>,
}

/// A `device` with `registeredOwners` expanded.
#[derive(Debug, Clone, Deserialize)]
pub struct RawDevice {
    #[serde(rename = "deviceId")]
    pub device_id: Option<String>,
    #[serde(rename = "displayName")]
    pub display_name: Option<String>,
    #[serde(rename = "operatingSystem")]
    pub operating_system: Option<String>,
    #[serde(rename = "operatingSystemVersion")]
    pub operating_system_version: Option<String>,
    #[serde(rename = "registeredOwners", default)]
    pub registered_owners: Vec<RawOwner>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RawOwner {
    pub id: String,
    #[serde(rename = "@odata.type")]
    pub odata_type: Option<String>,
}

/// A key Entra lists, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraKey {
    pub key_id: KeyId,
    /// Entra's `deviceId` (not the object `id`): the portal's device ID.
    pub device_id: DeviceId,
    pub volume_type: VolumeType,
    pub created_at: OffsetDateTime,
}

/// A device Entra lists, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraDevice {
    pub device_id: DeviceId,
    pub display_name: String,
    pub os: String,
    /// The first registered owner that is a user; `None` when there is none.
    pub owner: Option<UserId>,
}

/// `volumeType` as a number, a numeric string or the enum member's name.
pub fn volume_type(v: &serde_json::Value) -> Option<VolumeType> {
    let n = match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => match s.as_str() {
            "operatingSystemVolume" => Some(1),
            "fixedDataVolume" => Some(2),
            "removableDataVolume" => Some(3),
            other => other.parse().ok(),
        },
        _ => None,
    };
    match n? {
        1 => Some(VolumeType::OperatingSystem),
        2 => Some(VolumeType::FixedData),
        3 => Some(VolumeType::RemovableData),
        _ => None,
    }
}

/// Why a listed key cannot be synced (a summary's `skipped` reason).
pub type Reason = &'static str;

impl RawKey {
    /// The key, or why it is skipped. Never fails the run: one odd key must
    /// not hold back the others.
    pub fn validate(&self) -> Result<EntraKey, (Option<KeyId>, Reason)> {
        let key_id = KeyId::parse(&self.id).map_err(|_| (None, "key_id_not_a_guid"))?;
        let skip = |r| (Some(key_id), r);
        let device_id = self
            .device_id
            .as_deref()
            .and_then(|d| DeviceId::parse(d).ok())
            .ok_or(skip("no_device_id"))?;
        let volume_type = self
            .volume_type
            .as_ref()
            .and_then(volume_type)
            .ok_or(skip("unknown_volume_type"))?;
        let created_at = self
            .created
            .as_deref()
            .and_then(|c| OffsetDateTime::parse(c, &Rfc3339).ok())
            .ok_or(skip("no_created_date_time"))?;
        Ok(EntraKey {
            key_id,
            device_id,
            volume_type,
            created_at,
        })
    }
}

/// Text for a device field: control characters dropped, at most `max`
/// characters, `None` when nothing is left.
fn text(s: &str, max: usize) -> Option<String> {
    let t: String = s
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect::<String>()
        .trim()
        .to_owned();
    (!t.is_empty()).then_some(t)
}

impl RawDevice {
    /// The device, or `None` without a usable `deviceId`.
    pub fn validate(&self) -> Option<EntraDevice> {
        let device_id = DeviceId::parse(self.device_id.as_deref()?).ok()?;
        let display_name = self
            .display_name
            .as_deref()
            .and_then(|n| text(n, 256))
            .unwrap_or_else(|| device_id.to_string());
        let os = [&self.operating_system, &self.operating_system_version]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        let owner = self
            .registered_owners
            .iter()
            .filter(|o| {
                o.odata_type
                    .as_deref()
                    .is_none_or(|t| t == "#microsoft.graph.user")
            })
            .find_map(|o| UserId::parse(&o.id).ok());
        Some(EntraDevice {
            os: text(&os, 128).unwrap_or_else(|| "Windows".into()),
            device_id,
            display_name,
            owner,
        })
    }
}

/// The `key` of a single-entity answer, at the top level or in `value`
/// (an object, or an array of one). Deserialized straight into a zeroized
/// string: the password is never copied into an untracked buffer.
#[derive(Deserialize)]
struct KeyAnswer {
    id: Option<String>,
    key: Option<Zeroizing<String>>,
    value: Option<Wrapped>,
}

#[derive(Deserialize)]
struct KeyOnly {
    id: Option<String>,
    key: Option<Zeroizing<String>>,
}

struct Wrapped(Option<KeyOnly>);

impl<'de> Deserialize<'de> for Wrapped {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Wrapped;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an entity or an array of one entity")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, a: A) -> Result<Wrapped, A::Error> {
                let one = KeyOnly::deserialize(serde::de::value::MapAccessDeserializer::new(a))?;
                Ok(Wrapped(Some(one)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Wrapped, A::Error> {
                let first: Option<KeyOnly> = a.next_element()?;
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Wrapped(first))
            }
        }
        d.deserialize_any(V)
    }
}

/// Why a key read's answer cannot be used (never containing the answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyAnswerError {
    #[error("the answer is not a bitlockerRecoveryKey")]
    Shape,
    #[error("the answer has no key property")]
    NoKey,
    #[error("the answer is for another key")]
    OtherKey,
    #[error("the key is not a well-formed recovery password")]
    Malformed,
}

/// The recovery password of key `id` from a `$select=key` answer.
pub fn password(id: &KeyId, body: &[u8]) -> Result<RecoveryPassword, KeyAnswerError> {
    let a: KeyAnswer = serde_json::from_slice(body).map_err(|_| KeyAnswerError::Shape)?;
    let (answer_id, key) = match (a.key, a.value) {
        (Some(k), _) => (a.id, k),
        (None, Some(Wrapped(Some(KeyOnly { id, key: Some(k) })))) => (id.or(a.id), k),
        _ => return Err(KeyAnswerError::NoKey),
    };
    // With `$select=key`, Graph may answer the selected property only.
    if answer_id.is_some_and(|i| KeyId::parse(&i).ok() != Some(*id)) {
        return Err(KeyAnswerError::OtherKey);
    }
    RecoveryPassword::parse(key.trim()).map_err(|_| KeyAnswerError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PW: &str = "038258-286682-604857-317823-647658-401093-009361-230186";
    const ID: &str = "b465e4e8-e4e8-b465-e8e4-65b4e8e465b4";

    #[test]
    fn volume_types_as_numbers_numeric_strings_or_names() {
        for (v, want) in [
            (json!(1), Some(VolumeType::OperatingSystem)),
            (json!("1"), Some(VolumeType::OperatingSystem)),
            (
                json!("operatingSystemVolume"),
                Some(VolumeType::OperatingSystem),
            ),
            (json!(2), Some(VolumeType::FixedData)),
            (json!("fixedDataVolume"), Some(VolumeType::FixedData)),
            (json!("3"), Some(VolumeType::RemovableData)),
            (
                json!("removableDataVolume"),
                Some(VolumeType::RemovableData),
            ),
            (json!(4), None),
            (json!("unknownFutureValue"), None),
            (json!(null), None),
        ] {
            assert_eq!(volume_type(&v), want, "{v}");
        }
    }

    #[test]
    fn the_documented_list_item_validates() {
        // Microsoft's "List recoveryKeys" example item.
        let raw: RawKey = serde_json::from_value(json!({
            "@odata.type": "#microsoft.graph.bitlockerRecoveryKey",
            "id": ID, "createdDateTime": "2020-06-15T13:45:30.0000000Z",
            "volumeType": "1", "deviceId": "2ef04ef1-23b0-2e00-a3a5-ab345e567ab6"}))
        .unwrap();
        let k = raw.validate().unwrap();
        assert_eq!(k.key_id, KeyId::parse(ID).unwrap());
        assert_eq!(k.device_id.as_str(), "2ef04ef1-23b0-2e00-a3a5-ab345e567ab6");
        assert_eq!(k.created_at.unix_timestamp(), 1_592_228_730);
        let mut odd = raw.clone();
        odd.volume_type = Some(json!(4));
        assert_eq!(odd.validate().err().unwrap().1, "unknown_volume_type");
        odd.id = "not-a-guid".into();
        assert_eq!(odd.validate().err().unwrap(), (None, "key_id_not_a_guid"));
    }

    #[test]
    fn key_answers_at_the_top_level_or_wrapped_in_value() {
        let id = KeyId::parse(ID).unwrap();
        let top = json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#informationProtection/bitlocker/recoveryKeys(key)/$entity",
                         "id": ID, "createdDateTime": "2020-06-15T13:45:30.0000000Z",
                         "volumeType": "1", "deviceId": "1ab40ab2-32a8-4b00-b6b5-ba724e407de9", "key": PW});
        let selected_only = json!({"key": PW});
        let wrapped = json!({"value": {"id": ID, "key": PW}});
        let wrapped_array = json!({"value": [{"id": ID, "key": PW}]});
        for body in [top, selected_only, wrapped, wrapped_array] {
            let pw = password(&id, body.to_string().as_bytes()).expect("a password");
            assert_eq!(pw.expose(), PW);
        }
        let other = json!({"id": "6a30ed7b-247b-4d26-86b5-2f405e55ea42", "key": PW});
        assert_eq!(
            password(&id, other.to_string().as_bytes()).err(),
            Some(KeyAnswerError::OtherKey)
        );
        assert_eq!(
            password(&id, br#"{"id":"x"}"#).err(),
            Some(KeyAnswerError::NoKey)
        );
        let bad = json!({"key": "123454-234564-345675-456786-567897-679008-700007-000000"});
        let e = password(&id, bad.to_string().as_bytes()).err().unwrap();
        assert_eq!(e, KeyAnswerError::Malformed);
        assert!(!e.to_string().contains("123454"));
    }

    #[test]
    fn devices_take_their_user_owner_and_os() {
        let raw: RawDevice = serde_json::from_value(json!({
            "id": "000e2d3b-2a1e-4f4e-9c1a-2b3c4d5e6f70", "deviceId": "2ef04ef1-23b0-2e00-a3a5-ab345e567ab6",
            "displayName": "DESKTOP-7Q2M4K1", "operatingSystem": "Windows", "operatingSystemVersion": "10.0.22631.4317",
            "registeredOwners": [
                {"@odata.type": "#microsoft.graph.servicePrincipal", "id": "aaaaaaaa-0000-0000-0000-000000000000"},
                {"@odata.type": "#microsoft.graph.user", "id": "96a9c7a5-3b70-4b6e-9a8e-0e4e0b7c2f11"}]}))
        .unwrap();
        let d = raw.validate().unwrap();
        assert_eq!(d.display_name, "DESKTOP-7Q2M4K1");
        assert_eq!(d.os, "Windows 10.0.22631.4317");
        assert_eq!(
            d.owner.unwrap().as_str(),
            "96a9c7a5-3b70-4b6e-9a8e-0e4e0b7c2f11"
        );
        let bare: RawDevice = serde_json::from_value(json!({"deviceId": "d-1"})).unwrap();
        let d = bare.validate().unwrap();
        assert_eq!(
            (d.display_name.as_str(), d.os.as_str(), d.owner),
            ("d-1", "Windows", None)
        );
    }
}
