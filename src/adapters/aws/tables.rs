//! `portal tables create`: the three tables of `schema.rs`, on demand
//! capacity, with their indexes and TTL. Idempotent: an existing table is
//! checked against the schema and left as it is.
//!
//! Production tables come from Terraform (infra/dynamodb.tf, which adds
//! point-in-time recovery, deletion protection and a customer managed key);
//! this is for development, tests and quick trials.

use super::describe_sdk_error;
use super::schema::{ALL_TABLES, IndexDef, Projection, TableDef, table_name};
use crate::domain::error::{Cause, Unavailable};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{BuildError, SdkError};
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType,
    Projection as DdbProjection, ProjectionType, ScalarAttributeType, TableDescription,
    TableStatus as DdbTableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use std::time::{Duration, Instant};

/// How long to wait for a new table and its indexes to become active.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What `create_tables` did with one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableStatus {
    Created,
    /// It existed already with the expected keys and indexes.
    AlreadyExisted,
    /// It existed with the expected keys; indexes the schema has gained
    /// since were added.
    Upgraded,
}

fn err(detail: impl std::fmt::Display) -> Unavailable {
    Unavailable::new(Cause::DynamoDb, detail)
}

fn build_error(e: BuildError) -> Unavailable {
    err(format!("invalid request: {e}"))
}

fn key_schema(hash: &str, range: Option<&str>) -> Result<Vec<KeySchemaElement>, Unavailable> {
    let mut out = vec![
        KeySchemaElement::builder()
            .attribute_name(hash)
            .key_type(KeyType::Hash)
            .build()
            .map_err(build_error)?,
    ];
    if let Some(r) = range {
        out.push(
            KeySchemaElement::builder()
                .attribute_name(r)
                .key_type(KeyType::Range)
                .build()
                .map_err(build_error)?,
        );
    }
    Ok(out)
}

fn projection(p: Projection) -> DdbProjection {
    match p {
        Projection::All => DdbProjection::builder()
            .projection_type(ProjectionType::All)
            .build(),
        Projection::Include(attrs) => DdbProjection::builder()
            .projection_type(ProjectionType::Include)
            .set_non_key_attributes(Some(attrs.iter().map(|a| (*a).to_owned()).collect()))
            .build(),
    }
}

fn gsi(ix: &IndexDef) -> Result<GlobalSecondaryIndex, Unavailable> {
    GlobalSecondaryIndex::builder()
        .index_name(ix.name)
        .set_key_schema(Some(key_schema(ix.hash, ix.range)?))
        .projection(projection(ix.projection))
        .build()
        .map_err(build_error)
}

async fn create_one(client: &Client, name: &str, def: &TableDef) -> Result<bool, Unavailable> {
    let attrs = def
        .key_attributes()
        .into_iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(a)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_error)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let gsis = def.indexes.iter().map(gsi).collect::<Result<Vec<_>, _>>()?;
    let result = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(attrs))
        .set_key_schema(Some(key_schema(def.hash, def.range)?))
        .set_global_secondary_indexes((!gsis.is_empty()).then_some(gsis))
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(se))
            if matches!(se.err(), CreateTableError::ResourceInUseException(_)) =>
        {
            Ok(false)
        }
        Err(e) => Err(err(format!(
            "CreateTable {name}: {}",
            describe_sdk_error(&e)
        ))),
    }
}

fn string_attribute(name: &str) -> Result<AttributeDefinition, Unavailable> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(build_error)
}

