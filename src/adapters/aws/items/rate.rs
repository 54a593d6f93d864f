//! Rate-limit items: a caller's window of grants and slots.

use super::*;

/// The `grants` attribute of a rate-limit item: a list of maps.
pub fn grants_value(grants: &[Grant]) -> AttributeValue {
    AttributeValue::L(
        grants
            .iter()
            .map(|g| {
                AttributeValue::M(Item::from([
                    ("rid".to_owned(), s(g.request_id.as_str())),
                    ("at".to_owned(), AttributeValue::N(g.at.to_string())),
                    ("dev".to_owned(), s(g.device_id.as_str())),
                    ("key".to_owned(), s(g.key_id.to_string())),
                    ("dig".to_owned(), s(g.digest.as_str())),
                ]))
            })
            .collect(),
    )
}

pub(super) fn parse_grant(v: &AttributeValue) -> Result<Grant, ItemError> {
    let AttributeValue::M(m) = v else {
        return Err(ItemError {
            kind: "rate limit",
            attr: "grants",
        });
    };
    let r = Reader {
        item: m,
        kind: "rate limit grant",
    };
    Ok(Grant {
        request_id: r.s("rid")?.to_owned(),
        at: r.n("at")?.ok_or_else(|| r.err("at"))?,
        device_id: r.parse("dev", |v| DeviceId::parse(v).ok())?,
        key_id: r.parse("key", |v| KeyId::parse(v).ok())?,
        digest: r.s("dig")?.to_owned(),
    })
}

/// The `recent` and `counts` attributes of a rate-limit item: the slots'
/// times and, in the same order, their counts.
pub fn slots_values(slots: &[Slot]) -> (AttributeValue, AttributeValue) {
    (
        AttributeValue::L(
            slots
                .iter()
                .map(|s| AttributeValue::N(s.at.to_string()))
                .collect(),
        ),
        AttributeValue::L(
            slots
                .iter()
                .map(|s| AttributeValue::N(s.count.to_string()))
                .collect(),
        ),
    )
}

/// A rate-limit item (`recent`, `counts`, `version`, `grants`); no item is an
/// empty window. An item without `counts` (written before slots were
/// merged) counts one disclosure per time.
pub fn parse_rate_window(item: &Item) -> Result<RateWindow, ItemError> {
    let r = Reader {
        item,
        kind: "rate limit",
    };
    let numbers = |attr: &'static str| -> Result<Option<Vec<i64>>, ItemError> {
        let err = || ItemError {
            kind: "rate limit",
            attr,
        };
        if !item.contains_key(attr) {
            return Ok(None);
        }
        r.list(attr)?
            .iter()
            .map(|v| match v {
                AttributeValue::N(n) => n.parse::<i64>().map_err(|_| err()),
                _ => Err(err()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    };
    let times = numbers("recent")?.unwrap_or_default();
    // Without `counts`, or with counts that no longer match the times (a
    // function of the previous release rewrote `recent` during a deploy),
    // each time is one disclosure: what that release itself counts.
    let counts = match numbers("counts")? {
        Some(c) if c.len() == times.len() && c.iter().all(|&n| u32::try_from(n).is_ok()) => c,
        _ => vec![1; times.len()],
    };
    let recent = times
        .into_iter()
        .zip(counts)
        .map(|(at, count)| Slot {
            at,
            count: count as u32,
        })
        .collect();
    Ok(RateWindow {
        recent,
        version: r.n("version")?.unwrap_or(0),
        grants: r
            .list("grants")?
            .iter()
            .map(parse_grant)
            .collect::<Result<_, _>>()?,
    })
}
