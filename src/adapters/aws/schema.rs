//! DynamoDB table and index definitions: the single source of truth.
//!
//! `portal tables create`, the DynamoDB adapter and the Terraform checks in
//! `tests/infra/terraform.rs` all read these constants, so the deployed tables cannot
//! drift from what the code queries.
//!
//! Every partition key starts with the tenant id, so no key condition can
//! reach another tenant's items. Identifiers are `[A-Za-z0-9._-]`, which makes
//! `#` a safe separator.

/// One attribute of a key schema (always a string here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAttr {
    pub name: &'static str,
}

/// What a global secondary index copies from the base table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    All,
    /// Keys plus exactly these non-key attributes.
    Include(&'static [&'static str]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexDef {
    pub name: &'static str,
    pub hash: &'static str,
    pub range: Option<&'static str>,
    pub projection: Projection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableDef {
    /// Logical name; the deployed name is `<prefix>-<logical>`.
    pub logical: &'static str,
    pub hash: &'static str,
    pub range: Option<&'static str>,
    pub indexes: &'static [IndexDef],
    /// TTL attribute, if the table expires items.
    pub ttl: Option<&'static str>,
}

impl TableDef {
    /// Every attribute that appears in a key of the table or of an index
    /// (these are the `attribute_definitions`, all of type S).
    pub fn key_attributes(&self) -> Vec<&'static str> {
        let mut out = vec![self.hash];
        out.extend(self.range);
        for ix in self.indexes {
            out.push(ix.hash);
            out.extend(ix.range);
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Devices table: tenant items, device items (metadata + sealed keys) and
/// key-pointer items (metadata only, for the key-ID prefix index).
///
/// - tenant: `pk = T#<tenant>`, `sk = TENANT`
/// - device: `pk = D#<tenant>#<device>`, `sk = DEVICE`, `owner_key = <tenant>#<owner>`;
///   the ciphertexts of current keys live in the `sealed` map and the escrow
///   digests in `digests`, which no index projects; `keys` maps key ID to
///   metadata (`disclosed_at`, `superseded_at`, `expires_at` included);
///   `version` counts writes and disclosures; while a key is due for
///   rotation, `rotation_tenant = <tenant>` and `rotation_since`.
/// - key pointer: `pk = D#<tenant>#<device>`, `sk = KEY#<key-id>`,
///   `key_bucket = <tenant>#<first 8 hex digits>`, `key_hex = <32 hex digits>`;
///   a superseded key's pointer also holds its ciphertext (`sealed`) and
///   `expires_at` (unix seconds, the TTL attribute).
pub const DEVICES: TableDef = TableDef {
    logical: "devices",
    hash: "pk",
    range: Some("sk"),
    indexes: &[BY_OWNER, BY_KEY, BY_ROTATION],
    ttl: Some("expires_at"),
};

/// Devices of one owner in one tenant. Projects no ciphertext: the list
/// function is granted this index only, never the base table.
pub const BY_OWNER: IndexDef = IndexDef {
    name: "by_owner",
    hash: "owner_key",
    range: Some("device_id"),
    projection: Projection::Include(&[
        "tenant_id",
        "owner",
        "display_name",
        "os",
        "managed_by",
        "keys",
        "self_service",
        "helpdesk",
    ]),
};

/// Helpdesk lookup by key-ID prefix (at least 8 hex digits, so the first 8
/// select one partition and the rest is a `begins_with` on the sort key).
pub const BY_KEY: IndexDef = IndexDef {
    name: "by_key",
    hash: "key_bucket",
    range: Some("key_hex"),
    projection: Projection::Include(&[
        "tenant_id",
        "key_id",
        "device_id",
        "display_name",
        "owner",
        "volume_type",
        "created_at",
    ]),
};

/// Devices with keys due for rotation (disclosed, not yet superseded), per
/// tenant, oldest disclosure first: a sparse index (only such devices carry
/// `rotation_tenant`). Projects no ciphertext and no digest.
pub const BY_ROTATION: IndexDef = IndexDef {
    name: "by_rotation",
    hash: "rotation_tenant",
    range: Some("rotation_since"),
    projection: Projection::Include(&[
        "tenant_id",
        "device_id",
        "owner",
        "display_name",
        "os",
        "managed_by",
        "keys",
    ]),
};

/// Audit events, append-only. `pk = <tenant>#<actor>#<request-id>#<event-id>`:
/// every attempt is an item of its own (a retried request id adds an event
/// per attempt), written with `attribute_not_exists(pk)`, and two callers can
/// never collide.
pub const AUDIT: TableDef = TableDef {
    logical: "audit",
    hash: "pk",
    range: None,
    indexes: &[AUDIT_BY_TIME, AUDIT_BY_DEVICE, AUDIT_BY_ACTOR],
    ttl: None,
};

/// Number of write shards per tenant in `by_time`: spreads an outage's burst
/// of audit writes over several index partitions; readers merge the shards.
pub const AUDIT_TIME_SHARDS: u32 = 8;

/// Newest-first per tenant: `tshard = <tenant>#<0..AUDIT_TIME_SHARDS>`,
/// `ts = <RFC 3339 UTC, microseconds>#<event id>`.
pub const AUDIT_BY_TIME: IndexDef = IndexDef {
    name: "by_time",
    hash: "tshard",
    range: Some("ts"),
    projection: Projection::All,
};

/// `device_key = <tenant>#<device>`.
pub const AUDIT_BY_DEVICE: IndexDef = IndexDef {
    name: "by_device",
    hash: "device_key",
    range: Some("ts"),
    projection: Projection::All,
};

/// `actor_key = <tenant>#<actor>`.
pub const AUDIT_BY_ACTOR: IndexDef = IndexDef {
    name: "by_actor",
    hash: "actor_key",
    range: Some("ts"),
    projection: Projection::All,
};

/// Per-caller disclosure windows: `pk = <tenant>#<actor>`, attributes
/// `recent` (list of unix seconds), `version` (number), `grants` (the granted
/// requests of the last 5 minutes, for replays) and `expires_at` (TTL).
/// Also each caller's denied-event count per clock hour:
/// `pk = <tenant>#<actor>#denied#<unix hour>`, `denied` (number), `marked`
/// (the cap marker is written) and `expires_at`.
pub const RATE_LIMITS: TableDef = TableDef {
    logical: "rate_limits",
    hash: "pk",
    range: None,
    indexes: &[],
    ttl: Some("expires_at"),
};

pub const ALL_TABLES: [TableDef; 3] = [DEVICES, AUDIT, RATE_LIMITS];

/// Names of the KMS encryption-context keys bound to every sealed key.
pub const KMS_CONTEXT_KEYS: [&str; 3] = ["tenant_id", "device_id", "key_id"];

/// Deployed table name for a prefix, e.g. `recovery-portal-devices`.
pub fn table_name(prefix: &str, table: &TableDef) -> String {
    format!("{prefix}-{}", table.logical)
}
