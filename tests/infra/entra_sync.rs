//! The scheduled Entra sync in `infra/entra_sync.tf`: off by default, its
//! secret readable by its function only, a role that seals and never
//! decrypts, its schedule, its two alarms, and its package. (What its role
//! allows against the calls the code makes is tests/aws/iam.)

use hcl::{Block, Body, Expression};
use std::path::Path;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn file(name: &str) -> Body {
    let text = std::fs::read_to_string(repo().join("infra").join(name)).unwrap();
    hcl::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn label(b: &Block, i: usize) -> &str {
    b.labels().get(i).map(|l| l.as_str()).unwrap_or_default()
}

fn block<'a>(body: &'a Body, kind: &str, ty: &str, name: &str) -> &'a Body {
    body.blocks()
        .find(|b| b.identifier() == kind && label(b, 0) == ty && label(b, 1) == name)
        .map(Block::body)
        .unwrap_or_else(|| panic!("entra_sync.tf has no {kind} {ty}.{name}"))
}

/// An attribute as normalized text (`"x"` for a string literal's value).
fn attr(body: &Body, key: &str) -> String {
    body.attributes()
        .find(|a| a.key() == key)
        .map(|a| match a.expr() {
            Expression::String(s) => s.clone(),
            e => e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .replace("[ ", "[")
                .replace(" ]", "]"),
        })
        .unwrap_or_default()
}

fn statements(body: &Body) -> Vec<&Body> {
    body.blocks()
        .filter(|b| b.identifier() == "statement")
        .map(Block::body)
        .collect()
}

fn sub<'a>(body: &'a Body, kind: &str) -> Vec<&'a Body> {
    body.blocks()
        .filter(|b| b.identifier() == kind)
        .map(Block::body)
        .collect()
}

#[test]
fn everything_is_off_unless_var_entra_sync_is_set() {
    let vars = file("variables.tf");
    let v = vars
        .blocks()
        .find(|b| b.identifier() == "variable" && label(b, 0) == "entra_sync")
        .expect("variable entra_sync in variables.tf")
        .body();
    assert_eq!(attr(v, "default"), "null");
    assert!(attr(v, "type").contains("schedule = optional(string, \"rate(1 hour)\")"));
    let tf = file("entra_sync.tf");
    let mut n = 0;
    for b in tf
        .blocks()
        .filter(|b| ["resource", "data"].contains(&b.identifier()))
    {
        n += 1;
        let count = attr(b.body(), "count");
        assert!(
            count == "local.entra_sync_count" || count.starts_with("local.entra_sync_enabled &&"),
            "{} {}.{}: count = {count:?}",
            b.identifier(),
            label(b, 0),
            label(b, 1)
        );
    }
    assert!(n >= 15, "{n} blocks");
}

/// The blocks of entra_sync.tf and iam.tf as written (the mutations edit
/// them).
fn sync_files() -> Vec<Block> {
    ["entra_sync.tf", "iam.tf"]
        .iter()
        .flat_map(|f| file(f).into_blocks())
        .collect()
}

/// The policy documents of entra_sync.tf and iam.tf with every `for_each`
/// expanded: the sync's grants are one document per principal
/// (`entra_sync["cli"]`, `entra_sync["function"]`).
fn sync_policies() -> Vec<Block> {
    crate::tfeval::expand(&sync_files())
        .into_iter()
        .filter(|b| b.identifier() == "data")
        .collect()
}

/// The scheduled function's role: its own document (logs, secret) and the
/// sync's grants for its tenant.
const ROLE_DOCUMENTS: [&str; 2] = ["entra_sync_function", "entra_sync[\"function\"]"];