/// Waits until the table and all its indexes are ACTIVE.
async fn wait_active(client: &Client, name: &str) -> Result<TableDescription, Unavailable> {
    let deadline = Instant::now() + ACTIVE_TIMEOUT;
    loop {
        let d = describe(client, name).await?;
        if is_active(&d) {
            return Ok(d);
        }
        if Instant::now() > deadline {
            return Err(err(format!(
                "table {name} did not become ACTIVE within {} s",
                ACTIVE_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Adds the indexes of the schema an existing table lacks (one per
/// `UpdateTable`, as DynamoDB requires), e.g. `by_rotation` on a devices
/// table created before the key lifecycle. Whether any was added.
async fn add_missing_indexes(
    client: &Client,
    name: &str,
    def: &TableDef,
    desc: &TableDescription,
) -> Result<bool, Unavailable> {
    let mut added = false;
    for ix in def.indexes {
        let present = desc
            .global_secondary_indexes()
            .iter()
            .any(|g| g.index_name() == Some(ix.name));
        if present {
            continue;
        }
        let attrs = std::iter::once(ix.hash)
            .chain(ix.range)
            .map(string_attribute)
            .collect::<Result<Vec<_>, _>>()?;
        let create = CreateGlobalSecondaryIndexAction::builder()
            .index_name(ix.name)
            .set_key_schema(Some(key_schema(ix.hash, ix.range)?))
            .projection(projection(ix.projection))
            .build()
            .map_err(build_error)?;
        client
            .update_table()
            .table_name(name)
            .set_attribute_definitions(Some(attrs))
            .global_secondary_index_updates(
                GlobalSecondaryIndexUpdate::builder().create(create).build(),
            )
            .send()
            .await
            .map_err(|e| {
                err(format!(
                    "UpdateTable {name} (add index {}): {}",
                    ix.name,
                    describe_sdk_error(&e)
                ))
            })?;
        wait_active(client, name).await?;
        added = true;
    }
    Ok(added)
}

async fn describe(client: &Client, name: &str) -> Result<TableDescription, Unavailable> {
    client
        .describe_table()
        .table_name(name)
        .send()
        .await
        .map_err(|e| err(format!("DescribeTable {name}: {}", describe_sdk_error(&e))))?
        .table
        .ok_or_else(|| err(format!("DescribeTable {name}: no description")))
}

fn is_active(t: &TableDescription) -> bool {
    t.table_status() == Some(&DdbTableStatus::Active)
        && t.global_secondary_indexes()
            .iter()
            .all(|i| i.index_status() == Some(&IndexStatus::Active))
}

fn keys(ks: &[KeySchemaElement]) -> (Option<String>, Option<String>) {
    let find = |kt: KeyType| {
        ks.iter()
            .find(|k| k.key_type() == &kt)
            .map(|k| k.attribute_name().to_owned())
    };
    (find(KeyType::Hash), find(KeyType::Range))
}

fn want(h: &str, r: Option<&str>) -> (Option<String>, Option<String>) {
    (Some(h.to_owned()), r.map(str::to_owned))
}

/// The table's own key schema is the definition's.
fn check_keys(name: &str, def: &TableDef, t: &TableDescription) -> Result<(), Unavailable> {
    if keys(t.key_schema()) != want(def.hash, def.range) {
        return Err(err(format!(
            "table {name} exists with another key schema than src/adapters/aws/schema.rs defines"
        )));
    }
    Ok(())
}

/// The differences between a table and its definition, if any.
fn check_schema(name: &str, def: &TableDef, t: &TableDescription) -> Result<(), Unavailable> {
    check_keys(name, def, t)?;
    for ix in def.indexes {
        let found = t
            .global_secondary_indexes()
            .iter()
            .find(|g| g.index_name() == Some(ix.name));
        match found {
            Some(g) if keys(g.key_schema()) == want(ix.hash, ix.range) => {}
            Some(_) => {
                return Err(err(format!(
                    "table {name}: index {} has another key schema than src/adapters/aws/schema.rs defines",
                    ix.name
                )));
            }
            None => {
                return Err(err(format!(
                    "table {name} exists without the index {} (src/adapters/aws/schema.rs)",
                    ix.name
                )));
            }
        }
    }
    Ok(())
}

async fn ensure_ttl(client: &Client, name: &str, attr: &str) -> Result<(), Unavailable> {
    let current = client
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(|e| {
            err(format!(
                "DescribeTimeToLive {name}: {}",
                describe_sdk_error(&e)
            ))
        })?;
    if let Some(d) = current.time_to_live_description() {
        let on = matches!(
            d.time_to_live_status(),
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        );
        if on {
            return if d.attribute_name() == Some(attr) {
                Ok(())
            } else {
                Err(err(format!(
                    "table {name} expires items by another attribute than {attr}"
                )))
            };
        }
    }
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(attr)
                .build()
                .map_err(build_error)?,
        )
        .send()
        .await
        .map_err(|e| {
            err(format!(
                "UpdateTimeToLive {name}: {}",
                describe_sdk_error(&e)
            ))
        })?;
    Ok(())
}

/// Creates `<prefix>-devices`, `<prefix>-audit` and `<prefix>-rate_limits`
/// (PAY_PER_REQUEST, indexes and TTL from `schema.rs`) and waits until they
/// are ACTIVE. Existing tables are fine if their keys and indexes match the
/// schema; otherwise an error names the difference.
pub async fn create_tables(
    client: &Client,
    prefix: &str,
) -> Result<Vec<(String, TableStatus)>, Unavailable> {
    let mut out = Vec::new();
    for def in &ALL_TABLES {
        let name = table_name(prefix, def);
        let created = create_one(client, &name, def).await?;
        let mut desc = wait_active(client, &name).await?;
        // Indexes added to the schema since the table was made; the table's
        // own keys are checked first (a table of another layout is refused).
        let upgraded = !created
            && check_keys(&name, def, &desc).is_ok()
            && add_missing_indexes(client, &name, def, &desc).await?;
        if upgraded {
            desc = wait_active(client, &name).await?;
        }
        check_schema(&name, def, &desc)?;
        if let Some(attr) = def.ttl {
            ensure_ttl(client, &name, attr).await?;
        }
        out.push((
            name,
            if created {
                TableStatus::Created
            } else if upgraded {
                TableStatus::Upgraded
            } else {
                TableStatus::AlreadyExisted
            },
        ));
    }
    Ok(out)
}
