//! Audit items.

use super::*;

/// The audit item: the event's fields plus its key and index attributes.
pub fn audit_item(e: &AuditEvent) -> Item {
    let pk = audit_pk(&e.tenant_id, &e.actor, &e.request_id, &e.event_id);
    let shard = audit_shard(&pk);
    let mut item = Item::from([
        ("tshard".to_owned(), s(tshard(&e.tenant_id, shard))),
        ("ts".to_owned(), s(Position::of(e).key())),
        ("actor_key".to_owned(), s(actor_key(&e.tenant_id, &e.actor))),
        ("event_id".to_owned(), s(e.event_id.as_str())),
        ("time".to_owned(), s(ts(e.time))),
        ("tenant_id".to_owned(), s(e.tenant_id.as_str())),
        ("actor".to_owned(), s(e.actor.as_str())),
        ("action".to_owned(), s(e.action.as_str())),
        ("outcome".to_owned(), s(e.outcome.as_str())),
        ("reason".to_owned(), s(e.reason.as_str())),
        ("request_id".to_owned(), s(e.request_id.as_str())),
        ("pk".to_owned(), s(pk)),
    ]);
    if let Some(d) = &e.device_id {
        item.insert("device_id".into(), s(d.as_str()));
        item.insert("device_key".into(), s(device_key(&e.tenant_id, d)));
    }
    for (k, v) in [
        ("key_id", e.key_id.map(|k| k.to_string())),
        ("justification", e.justification.clone()),
        ("source_ip", e.source_ip.clone()),
        ("user_agent", e.user_agent.clone()),
    ] {
        if let Some(v) = v {
            item.insert(k.into(), s(v));
        }
    }
    item
}

pub fn parse_audit_event(item: &Item) -> Result<AuditEvent, ItemError> {
    let r = Reader {
        item,
        kind: "audit",
    };
    Ok(AuditEvent {
        // Events written before there were other actions are disclosures.
        action: r
            .opt_parse("action", Action::parse)?
            .unwrap_or(Action::Disclose),
        event_id: r.s("event_id")?.to_owned(),
        time: r.time("time")?,
        tenant_id: r.parse("tenant_id", |v| TenantId::parse(v).ok())?,
        actor: r.parse("actor", |v| UserId::parse_actor(v).ok())?,
        device_id: r.opt_parse("device_id", |v| DeviceId::parse(v).ok())?,
        key_id: r.opt_parse("key_id", |v| KeyId::parse(v).ok())?,
        outcome: r.parse("outcome", Outcome::parse)?,
        reason: r.s("reason")?.to_owned(),
        justification: r.opt_s("justification")?.map(str::to_owned),
        source_ip: r.opt_s("source_ip")?.map(str::to_owned),
        user_agent: r.opt_s("user_agent")?.map(str::to_owned),
        request_id: r.s("request_id")?.to_owned(),
    })
}
