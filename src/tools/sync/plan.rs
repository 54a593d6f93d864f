//! The sync's decisions, as a pure function of what Entra lists and what
//! the store holds: which devices to create or update, which keys to read
//! (only those the store does not hold), what to skip and why, and which
//! stored keys Entra no longer lists (reported, never deleted).

use super::entra::{EntraDevice, EntraKey, Reason};
use crate::domain::ids::{DeviceId, KeyId, UserId};
use crate::domain::lifecycle::DeviceMetadata;
use crate::domain::model::ManagedBy;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A device as the store holds it, as far as the plan needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub metadata: DeviceMetadata,
    /// Every key the device record still names, superseded ones included.
    pub keys: HashSet<KeyId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChange {
    Create,
    Update,
    Unchanged,
}

/// What to do for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePlan {
    pub device_id: DeviceId,
    pub metadata: DeviceMetadata,
    pub change: DeviceChange,
    /// `Some((old, new))` when the device moves to another owner.
    pub owner_change: Option<(UserId, UserId)>,
    /// Keys to read from Graph (`$select=key`) and escrow, oldest first.
    pub new_keys: Vec<EntraKey>,
    /// Keys Entra lists that the store already holds: never read again.
    pub unchanged_keys: usize,
}

/// A key (or a device's keys) not synced, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub device_id: Option<DeviceId>,
    pub key_id: Option<KeyId>,
    pub reason: Reason,
}

/// A stored key of a synced device that Entra no longer lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotInEntra {
    pub device_id: DeviceId,
    pub key_id: KeyId,
}

/// A stored device the sync wrote before that Entra no longer lists
/// (deleted from Entra): kept, with its keys, and reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceNotInEntra {
    pub device_id: DeviceId,
    pub display_name: String,
    /// Its stored keys (each also in `not_in_entra`).
    pub keys: usize,
}

/// What Entra no longer lists of the devices the sync wrote before and
/// Entra lists no key for now (`held`): every stored key of them, and
/// those devices Entra does not list at all. Reported, never changed.
pub fn unlisted(
    held: &HashMap<DeviceId, Held>,
    entra_devices: &HashMap<DeviceId, EntraDevice>,
) -> (Vec<NotInEntra>, Vec<DeviceNotInEntra>) {
    let mut ids: Vec<&DeviceId> = held.keys().collect();
    ids.sort();
    let (mut keys, mut devices) = (Vec::new(), Vec::new());
    for id in ids {
        let h = &held[id];
        let mut gone: Vec<KeyId> = h.keys.iter().copied().collect();
        gone.sort();
        keys.extend(gone.into_iter().map(|key_id| NotInEntra {
            device_id: id.clone(),
            key_id,
        }));
        if !entra_devices.contains_key(id) {
            devices.push(DeviceNotInEntra {
                device_id: id.clone(),
                display_name: h.metadata.display_name.clone(),
                keys: h.keys.len(),
            });
        }
    }
    (keys, devices)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub devices: Vec<DevicePlan>,
    pub skipped: Vec<Skipped>,
    pub not_in_entra: Vec<NotInEntra>,
}

/// Entra's keys grouped by device, in device order, each device's keys
/// oldest first (so a newer key supersedes an older one, never the reverse).
pub fn by_device(keys: &[EntraKey]) -> BTreeMap<DeviceId, Vec<EntraKey>> {
    let mut out: BTreeMap<DeviceId, Vec<EntraKey>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for k in keys.iter().filter(|k| seen.insert(k.key_id)) {
        out.entry(k.device_id.clone()).or_default().push(k.clone());
    }
    for v in out.values_mut() {
        v.sort_by_key(|k| (k.created_at, k.key_id));
    }
    out
}

fn metadata(d: &EntraDevice, owner: UserId) -> DeviceMetadata {
    DeviceMetadata {
        owner,
        display_name: d.display_name.clone(),
        os: d.os.clone(),
        managed_by: ManagedBy::Organization,
    }
}

