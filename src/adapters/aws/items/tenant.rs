//! Tenant items: the policy and settings, and incident records.

use super::*;

pub(super) fn helpdesk_value(h: &Helpdesk) -> AttributeValue {
    let mut m = Item::new();
    for (k, v) in [
        ("name", &h.name),
        ("email", &h.email),
        ("phone", &h.phone),
        ("url", &h.url),
    ] {
        if let Some(v) = v {
            m.insert(k.to_owned(), s(v.as_str()));
        }
    }
    AttributeValue::M(m)
}

pub(super) fn put_policy(item: &mut Item, policy: &TenantPolicy) {
    item.insert(
        "self_service".into(),
        AttributeValue::Bool(policy.self_service),
    );
    if let Some(h) = &policy.helpdesk {
        item.insert("helpdesk".into(), helpdesk_value(h));
    }
    item.insert("require_reason".into(), s(policy.require_reason.as_str()));
    item.insert(
        "superseded_key_retention_days".into(),
        AttributeValue::N(policy.superseded_key_retention_days.to_string()),
    );
    item.insert(
        RETIRED_RETENTION.into(),
        AttributeValue::N(policy.retired_device_retention_days.to_string()),
    );
    for (name, limit) in [
        (SELF_SERVICE_RATE_LIMIT, policy.self_service_rate_limit),
        (HELPDESK_RATE_LIMIT, policy.helpdesk_rate_limit),
    ] {
        if let Some(l) = limit {
            item.insert(name.into(), AttributeValue::N(l.to_string()));
        }
    }
}

/// How long a retired device stays restorable (absent: the default).
pub const RETIRED_RETENTION: &str = "retired_device_retention_days";
/// Optional settings: a settings write removes them when unset.
pub const SELF_SERVICE_RATE_LIMIT: &str = "self_service_rate_limit";
pub const HELPDESK_RATE_LIMIT: &str = "helpdesk_rate_limit";
/// The tenant item's summary of its latest incident (a map); written only
/// with the incident's own record.
pub const INCIDENT: &str = "incident";

/// The `incident` map of a tenant item.
pub fn open_incident_value(i: &OpenIncident) -> AttributeValue {
    let mut m = Item::from([
        ("id".to_owned(), s(i.incident_id.as_str())),
        ("expires_at".to_owned(), s(ts(i.expires_at))),
        (
            "helpdesk_rate_limit".to_owned(),
            AttributeValue::N(i.helpdesk_rate_limit.to_string()),
        ),
    ]);
    if let Some(by) = &i.opened_by {
        m.insert("opened_by".to_owned(), s(by.as_str()));
    }
    AttributeValue::M(m)
}

pub(super) fn parse_open_incident(m: &Item) -> Result<OpenIncident, ItemError> {
    let r = Reader {
        item: m,
        kind: "tenant incident",
    };
    let bad = |attr| ItemError {
        kind: "tenant incident",
        attr,
    };
    Ok(OpenIncident {
        incident_id: IncidentId::parse(r.s("id")?).map_err(|_| bad("id"))?,
        expires_at: r.time("expires_at")?,
        helpdesk_rate_limit: r
            .n::<u32>("helpdesk_rate_limit")?
            .ok_or(bad("helpdesk_rate_limit"))?,
        opened_by: r
            .opt_s("opened_by")?
            .map(|u| UserId::parse_actor(u).map_err(|_| bad("opened_by")))
            .transpose()?,
    })
}

/// `pk = T#<tenant>`, `sk = INCIDENT#<id>`.
pub fn incident_sk(id: &IncidentId) -> String {
    format!("{INCIDENT_SK_PREFIX}{id}")
}

pub const INCIDENT_SK_PREFIX: &str = "INCIDENT#";

