//! The component schemas: a registry the generator fills from the types
//! (`ToSchema`), and the hand-written schemas of the types whose shape is
//! a parser's rule rather than a struct (IDs, enums read by `parse`, the
//! RFC 3339 strings), taking their facts from the parsers' constants.

use crate::domain::audit::{Action, Outcome};
use crate::domain::ids::{self, DeviceId, KeyId, TenantId, UserId};
use crate::domain::incidents::IncidentId;
use crate::domain::model::{IncidentState, ManagedBy, RequireReason, VolumeType};
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::{RefOr, schema::SchemaType};
use utoipa::{PartialSchema, ToSchema};

/// `components/schemas`, by name.
#[derive(Default)]
pub(crate) struct Schemas(pub Map<String, Value>);

impl Schemas {
    /// Registers `T` (and the schemas it refers to) and answers a `$ref` to it.
    pub fn add<T: ToSchema>(&mut self) -> Value {
        let mut nested = Vec::new();
        T::schemas(&mut nested);
        for (name, schema) in nested {
            self.insert(&name, &schema);
        }
        let name = T::name();
        self.insert(&name, &T::schema());
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    pub fn insert(&mut self, name: &str, schema: &RefOr<Schema>) {
        let mut v = serde_json::to_value(schema).unwrap_or_default();
        tidy(&mut v);
        self.0.insert(name.to_owned(), v);
    }
}

/// `T`'s schema as a `$ref`, registering it (a `SchemaFn`).
pub(crate) fn of<T: ToSchema>(s: &mut Schemas) -> Value {
    s.add::<T>()
}

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .description(Some(description))
}

/// A string enum from the values its parser accepts.
fn string_enum<'a>(values: impl IntoIterator<Item = &'a str>, description: &str) -> Object {
    string(description).enum_values(Some(values)).build()
}

macro_rules! schema {
    ($ty:ty, $name:literal, $schema:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                Schema::Object($schema).into()
            }
        }
        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

/// An opaque ID's pattern, from the length its parser allows.
fn opaque(description: &str, example: &str) -> Object {
    let len = ids::OPAQUE_LEN;
    string(description)
        .pattern(Some(format!(
            "^[A-Za-z0-9._-]{{{},{}}}$",
            len.start(),
            len.end()
        )))
        .examples([example])
        .build()
}

fn opaque_rule() -> String {
    let len = ids::OPAQUE_LEN;
    format!(
        "{}–{} characters of `A-Z a-z 0-9 . _ -`",
        len.start(),
        len.end()
    )
}

schema!(
    TenantId,
    "TenantId",
    opaque(
        &format!(
            "A tenant: {} (an Entra tenant GUID, an Okta org name, ...).",
            opaque_rule()
        ),
        "contoso"
    )
);
schema!(
    DeviceId,
    "DeviceId",
    opaque(
        &format!("A device as the MDM names it: {}.", opaque_rule()),
        "DESKTOP-7Q2M4K1"
    )
);
schema!(
    UserId,
    "UserId",
    opaque(
        &format!(
            "A user, matched against the token's `oid` (else `sub`): {}.",
            opaque_rule()
        ),
        "alice"
    )
);
schema!(
    KeyId,
    "KeyId",
    string(
        "A BitLocker key protector ID, printed as an upper-case GUID as on the recovery screen."
    )
    .pattern(Some(
        "^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$"
    ))
    .examples(["3B8FAA18-37F8-488B-97FC-695A07A0CA6E"])
    .build()
);
schema!(
    IncidentId,
    "IncidentId",
    string("An incident ID (a UUID).")
        .format(Some(utoipa::openapi::SchemaFormat::Custom("uuid".into())))
        .build()
);
schema!(
    VolumeType,
    "VolumeType",
    string_enum(
        VolumeType::ALL.map(VolumeType::as_str),
        "What kind of volume a key unlocks."
    )
);
schema!(
    ManagedBy,
    "ManagedBy",
    string_enum(
        ManagedBy::ALL.map(ManagedBy::as_str),
        "`organization`: the organisation encrypted the device and escrows its keys. `user`: personally encrypted; no key is held for it."
    )
);
schema!(
    RequireReason,
    "RequireReason",
    string_enum(
        RequireReason::ALL.map(RequireReason::as_str),
        "When a key retrieval must carry a `reason`: never, on helpdesk grounds (`RecoveryKey.Read.All`) only, or always. A retrieval without one is a 400."
    )
);

