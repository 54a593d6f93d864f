//! Table-driven tests of the batch planners.

use super::*;
use crate::domain::ids::UserId;
use crate::domain::model::VolumeType;
use crate::domain::ratelimit::Slot;

const A: &str = "aaaaaaaa000000000000000000000001";
const B: &str = "bbbbbbbb000000000000000000000002";
const C: &str = "cccccccc000000000000000000000003";

fn id(hex: &str) -> KeyId {
    KeyId::parse(hex).unwrap()
}

fn dev(name: &str) -> DeviceId {
    DeviceId::parse(name).unwrap()
}

fn at(device: &str, key: &str) -> KeyLocation {
    KeyLocation {
        key_id: id(key),
        device_id: dev(device),
        display_name: device.into(),
        owner: UserId::parse("alice").unwrap(),
        volume_type: VolumeType::OperatingSystem,
        created_at: OffsetDateTime::UNIX_EPOCH,
    }
}

#[test]
fn classify_rules() {
    let wanted = |d: &str, k: &str| Lookup::Wanted(dev(d), id(k));
    // (case, lookups in request order, classification)
    type Case<'a> = (&'a str, Vec<Result<Vec<KeyLocation>, ()>>, Vec<Lookup>);
    #[rustfmt::skip]
    let table: Vec<Case> = vec![
        ("empty batch", vec![], vec![]),
        ("one key each", vec![Ok(vec![at("PC-1", A)]), Ok(vec![at("PC-2", B)])],
            vec![wanted("PC-1", A), wanted("PC-2", B)]),
        ("store failed", vec![Err(())], vec![Lookup::Failed]),
        ("no match", vec![Ok(vec![])], vec![Lookup::Missing]),
        ("several matches, sorted and distinct", vec![Ok(vec![at("PC-2", C), at("PC-1", A), at("PC-3", A)])],
            vec![Lookup::Ambiguous(vec![id(A), id(C)])]),
        ("the same key twice: disclosed once", vec![Ok(vec![at("PC-1", A)]), Err(()), Ok(vec![at("PC-1", A)])],
            vec![wanted("PC-1", A), Lookup::Failed, Lookup::Again(0)]),
        ("two keys of one device are two items", vec![Ok(vec![at("PC-1", A)]), Ok(vec![at("PC-1", B)])],
            vec![wanted("PC-1", A), wanted("PC-1", B)]),
        ("a key ID on another device is another key", vec![Ok(vec![at("PC-1", A)]), Ok(vec![at("PC-2", A)])],
            vec![wanted("PC-1", A), wanted("PC-2", A)]),
        ("a repeat refers to the first", vec![Ok(vec![]), Ok(vec![at("PC-1", A)]), Ok(vec![at("PC-1", A)]), Ok(vec![at("PC-1", A)])],
            vec![Lookup::Missing, wanted("PC-1", A), Lookup::Again(1), Lookup::Again(1)]),
    ];
    for (case, found, want) in table {
        assert_eq!(classify(found), want, "{case}");
    }
}

#[test]
fn next_chunk_rules() {
    // (case, devices of the pending keys, chunk size, chunks in turn)
    type Case<'a> = (&'a str, Vec<&'a str>, usize, Vec<Vec<usize>>);
    #[rustfmt::skip]
    let table: Vec<Case> = vec![
        ("distinct devices in one chunk", vec!["a", "b", "c"], 49, vec![vec![0, 1, 2]]),
        ("at most max per chunk", vec!["a", "b", "c", "d", "e"], 2, vec![vec![0, 1], vec![2, 3], vec![4]]),
        ("a second key of a device waits", vec!["a", "a", "b", "a"], 49, vec![vec![0, 2], vec![1], vec![3]]),
        ("waiting keys keep request order", vec!["a", "a", "b", "c", "b"], 2, vec![vec![0, 2], vec![1, 3], vec![4]]),
    ];
    for (case, devices, max, want) in table {
        let mut pending: VecDeque<(usize, DeviceId)> =
            devices.iter().map(|d| dev(d)).enumerate().collect();
        let mut got = Vec::new();
        while !pending.is_empty() {
            let chunk = next_chunk(&mut pending, max, |(_, d)| d);
            got.push(chunk.into_iter().map(|(i, _)| i).collect::<Vec<_>>());
        }
        assert_eq!(got, want, "{case}");
    }
}

#[test]
fn plan_chunk_rules() {
    let now = OffsetDateTime::from_unix_timestamp(100_000).unwrap();
    // Slots used 1000 and 100 seconds ago.
    let window = |old: u32, new: u32| RateWindow {
        recent: vec![
            Slot {
                at: 99_000,
                count: old,
            },
            Slot {
                at: 99_900,
                count: new,
            },
        ]
        .into_iter()
        .filter(|s| s.count > 0)
        .collect(),
        version: 4,
        grants: vec![],
    };
    // (case, window, limit, keys in the chunk, admitted, retry after (when
    // some are refused))
    type Case<'a> = (&'a str, RateWindow, u32, usize, usize, Option<u64>);
    #[rustfmt::skip]
    let table: Vec<Case> = vec![
        ("room for all", window(0, 0), 10, 3, 3, None),
        ("room for some: the first refused waits for the oldest slot", window(8, 0), 10, 3, 2, Some(2_600)),
        ("room for one", window(5, 4), 10, 3, 1, Some(2_600)),
        ("a lowered limit: until enough slots age out", window(2, 8), 5, 1, 0, Some(3_500)),
        ("no room", window(6, 4), 10, 2, 0, Some(2_600)),
        ("limit zero", window(0, 0), 0, 2, 0, Some(3_600)),
    ];
    for (case, window, limit, n, admitted, retry) in table {
        let plan = plan_chunk(&window, now, limit, n);
        assert_eq!(plan.admitted, admitted, "{case}");
        if let Some(r) = retry {
            assert_eq!(plan.retry_after_secs, r, "{case}");
        }
        match &plan.update {
            Some(u) => {
                assert_eq!(u.expected_version, 4, "{case}");
                assert_eq!(
                    u.window.used(now),
                    window.used(now) + admitted as u32,
                    "{case}"
                );
            }
            None => assert_eq!(admitted, 0, "{case}"),
        }
    }
}

#[test]
fn denied_items_rules() {
    let key = |r: &str| BatchKey {
        requested: r.into(),
        selector: KeySelector::Exact(id(A)),
    };
    let keys = vec![
        key("k1"),
        key("k2"),
        key("k3"),
        key("k4"),
        key("k5"),
        key("k6"),
    ];
    let outcomes = vec![
        Some(ItemOutcome::NotFound),
        Some(ItemOutcome::Ambiguous(vec![id(A), id(B)])),
        Some(ItemOutcome::RateLimited {
            retry_after_secs: 5,
        }),
        Some(ItemOutcome::Unavailable),
        Some(ItemOutcome::Internal),
        None,
    ];
    let denied: Vec<(String, &str)> = denied_items(&keys, &outcomes)
        .into_iter()
        .map(|(k, r)| (k, r.as_str()))
        .collect();
    assert_eq!(
        denied,
        vec![
            ("k1".to_owned(), "key_id_not_found"),
            ("k2".to_owned(), "ambiguous_key_id"),
            ("k3".to_owned(), "rate_limited"),
        ]
    );
}
