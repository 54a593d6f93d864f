//! Every AWS call the code makes, recorded at the SDK as it goes on the
//! wire (the serialized request: target and JSON body, each attempt), and
//! mapped to what AWS authorizes it by.

use super::policy::Request;
use super::terraform::{ACCOUNT, REGION, Table};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One request on the wire, under the label of what caused it (a route
/// key such as `POST /v1/recovery-keys/batch`, or a CLI flow).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub label: String,
    /// `X-Amz-Target`, e.g. `DynamoDB_20120810.TransactWriteItems`.
    pub target: String,
    pub body: Value,
}

#[derive(Debug, Default, Clone)]
pub struct Recorder {
    label: Arc<Mutex<String>>,
    calls: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    pub fn label(&self, l: &str) {
        *self.label.lock().unwrap() = l.to_owned();
    }
    pub fn calls(&self) -> Vec<Recorded> {
        self.calls.lock().unwrap().clone()
    }
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "IamRecorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = context.request();
        let target = req
            .headers()
            .get("x-amz-target")
            .unwrap_or("<no target>")
            .to_owned();
        let body = req
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        let label = self.label.lock().unwrap().clone();
        self.calls.lock().unwrap().push(Recorded {
            label,
            target,
            body,
        });
        Ok(())
    }
}

fn table_arn(name: &str) -> String {
    format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}")
}

/// A DynamoDB attribute value as the string IAM compares (`S` or `N`).
fn scalar(v: &Value) -> String {
    v.get("S")
        .or_else(|| v.get("N"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("unsupported key attribute value {v}"))
}

fn leading_keys(ctx: &mut BTreeMap<String, Vec<String>>, values: Vec<String>) {
    if !values.is_empty() {
        ctx.insert("dynamodb:LeadingKeys".into(), values);
    }
}

/// The partition-key value a `Query`'s key condition fixes.
fn query_partition(body: &Value, hash_key: &str) -> Option<String> {
    let expr = body["KeyConditionExpression"].as_str()?;
    let names = &body["ExpressionAttributeNames"];
    expr.split(" AND ")
        .chain(expr.split(" and "))
        .filter_map(|part| {
            let (l, r) = part.split_once('=')?;
            let l = l.trim().trim_start_matches('(');
            let r = r.trim().trim_end_matches(')');
            let name = if l.starts_with('#') {
                names[l].as_str()?.to_owned()
            } else {
                l.to_owned()
            };
            (name == hash_key).then(|| scalar(&body["ExpressionAttributeValues"][r]))
        })
        .next()
}

fn item_request(
    action: &str,
    table: &str,
    key: &Value,
    tables: &BTreeMap<String, Table>,
) -> Request {
    let t = tables
        .get(table)
        .unwrap_or_else(|| panic!("the code calls table {table}, which infra/ does not declare"));
    let mut context = BTreeMap::new();
    leading_keys(&mut context, vec![scalar(&key[&t.hash_key])]);
    Request {
        action: format!("dynamodb:{action}"),
        resource: table_arn(table),
        context,
    }
}

fn dynamodb(op: &str, b: &Value, tables: &BTreeMap<String, Table>) -> Vec<Request> {
    let table = || b["TableName"].as_str().expect("TableName").to_owned();
    match op {
        "GetItem" | "DeleteItem" | "UpdateItem" => {
            vec![item_request(op, &table(), &b["Key"], tables)]
        }
        "PutItem" => vec![item_request(op, &table(), &b["Item"], tables)],
        "Query" | "Scan" => {
            let t = table();
            let info = &tables[&t];
            let (resource, hash) = match b["IndexName"].as_str() {
                Some(i) => (
                    format!("{}/index/{i}", table_arn(&t)),
                    info.index_hash_keys.get(i).unwrap_or_else(|| {
                        panic!("the code queries index {i} of {t}, which infra/ does not declare")
                    }),
                ),
                None => (table_arn(&t), &info.hash_key),
            };
            let mut context = BTreeMap::new();
            if op == "Query" {
                leading_keys(&mut context, query_partition(b, hash).into_iter().collect());
            }
            vec![Request {
                action: format!("dynamodb:{op}"),
                resource,
                context,
            }]
        }
        "BatchGetItem" | "BatchWriteItem" => b["RequestItems"]
            .as_object()
            .expect("RequestItems")
            .iter()
            .map(|(t, spec)| {
                let hash = &tables[t].hash_key;
                let keys: Vec<String> = match op {
                    "BatchGetItem" => spec["Keys"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|k| scalar(&k[hash]))
                        .collect(),
                    _ => spec
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|w| {
                            let k = w["PutRequest"]["Item"]
                                .get(hash)
                                .or_else(|| w["DeleteRequest"]["Key"].get(hash));
                            scalar(k.expect("a put or delete request"))
                        })
                        .collect(),
                };
                let mut context = BTreeMap::new();
                leading_keys(&mut context, keys);
                Request {
                    action: format!("dynamodb:{op}"),
                    resource: table_arn(t),
                    context,
                }
            })
            .collect(),
        // A transaction is authorized item by item, by each item's action.
        "TransactWriteItems" | "TransactGetItems" => b["TransactItems"]
            .as_array()
            .expect("TransactItems")
            .iter()
            .map(|item| {
                let (kind, spec) = item.as_object().unwrap().iter().next().unwrap();
                let action = match kind.as_str() {
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "ConditionCheck" => "ConditionCheckItem",
                    "Get" => "GetItem",
                    other => panic!("transaction item {other}"),
                };
                let t = spec["TableName"].as_str().unwrap();
                let key = if kind == "Put" {
                    &spec["Item"]
                } else {
                    &spec["Key"]
                };
                item_request(action, t, key, tables)
            })
            .collect(),
        "DescribeTable" => vec![Request {
            action: "dynamodb:DescribeTable".into(),
            resource: table_arn(&table()),
            context: BTreeMap::new(),
        }],
        other => panic!("DynamoDB operation {other} is not mapped: extend tests/aws/iam/calls.rs"),
    }
}

/// What AWS authorizes `call` by: one request per call, per table of a
/// batch, per item of a transaction. KMS calls name the one CMK these
/// tests create, which stands for `aws_kms_key.recovery_keys`.
pub fn requests(call: &Recorded, tables: &BTreeMap<String, Table>) -> Vec<Request> {
    let (service, op) = call.target.split_once('.').unwrap_or(("", ""));
    match service {
        "DynamoDB_20120810" => dynamodb(op, &call.body, tables),
        "TrentService" => {
            let mut context = BTreeMap::new();
            if let Some(ec) = call.body["EncryptionContext"].as_object() {
                context.insert(
                    "kms:EncryptionContextKeys".into(),
                    ec.keys().cloned().collect(),
                );
                for (k, v) in ec {
                    context.insert(
                        format!("kms:EncryptionContext:{k}"),
                        vec![v.as_str().unwrap_or_default().to_owned()],
                    );
                }
            }
            vec![Request {
                action: format!("kms:{op}"),
                resource: format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/recovery_keys"),
                context,
            }]
        }
        // The one secret these tests create stands for
        // `aws_secretsmanager_secret.entra_sync`.
        "secretsmanager" => vec![Request {
            action: format!("secretsmanager:{op}"),
            resource: format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:entra_sync"),
            context: BTreeMap::new(),
        }],
        _ => panic!("an AWS call this test cannot map: {}", call.target),
    }
}