/// An RFC 3339 time as the API prints it (`views::rfc3339`).
pub(crate) struct Timestamp;
schema!(
    Timestamp,
    "Timestamp",
    string("RFC 3339, UTC.")
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::DateTime
        )))
        .examples(["2025-01-20T08:00:00Z"])
        .build()
);

/// An audit event's `action` (inline in `AuditEvent`).
pub(crate) fn action() -> RefOr<Schema> {
    {
        Schema::Object(string_enum(
            Action::ALL.map(Action::as_str),
            "`disclose`: a key retrieval; `escrow`, `device_upsert`, `device_retire`, `settings_change`: the write routes; `keys_verify`: `portal keys verify`. `incident_open`, `incident_close`: incident mode.",
        ))
        .into()
    }
}

/// An audit event's `outcome` (inline in `AuditEvent`).
pub(crate) fn outcome() -> RefOr<Schema> {
    {
        Schema::Object(string_enum(
            Outcome::ALL.map(Outcome::as_str),
            "`granted`/`denied` for an attempt; `changed` for an administrative change (an import that moved a device to another owner).",
        ))
        .into()
    }
}

/// An incident's `status` (inline in `Incident`).
pub(crate) fn incident_state() -> RefOr<Schema> {
    {
        Schema::Object(string_enum(
            IncidentState::ALL.map(IncidentState::as_str),
            "`open` until `expires_at` or until closed.",
        ))
        .into()
    }
}

/// A permission as the table names them (`Permission::names`), in the
/// order the routes first name them.
pub(crate) struct PermissionName;
impl PartialSchema for PermissionName {
    fn schema() -> RefOr<Schema> {
        let mut names: Vec<&str> = Vec::new();
        for r in crate::api::ROUTES {
            for n in r.permission.names() {
                if !names.contains(n) {
                    names.push(n);
                }
            }
        }
        Schema::Object(string_enum(
            names,
            "A permission, read from the token's `scp`, `scope` and `roles` claims and matched exactly.",
        ))
        .into()
    }
}
impl ToSchema for PermissionName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Permission")
    }
}

// Where a user gets help (`Helpdesk::check` holds the rules).
impl PartialSchema for crate::domain::model::Helpdesk {
    fn schema() -> RefOr<Schema> {
        let field = || {
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::String))
                .min_length(Some(1))
                .max_length(Some(crate::domain::model::Helpdesk::MAX_CHARS))
        };
        let mut o = ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Object))
            .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)))
            .description(Some("Where a user gets help when no key can be shown. Every field is optional. Every field is plain text without control, format (bidi, zero-width, soft hyphen) or line-separator characters; `url` is an `https://` URL and `email` one plain address (no `mailto:`, no `?` or `,` parts)."));
        for name in ["name", "email", "phone", "url"] {
            o = o.property(name, field());
        }
        Schema::Object(o.build()).into()
    }
}
impl ToSchema for crate::domain::model::Helpdesk {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Helpdesk")
    }
}

/// A UUID string (an audit event's `event_id`).
pub(crate) fn uuid() -> RefOr<Schema> {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .format(Some(utoipa::openapi::SchemaFormat::Custom("uuid".into())))
            .build(),
    )
    .into()
}

/// What utoipa writes differently from the document's conventions: doc
/// comments' line breaks become spaces, a nullable `$ref`'s description
/// moves up to the property, `example` becomes the 3.1 `examples`, and
/// Rust's integer widths (`format: int32`, `minimum: 0`) are left out:
/// the bounds that matter are written on the fields.
fn tidy(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(e) = m.remove("example") {
                m.insert("examples".into(), Value::Array(vec![e]));
            }
            if matches!(
                m.get("format").and_then(Value::as_str),
                Some("int32" | "int64")
            ) {
                m.remove("format");
                if m.get("minimum") == Some(&Value::from(0)) {
                    m.remove("minimum");
                }
            }
            let hoisted = m
                .get_mut("oneOf")
                .and_then(Value::as_array_mut)
                .and_then(|items| {
                    items
                        .iter_mut()
                        .filter_map(Value::as_object_mut)
                        .filter(|i| i.contains_key("$ref"))
                        .find_map(|i| i.remove("description"))
                });
            if let Some(d) = hoisted {
                m.insert("description".into(), d);
            }
            if let Some(Value::String(d)) = m.get_mut("description") {
                *d = d
                    .replace("\n\n", "\u{0}")
                    .replace('\n', " ")
                    .replace('\u{0}', "\n\n");
            }
            m.values_mut().for_each(tidy);
        }
        Value::Array(a) => a.iter_mut().for_each(tidy),
        _ => {}
    }
}