#[test]
fn the_role_seals_reads_its_secret_and_never_decrypts() {
    let tf = file("entra_sync.tf");
    let role_policies: Vec<String> = tf
        .blocks()
        .filter(|b| label(b, 0) == "aws_iam_role_policy")
        .filter(|b| attr(b.body(), "role") == "aws_iam_role.entra_sync[0].id")
        .map(|b| attr(b.body(), "policy"))
        .collect();
    assert_eq!(
        role_policies,
        [
            "data.aws_iam_policy_document.entra_sync_function[0].json",
            "data.aws_iam_policy_document.entra_sync[\"function\"].json"
        ]
    );
    let policies = sync_policies();
    let docs = ROLE_DOCUMENTS.map(|name| {
        policies
            .iter()
            .find(|b| label(b, 0) == "aws_iam_policy_document" && label(b, 1) == name)
            .unwrap_or_else(|| panic!("no policy document {name}"))
            .body()
    });
    let mut kms = Vec::new();
    for s in docs.iter().flat_map(|d| statements(d)) {
        let actions = attr(s, "actions");
        let resources = attr(s, "resources");
        assert_ne!(attr(s, "effect"), "Deny");
        for banned in ["Decrypt", "kms:*", "\"*\"", "Scan", "Delete", "ReEncrypt"] {
            assert!(!actions.contains(banned), "{actions}");
        }
        if actions.contains("dynamodb:Query") {
            // Only its own audit events, by the by_actor partition.
            assert_eq!(
                resources,
                "[\"${aws_dynamodb_table.audit.arn}/index/by_actor\"]"
            );
            assert!(
                sub(s, "condition")
                    .iter()
                    .any(|c| items(c, "values") == [format!("{PINNED}#sync:entra")]),
                "{actions}"
            );
        }
        assert!(!resources.contains("\"*\""), "{resources}");
        if actions.contains("kms:") {
            kms.push((
                actions.clone(),
                resources.clone(),
                sub(s, "condition").len(),
            ));
        }
        if actions.contains("secretsmanager:") {
            assert_eq!(actions, "[\"secretsmanager:GetSecretValue\"]");
            assert_eq!(resources, "[aws_secretsmanager_secret.entra_sync[0].arn]");
        }
    }
    assert_eq!(
        kms,
        [(
            "[\"kms:Encrypt\"]".to_owned(),
            "[aws_kms_key.recovery_keys.arn]".to_owned(),
            3
        )]
    );
    // Nor does the recovery-key CMK's policy name the sync's role.
    let kms_tf = std::fs::read_to_string(repo().join("infra/kms.tf")).unwrap();
    assert!(!kms_tf.contains("aws_iam_role.entra_sync"));
}

#[test]
fn only_the_function_can_read_the_secret() {
    let tf = file("entra_sync.tf");
    let secret = block(&tf, "resource", "aws_secretsmanager_secret", "entra_sync");
    assert_eq!(attr(secret, "kms_key_id"), "aws_kms_key.entra_sync[0].arn");
    let key = block(
        &tf,
        "data",
        "aws_iam_policy_document",
        "entra_sync_key_policy",
    );
    let decrypting: Vec<String> = statements(key)
        .into_iter()
        .filter(|s| attr(s, "actions").contains("Decrypt"))
        .flat_map(|s| sub(s, "principals"))
        .map(|p| attr(p, "identifiers"))
        .collect();
    assert_eq!(
        decrypting,
        [
            "[aws_iam_role.entra_sync[0].arn]",
            "[\"logs.${local.region}.amazonaws.com\"]"
        ]
    );
    let policy = block(
        &tf,
        "data",
        "aws_iam_policy_document",
        "entra_sync_secret_policy",
    );
    let [deny] = statements(policy)[..] else {
        panic!("one statement")
    };
    assert_eq!(attr(deny, "effect"), "Deny");
    assert_eq!(attr(deny, "actions"), "[\"secretsmanager:GetSecretValue\"]");
    let [c] = sub(deny, "condition")[..] else {
        panic!("one condition")
    };
    assert_eq!(
        (attr(c, "test"), attr(c, "variable"), attr(c, "values")),
        (
            "StringNotEquals".to_owned(),
            "aws:PrincipalArn".to_owned(),
            "[aws_iam_role.entra_sync[0].arn]".to_owned()
        )
    );
    // The function takes the secret's ARN, never its value.
    let f = block(&tf, "resource", "aws_lambda_function", "entra_sync");
    let env = attr(sub(f, "environment")[0], "variables");
    assert!(
        env.contains(
            "PORTAL_ENTRA_CLIENT_SECRET_ARN = aws_secretsmanager_secret.entra_sync[0].arn"
        )
    );
    assert!(!env.contains("PORTAL_ENTRA_CLIENT_SECRET ="), "{env}");
}