/// An incident's own record.
pub fn incident_item(i: &Incident) -> Item {
    let mut item = Item::from([
        ("pk".to_owned(), s(tenant_pk(&i.tenant))),
        ("sk".to_owned(), s(incident_sk(&i.incident_id))),
        ("incident_id".to_owned(), s(i.incident_id.as_str())),
        ("tenant_id".to_owned(), s(i.tenant.as_str())),
        ("opened_by".to_owned(), s(i.opened_by.as_str())),
        ("opened_at".to_owned(), s(ts(i.opened_at))),
        ("expires_at".to_owned(), s(ts(i.expires_at))),
        ("reason".to_owned(), s(i.reason.as_str())),
        (
            "helpdesk_rate_limit".to_owned(),
            AttributeValue::N(i.helpdesk_rate_limit.to_string()),
        ),
    ]);
    if let Some(c) = i.closed_at {
        item.insert("closed_at".to_owned(), s(ts(c)));
    }
    item
}

pub fn parse_incident(item: &Item) -> Result<Incident, ItemError> {
    let kind = "incident";
    let r = Reader { item, kind };
    let bad = |attr| ItemError { kind, attr };
    Ok(Incident {
        incident_id: IncidentId::parse(r.s("incident_id")?).map_err(|_| bad("incident_id"))?,
        tenant: TenantId::parse(r.s("tenant_id")?).map_err(|_| bad("tenant_id"))?,
        opened_by: UserId::parse_actor(r.s("opened_by")?).map_err(|_| bad("opened_by"))?,
        opened_at: r.time("opened_at")?,
        expires_at: r.time("expires_at")?,
        closed_at: r.opt_time("closed_at")?,
        reason: r.s("reason")?.to_owned(),
        helpdesk_rate_limit: r
            .n::<u32>("helpdesk_rate_limit")?
            .ok_or(bad("helpdesk_rate_limit"))?,
    })
}

/// The tenant policy of a tenant item (no `self_service`: off).
pub fn parse_policy(item: &Item, kind: &'static str) -> Result<TenantPolicy, ItemError> {
    let r = Reader { item, kind };
    let helpdesk = match r.opt_map("helpdesk")? {
        None => None,
        Some(m) => {
            let h = Reader {
                item: m,
                kind: "helpdesk",
            };
            Some(Helpdesk {
                name: h.opt_s("name")?.map(str::to_owned),
                email: h.opt_s("email")?.map(str::to_owned),
                phone: h.opt_s("phone")?.map(str::to_owned),
                url: h.opt_s("url")?.map(str::to_owned),
            })
        }
    };
    let defaults = TenantPolicy::default();
    Ok(TenantPolicy {
        self_service: r.bool_or("self_service", defaults.self_service)?,
        helpdesk,
        require_reason: r
            .opt_parse("require_reason", RequireReason::parse)?
            .unwrap_or(defaults.require_reason),
        superseded_key_retention_days: r
            .n::<u16>("superseded_key_retention_days")?
            .filter(|d| TenantPolicy::RETENTION_DAYS.contains(d))
            .unwrap_or(defaults.superseded_key_retention_days),
        retired_device_retention_days: r
            .n::<u16>(RETIRED_RETENTION)?
            .filter(|d| TenantPolicy::RETENTION_DAYS.contains(d))
            .unwrap_or(defaults.retired_device_retention_days),
        self_service_rate_limit: r
            .n::<u32>(SELF_SERVICE_RATE_LIMIT)?
            .filter(|l| TenantPolicy::RATE_LIMITS.contains(l)),
        helpdesk_rate_limit: r
            .n::<u32>(HELPDESK_RATE_LIMIT)?
            .filter(|l| TenantPolicy::RATE_LIMITS.contains(l)),
        incident: r.opt_map(INCIDENT)?.map(parse_open_incident).transpose()?,
    })
}

/// `pk = T#<tenant>`, `sk = TENANT`, the policy.
pub fn tenant_item(t: &Tenant) -> Item {
    let mut item = Item::from([
        ("pk".to_owned(), s(tenant_pk(&t.id))),
        ("sk".to_owned(), s(TENANT_SK)),
        ("tenant_id".to_owned(), s(t.id.as_str())),
    ]);
    put_policy(&mut item, &t.policy);
    item
}