/// The plan for one device with keys in Entra, or why it is skipped.
fn plan_device(
    id: &DeviceId,
    keys: &[EntraKey],
    entra: Option<&EntraDevice>,
    held: Option<&Held>,
) -> Result<DevicePlan, Reason> {
    let entra = entra.ok_or("device_not_in_entra")?;
    let owner = entra.owner.clone().ok_or("no_registered_owner")?;
    let metadata = metadata(entra, owner);
    let (change, owner_change) = match held {
        None => (DeviceChange::Create, None),
        Some(h) if h.metadata == metadata => (DeviceChange::Unchanged, None),
        Some(h) => (
            DeviceChange::Update,
            (h.metadata.owner != metadata.owner)
                .then(|| (h.metadata.owner.clone(), metadata.owner.clone())),
        ),
    };
    let (unchanged, new): (Vec<&EntraKey>, Vec<&EntraKey>) = keys
        .iter()
        .partition(|k| held.is_some_and(|h| h.keys.contains(&k.key_id)));
    Ok(DevicePlan {
        device_id: id.clone(),
        metadata,
        change,
        owner_change,
        new_keys: new.into_iter().cloned().collect(),
        unchanged_keys: unchanged.len(),
    })
}

/// The whole plan. `entra_devices` by Entra `deviceId`; `held` the stored
/// devices among those Entra lists keys for.
pub fn plan(
    keys: &BTreeMap<DeviceId, Vec<EntraKey>>,
    entra_devices: &HashMap<DeviceId, EntraDevice>,
    held: &HashMap<DeviceId, Held>,
) -> Plan {
    let mut out = Plan::default();
    for (id, device_keys) in keys {
        let stored = held.get(id);
        if let Some(h) = stored {
            let listed: HashSet<KeyId> = device_keys.iter().map(|k| k.key_id).collect();
            let mut gone: Vec<KeyId> = h.keys.difference(&listed).copied().collect();
            gone.sort();
            out.not_in_entra
                .extend(gone.into_iter().map(|key_id| NotInEntra {
                    device_id: id.clone(),
                    key_id,
                }));
        }
        match plan_device(id, device_keys, entra_devices.get(id), stored) {
            Ok(p) => out.devices.push(p),
            Err(reason) => out.skipped.extend(device_keys.iter().map(|k| Skipped {
                device_id: Some(id.clone()),
                key_id: Some(k.key_id),
                reason,
            })),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::VolumeType;
    use time::macros::datetime;

    fn key(n: u8, device: &str, year: i32) -> EntraKey {
        EntraKey {
            key_id: KeyId::parse(&format!("{n:02x}000000-0000-4000-8000-000000000000")).unwrap(),
            device_id: DeviceId::parse(device).unwrap(),
            volume_type: VolumeType::OperatingSystem,
            created_at: datetime!(2024-01-01 0:00 UTC).replace_year(year).unwrap(),
        }
    }

    fn entra(device: &str, owner: Option<&str>) -> (DeviceId, EntraDevice) {
        let id = DeviceId::parse(device).unwrap();
        let d = EntraDevice {
            device_id: id.clone(),
            display_name: format!("{device} name"),
            os: "Windows 10.0.22631".into(),
            owner: owner.map(|o| UserId::parse(o).unwrap()),
        };
        (id, d)
    }

    fn held(device: &EntraDevice, owner: &str, keys: &[&EntraKey]) -> (DeviceId, Held) {
        let h = Held {
            metadata: metadata(device, UserId::parse(owner).unwrap()),
            keys: keys.iter().map(|k| k.key_id).collect(),
        };
        (device.device_id.clone(), h)
    }

    /// (device, change, owner change, keys to read, keys unchanged)
    type Row = (String, DeviceChange, bool, Vec<u8>, usize);

    #[test]
    fn only_keys_the_store_lacks_are_read() {
        let (k1, k2, k3, k4) = (
            key(1, "D1", 2023),
            key(2, "D1", 2024),
            key(3, "D2", 2024),
            key(4, "D3", 2024),
        );
        let k5 = key(5, "D4", 2024);
        let devices: HashMap<_, _> = [
            entra("D1", Some("alice")),
            entra("D2", Some("bob")),
            entra("D3", Some("carol")),
        ]
        .into_iter()
        .collect();
        let stored: HashMap<_, _> = [
            held(&devices[&DeviceId::parse("D1").unwrap()], "alice", &[&k1]),
            held(&devices[&DeviceId::parse("D2").unwrap()], "dave", &[&k3]),
        ]
        .into_iter()
        .collect();
        // Listed newest first; planned oldest first.
        let listed = by_device(&[
            k2.clone(),
            k1.clone(),
            k3.clone(),
            k4.clone(),
            k5.clone(),
            k1.clone(),
        ]);
        let p = plan(&listed, &devices, &stored);
        let rows: Vec<Row> = p
            .devices
            .iter()
            .map(|d| {
                let ids = d
                    .new_keys
                    .iter()
                    .map(|k| k.key_id.hex()[..2].parse::<u8>().unwrap())
                    .collect();
                (
                    d.device_id.to_string(),
                    d.change,
                    d.owner_change.is_some(),
                    ids,
                    d.unchanged_keys,
                )
            })
            .collect();
        let want: Vec<Row> = vec![
            ("D1".into(), DeviceChange::Unchanged, false, vec![2], 1),
            ("D2".into(), DeviceChange::Update, true, vec![], 1),
            ("D3".into(), DeviceChange::Create, false, vec![4], 0),
        ];
        assert_eq!(rows, want);
        assert_eq!(
            p.skipped,
            vec![Skipped {
                device_id: Some(k5.device_id.clone()),
                key_id: Some(k5.key_id),
                reason: "device_not_in_entra"
            }]
        );
        assert!(p.not_in_entra.is_empty());
    }

    #[test]
    fn stored_keys_entra_no_longer_lists_are_reported_not_dropped() {
        let (k1, k2) = (key(1, "D1", 2023), key(2, "D1", 2024));
        let (id, d) = entra("D1", Some("alice"));
        let stored: HashMap<_, _> = [held(&d, "alice", &[&k1, &k2])].into_iter().collect();
        let devices: HashMap<_, _> = [(id.clone(), d)].into_iter().collect();
        let p = plan(&by_device(std::slice::from_ref(&k2)), &devices, &stored);
        assert_eq!(
            p.not_in_entra,
            vec![NotInEntra {
                device_id: id,
                key_id: k1.key_id
            }]
        );
        assert_eq!(p.devices[0].change, DeviceChange::Unchanged);
        assert!(p.devices[0].new_keys.is_empty());
    }

    #[test]
    fn synced_devices_entra_dropped_are_reported_with_their_keys() {
        let (k1, k2, k3) = (key(1, "D1", 2023), key(2, "D1", 2024), key(3, "D2", 2024));
        let (id1, d1) = entra("D1", Some("alice"));
        let (id2, d2) = entra("D2", Some("bob"));
        // D1 is gone from Entra; D2 is still listed but has no keys there.
        let stored: HashMap<_, _> = [held(&d1, "alice", &[&k2, &k1]), held(&d2, "bob", &[&k3])]
            .into_iter()
            .collect();
        let listed: HashMap<_, _> = [(id2.clone(), d2)].into_iter().collect();
        let (keys, devices) = unlisted(&stored, &listed);
        let pairs: Vec<(DeviceId, KeyId)> =
            keys.into_iter().map(|k| (k.device_id, k.key_id)).collect();
        assert_eq!(
            pairs,
            [
                (id1.clone(), k1.key_id),
                (id1.clone(), k2.key_id),
                (id2, k3.key_id)
            ]
        );
        assert_eq!(
            devices,
            [DeviceNotInEntra {
                device_id: id1,
                display_name: "D1 name".into(),
                keys: 2
            }]
        );
    }

    #[test]
    fn a_device_without_a_user_owner_is_skipped_with_its_keys() {
        let (k1, k2) = (key(1, "D1", 2023), key(2, "D1", 2024));
        let devices: HashMap<_, _> = [entra("D1", None)].into_iter().collect();
        let p = plan(&by_device(&[k1, k2]), &devices, &HashMap::new());
        assert!(p.devices.is_empty());
        assert_eq!(p.skipped.len(), 2);
        assert!(p.skipped.iter().all(|s| s.reason == "no_registered_owner"));
    }
}