#[test]
fn a_schedule_invokes_the_function_and_two_alarms_watch_it() {
    let tf = file("entra_sync.tf");
    let s = block(&tf, "resource", "aws_scheduler_schedule", "entra_sync");
    assert_eq!(attr(s, "schedule_expression"), "var.entra_sync.schedule");
    let target = sub(s, "target")[0];
    assert_eq!(attr(target, "arn"), "aws_lambda_function.entra_sync[0].arn");
    assert_eq!(
        attr(target, "role_arn"),
        "aws_iam_role.entra_sync_scheduler[0].arn"
    );
    let invoke = block(
        &tf,
        "data",
        "aws_iam_policy_document",
        "entra_sync_scheduler",
    );
    let [st] = statements(invoke)[..] else {
        panic!("one statement")
    };
    assert_eq!(
        (attr(st, "actions"), attr(st, "resources")),
        (
            "[\"lambda:InvokeFunction\"]".to_owned(),
            "[aws_lambda_function.entra_sync[0].arn]".to_owned()
        )
    );

    let failed = block(
        &tf,
        "resource",
        "aws_cloudwatch_metric_alarm",
        "entra_sync_failed",
    );
    assert_eq!(
        (attr(failed, "namespace"), attr(failed, "metric_name")),
        ("AWS/Lambda".to_owned(), "Errors".to_owned())
    );
    assert!(attr(failed, "dimensions").contains("aws_lambda_function.entra_sync[0].function_name"));

    let stale = block(
        &tf,
        "resource",
        "aws_cloudwatch_metric_alarm",
        "entra_sync_stale",
    );
    assert_eq!(attr(stale, "namespace"), "var.metrics_namespace");
    assert_eq!(attr(stale, "metric_name"), "EntraSyncSucceeded");
    assert_eq!(attr(stale, "treat_missing_data"), "breaching");
    assert_eq!(attr(stale, "comparison_operator"), "LessThanThreshold");
    let n = |k: &str| attr(stale, k).parse::<u64>().unwrap();
    assert_eq!(n("period") * n("evaluation_periods"), 25 * 3600);
    assert_eq!(n("datapoints_to_alarm"), n("evaluation_periods"));
    // The metric is the one the code writes.
    let metrics = std::fs::read_to_string(repo().join("src/domain/metrics.rs")).unwrap();
    assert!(metrics.contains("=> \"EntraSyncSucceeded\""));
    for a in [failed, stale] {
        assert_eq!(attr(a, "alarm_actions"), "local.alarm_actions");
    }
}

/// What tests/infra/terraform.rs checks of the API functions and applies
/// here too: JSON logs into its own encrypted log group at the two
/// variables' levels, the build's architecture.
#[test]
fn the_function_logs_json_and_runs_the_architecture_it_was_built_for() {
    let tf = file("entra_sync.tf");
    let f = block(&tf, "resource", "aws_lambda_function", "entra_sync");
    let logging = sub(f, "logging_config")[0];
    assert_eq!(
        [
            attr(logging, "log_format"),
            attr(logging, "application_log_level"),
            attr(logging, "system_log_level"),
            attr(logging, "log_group"),
        ],
        [
            "JSON",
            "var.application_log_level",
            "var.system_log_level",
            "aws_cloudwatch_log_group.entra_sync[0].name"
        ]
    );
    let group = block(&tf, "resource", "aws_cloudwatch_log_group", "entra_sync");
    assert_eq!(attr(group, "kms_key_id"), "aws_kms_key.entra_sync[0].arn");
    assert_eq!(attr(f, "architectures"), "[local.architecture]");
    assert_eq!(attr(f, "reserved_concurrent_executions"), "1");
    let lifecycle = sub(f, "lifecycle")[0];
    let conditions: Vec<String> = sub(lifecycle, "precondition")
        .iter()
        .map(|p| attr(p, "condition"))
        .collect();
    assert!(
        conditions
            .iter()
            .any(|c| c.contains("var.architecture == local.architecture")),
        "{conditions:?}"
    );
}

#[test]
fn package_sh_builds_and_records_the_fourth_zip() {
    let sh = std::fs::read_to_string(repo().join("scripts/package.sh")).unwrap();
    assert!(sh.contains("--package entra-sync"));
    assert!(sh.contains("\"manage-keys\", \"entra-sync\")"));
    let tf = file("entra_sync.tf");
    let f = block(&tf, "resource", "aws_lambda_function", "entra_sync");
    let lifecycle = sub(f, "lifecycle")[0];
    assert!(
        sub(lifecycle, "precondition")
            .iter()
            .any(|p| attr(p, "condition").contains("local.build.zips[\"entra-sync\"]"))
    );
}

use crate::terraform::edit as tfedit;
use tfedit::Edit::{self, AddItem, Drop, Rename, Rewrite, Set, SetEntry};

/// The scheduled role's tenant, as written in its conditions.
const PINNED: &str = "${var.entra_sync.tenant_id}";

/// A list attribute's elements as written (`"D#*"` -> `D#*`, a reference
/// as its text).
fn items(body: &Body, key: &str) -> Vec<String> {
    let one = |e: &Expression| match e {
        Expression::String(s) => s.clone(),
        Expression::TemplateExpr(t) => match t.as_ref() {
            hcl::TemplateExpr::QuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        other => other.to_string(),
    };
    match body.attributes().find(|a| a.key() == key).map(|a| a.expr()) {
        Some(Expression::Array(xs)) => xs.iter().map(one).collect(),
        Some(e) => vec![one(e)],
        None => Vec::new(),
    }
}

/// The leading keys a sync statement may name: device items (writes), the
/// tenant item too (reads), its own audit partitions (`<tenant>#sync:entra`,
/// the actor the sync writes as); one tenant's when `tenant` is pinned.
fn allowed_leading_keys(table: &str, actions: &[String], tenant: &str) -> Vec<String> {
    let only = |a: &str| actions.iter().all(|x| x == a);
    let device = format!("D#{tenant}#*");
    match table {
        "devices" if only("dynamodb:BatchGetItem") => vec![device, format!("T#{tenant}")],
        "devices" => vec![device],
        "audit" if only("dynamodb:Query") => vec![format!("{tenant}#sync:entra")],
        "audit" if only("dynamodb:PutItem") => vec![format!("{tenant}#sync:entra#*")],
        _ => Vec::new(),
    }
}

/// What is wrong with the scope of `doc`'s DynamoDB and KMS grants: every
/// DynamoDB statement limited (ForAllValues + Null) to the items the sync
/// writes, and, when `pinned`, to var.entra_sync.tenant_id, Encrypt too.
fn scope_errors(blocks: &[Block], doc: &str, pinned: bool) -> Vec<String> {
    let tenant = if pinned { PINNED } else { "*" };
    let body = blocks
        .iter()
        .find(|b| label(b, 0) == "aws_iam_policy_document" && label(b, 1) == doc)
        .map(Block::body)
        .unwrap_or_else(|| panic!("no policy document {doc}"));
    let mut errors = Vec::new();
    for s in statements(body) {
        let sid = attr(s, "sid");
        let actions = items(s, "actions");
        let conditions = sub(s, "condition");
        let on = |var: &str| {
            conditions
                .iter()
                .filter(|c| attr(c, "variable") == var)
                .map(|c| (attr(c, "test"), items(c, "values")))
                .collect::<Vec<_>>()
        };
        if actions.iter().any(|a| a.starts_with("dynamodb:")) {
            let table = match attr(s, "resources").as_str() {
                "[aws_dynamodb_table.devices.arn]" => "devices",
                "[aws_dynamodb_table.audit.arn]" => "audit",
                "[\"${aws_dynamodb_table.audit.arn}/index/by_actor\"]" => "audit",
                other => {
                    errors.push(format!("{doc}/{sid}: DynamoDB on {other}"));
                    continue;
                }
            };
            let allowed = allowed_leading_keys(table, &actions, tenant);
            let keys = on("dynamodb:LeadingKeys");
            let limited = keys.iter().any(|(test, values)| {
                test.starts_with("ForAllValues:String")
                    && !values.is_empty()
                    && values.iter().all(|v| allowed.contains(v))
            });
            let not_null = keys.contains(&("Null".to_owned(), vec!["false".to_owned()]));
            if allowed.is_empty() || !limited || !not_null {
                errors.push(format!(
                    "{doc}/{sid}: {actions:?} on {table} items beyond {allowed:?}: {keys:?}"
                ));
            }
        }
        if pinned && actions.iter().any(|a| a == "kms:Encrypt") {
            let want = (
                "StringEquals".to_owned(),
                vec!["var.entra_sync.tenant_id".to_owned()],
            );
            if !on("kms:EncryptionContext:tenant_id").contains(&want) {
                errors.push(format!("{doc}/{sid}: Encrypt for any tenant"));
            }
        }
    }
    errors
}

/// The scope errors of both principals' documents in `blocks` as written.
fn all_scope_errors(blocks: &[Block]) -> Vec<String> {
    let blocks = crate::tfeval::expand(blocks);
    let mut errors = scope_errors(&blocks, "entra_sync[\"function\"]", true);
    errors.extend(scope_errors(&blocks, "entra_sync[\"cli\"]", false));
    errors
}

/// Each widens (or drops) a limit the review asked for (issue 21, F3). The
/// grants are written once for both principals (iam.tf): an edit of a
/// statement reaches both, an edit of `local.entra_sync_scopes` one.
const WIDENINGS: &[Edit] = &[
    Drop(
        "data.aws_iam_policy_document.entra_sync/statement[sid=WriteDevices]/condition[test=ForAllValues:StringLike]",
    ),
    Drop(
        "data.aws_iam_policy_document.entra_sync/statement[sid=WriteDevices]/condition[test=Null]",
    ),
    Set(
        "data.aws_iam_policy_document.entra_sync/statement[sid=WriteDevices]/condition[test=ForAllValues:StringLike]",
        "values",
        "[\"D#*\"]",
    ),
    Set(
        "data.aws_iam_policy_document.entra_sync/statement[sid=WriteDevices]/condition[test=ForAllValues:StringLike]",
        "values",
        "[\"*\"]",
    ),
    Set(
        "data.aws_iam_policy_document.entra_sync/statement[sid=WriteDevices]/condition[test=ForAllValues:StringLike]",
        "test",
        "\"ForAnyValue:StringLike\"",
    ),
    AddItem(
        "data.aws_iam_policy_document.entra_sync/statement[sid=WriteDevices]/condition[test=ForAllValues:StringLike]",
        "values",
        "\"T#*\"",
    ),
    AddItem(
        "data.aws_iam_policy_document.entra_sync/statement[sid=ReadDevicesAndTenant]",
        "actions",
        "\"dynamodb:PutItem\"",
    ),
    AddItem(
        "data.aws_iam_policy_document.entra_sync/statement[sid=ReadDevicesAndTenant]/condition[test=ForAllValues:StringLike]",
        "values",
        "\"T#*\"",
    ),
    Set(
        "data.aws_iam_policy_document.entra_sync/statement[sid=ReadDevicesAndTenant]",
        "resources",
        "[aws_dynamodb_table.rate_limits.arn]",
    ),
    Set(
        "data.aws_iam_policy_document.entra_sync/statement[sid=AppendAuditEvents]/condition[test=ForAllValues:StringLike]",
        "values",
        "[\"*\"]",
    ),
    Drop(
        "data.aws_iam_policy_document.entra_sync/statement[sid=AppendAuditEvents]/condition[test=ForAllValues:StringLike]",
    ),
    Set(
        "data.aws_iam_policy_document.entra_sync/statement[sid=AppendAuditEvents]/condition[test=ForAllValues:StringLike]",
        "values",
        "[\"*#import:*#*\"]",
    ),
    Set(
        "data.aws_iam_policy_document.entra_sync/statement[sid=QueryOwnAuditEvents]/condition[test=ForAllValues:StringLike]",
        "values",
        "[\"*#sync:entra\"]",
    ),
    Drop(
        "data.aws_iam_policy_document.entra_sync/statement[sid=SealRecoveryKeysWithContext]/dynamic.condition",
    ),
    // The scheduled role unpinned, wholly or its KMS grant only.
    SetEntry(
        "locals",
        "entra_sync_scopes",
        &["function", "tenant"],
        "\"*\"",
    ),
    SetEntry("locals", "entra_sync_scopes", &["function", "pin"], "[]"),
];

/// Issue 21 (F3): the sync writes device items and its own audit events
/// only, never a tenant item; the scheduled role only its tenant's. (That
/// the recorded calls still pass is tests/aws/iam.)
#[test]
fn the_sync_roles_write_only_their_own_items() {
    let blocks = sync_files();
    assert_eq!(all_scope_errors(&blocks), Vec::<String>::new());
    for edit in WIDENINGS {
        let mut mutated = blocks.clone();
        tfedit::apply(&mut mutated, *edit);
        assert!(
            !all_scope_errors(&mutated).is_empty(),
            "{edit:?} went unnoticed"
        );
    }
}

/// What is wrong with var.entra_sync's `tenant_id` rule in `blocks`: the
/// scheduled role pins it into StringLike condition values
/// (`D#<tenant>#*`, `<tenant>#sync:entra`), so a `*` or `?` in it would
/// widen them. It must parse as a `TenantId` (src/domain/ids.rs).
fn tenant_id_errors(blocks: &[Block]) -> Vec<String> {
    let v = blocks
        .iter()
        .find(|b| b.identifier() == "variable" && label(b, 0) == "entra_sync")
        .expect("variable entra_sync")
        .body();
    let pattern = "\"^[A-Za-z0-9._-]{1,128}$\", var.entra_sync.tenant_id)";
    let checked = sub(v, "validation").iter().any(|b| {
        let c = attr(b, "condition");
        c.contains("regex(") && c.contains(pattern) && !attr(b, "error_message").is_empty()
    });
    if checked {
        Vec::new()
    } else {
        vec![format!(
            "variable entra_sync: no validation of tenant_id against {pattern}"
        )]
    }
}

/// Security review L1: a wildcard tenant cannot reach the pinned grants.
#[test]
fn the_pinned_tenant_id_is_validated_as_a_tenant_id() {
    // The pattern is TenantId's rule.
    use recovery_portal::domain::ids::TenantId;
    for ok in ["contoso", "a.b_c-9", &"x".repeat(128)] {
        assert!(TenantId::parse(ok).is_ok(), "{ok}");
    }
    for bad in ["*", "con?oso", "", &"x".repeat(129), "a b"] {
        assert!(TenantId::parse(bad).is_err(), "{bad}");
    }
    let blocks: Vec<Block> = file("variables.tf").into_blocks().collect();
    assert_eq!(tenant_id_errors(&blocks), Vec::<String>::new());
    let widenings = [
        Rename("variable.entra_sync/validation#0", "unchecked"),
        Rewrite(
            "variable.entra_sync",
            "*",
            "\"^[A-Za-z0-9._-]{1,128}$\"",
            "\"^.+$\"",
        ),
        Rewrite(
            "variable.entra_sync",
            "*",
            "var.entra_sync.tenant_id",
            "var.entra_sync.client_id",
        ),
    ];
    for edit in widenings {
        let mut mutated = blocks.clone();
        tfedit::apply(&mut mutated, edit);
        assert!(
            !tenant_id_errors(&mutated).is_empty(),
            "{edit:?} went unnoticed"
        );
    }
}
