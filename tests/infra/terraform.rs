//! Static checks of the Terraform in `infra/`.
//!
//! The Terraform is parsed with `hcl-rs` (no provider, no AWS account),
//! its `locals` and `for_each` are evaluated (`tests/support/tfeval.rs`, on
//! hcl-rs's expression evaluator) into the instances `terraform plan` would
//! create (`aws_lambda_function.function["list-devices"]`, one route per
//! entry of `local.routes`), and those are compared with what the code
//! relies on:
//!
//! - every API route is proxied (payload 2.0) to the right function and sits
//!   behind the JWT authorizer;
//! - the list-devices role has no KMS permission and no access to the devices
//!   base table (whose items hold ciphertext) except `GetItem` on tenant items;
//! - the get-recovery-key role's only KMS permission is `kms:Decrypt` on the
//!   recovery-key CMK, bound to exactly `schema::KMS_CONTEXT_KEYS`;
//! - the manage-keys role's only KMS permission is `kms:Encrypt`, likewise
//!   bound; it writes the devices table and appends audit events, nothing else;
//! - the DynamoDB tables match `schema::ALL_TABLES` (the single source of
//!   truth for keys, indexes, projections and TTL);
//! - nobody may update or delete audit events;
//! - the portal page's bucket is private and read only by its CloudFront
//!   distribution (origin access control), which serves it over HTTPS with
//!   the page's CSP, HSTS, no-referrer, nosniff and frame denial; every file
//!   of `web/` is uploaded with a content type, and `config.json` is written
//!   from the variables; the API's CORS lets the page's origin call it;
//! - and, around those: the functions run their own zip with the environment
//!   `src/config.rs` reads, with the architecture `scripts/package.sh`
//!   recorded (checked at plan time), and log JSON at the levels of two
//!   variables; the key policies and the import policy agree with the roles,
//!   and the stage throttles below the shared KMS quota;
//! - `infra/terraform.tfvars.example` sets every required variable and names
//!   only declared ones, and the READMEs name only outputs and variables that
//!   exist.
//!
//! The schema module is included by path; the expected routes come from the
//! route table (`recovery_portal::api::ROUTES`, in `expected_routes`).
//!
//! Each check returns its violations instead of panicking, which lets
//! `every_check_can_fail` apply small structural edits to the parsed HCL
//! (`terraform/mutations.rs`: remove a statement's action, set an
//! attribute, drop an entry of `local.routes`, ...) and assert that the
//! matching check notices each of them; `check_moved` keeps every address
//! of an existing deployment moved, not replaced.

#[allow(dead_code)]
#[path = "../../src/adapters/aws/schema.rs"]
mod schema;

#[path = "../support/tfedit.rs"]
pub(crate) mod edit;
mod mutations;

use crate::tfeval::{self, Locals, instance_name};
use hcl::{Block, Body, Expression};
use std::collections::BTreeSet;
use std::path::Path;

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// `(file name, contents)` of every `infra/*.tf`, sorted by name.
fn sources() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("infra");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "tf"))
        // The optional scheduled sync (no route, its own environment and
        // metrics) has its checks in tests/infra/entra_sync.rs.
        .filter(|p| !p.ends_with("entra_sync.tf"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            (name, text)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no .tf files in {}", dir.display());
    out
}

/// All top-level blocks of the configuration, with every `for_each`
/// expanded into its instances (`aws_lambda_function.function["list-devices"]`).
struct Config {
    blocks: Vec<Block>,
    locals: Locals,
}

/// Top-level blocks of `infra/*.tf` as written (the mutations edit these).
fn parse_blocks(sources: &[(String, String)]) -> Vec<Block> {
    let mut blocks = Vec::new();
    for (name, text) in sources {
        let body: Body = hcl::from_str(text).unwrap_or_else(|e| panic!("parsing {name}: {e}"));
        blocks.extend(body.blocks().cloned());
    }
    blocks
}

impl Config {
    fn parse(sources: &[(String, String)]) -> Config {
        Config::from_blocks(&parse_blocks(sources))
    }

    fn from_blocks(raw: &[Block]) -> Config {
        Config {
            blocks: tfeval::expand(raw),
            locals: Locals::new(raw),
        }
    }

    fn load() -> Config {
        Config::parse(&sources())
    }

    /// `(name, body)` of every `<kind> "<ty>" "<name>"` block (kind is
    /// `resource` or `data`).
    fn all<'a>(&'a self, kind: &str, ty: &str) -> Vec<(&'a str, &'a Body)> {
        self.blocks
            .iter()
            .filter(|b| b.identifier() == kind && label(b, 0) == Some(ty))
            .filter_map(|b| Some((label(b, 1)?, b.body())))
            .collect()
    }

    fn resources<'a>(&'a self, ty: &str) -> Vec<(&'a str, &'a Body)> {
        self.all("resource", ty)
    }

    fn resource(&self, ty: &str, name: &str) -> Option<&Body> {
        self.resources(ty)
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b)
    }

    fn data(&self, ty: &str, name: &str) -> Option<&Body> {
        self.all("data", ty)
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b)
    }

    fn variable_default(&self, name: &str) -> Option<&Expression> {
        self.blocks
            .iter()
            .find(|b| b.identifier() == "variable" && label(b, 0) == Some(name))
            .and_then(|b| attr(b.body(), "default"))
    }
}

fn label(block: &Block, i: usize) -> Option<&str> {
    block.labels().get(i).map(|l| l.as_str())
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

/// An expression as comparable text: string literals without quotes,
/// templates with `${` `}` removed (`"${aws_x.y.arn}/index/i"` becomes
/// `aws_x.y.arn/index/i`), references as written (`var.name_prefix`).
fn norm(expr: &Expression) -> String {
    match expr {
        Expression::String(s) => s.clone(),
        Expression::TemplateExpr(t) => t.to_string().replace("${", "").replace('}', ""),
        other => other.to_string(),
    }
}

fn attr_str(body: &Body, key: &str) -> Option<String> {
    attr(body, key).map(norm)
}

/// A list attribute as normalized strings; a scalar counts as a one-element list.
fn attr_list(body: &Body, key: &str) -> Option<Vec<String>> {
    attr(body, key).map(|e| match e {
        Expression::Array(items) => items.iter().map(norm).collect(),
        other => vec![norm(other)],
    })
}

fn sub_blocks<'a>(body: &'a Body, ident: &str) -> Vec<&'a Body> {
    body.blocks()
        .filter(|b| b.identifier() == ident)
        .map(|b| b.body())
        .collect()
}

fn has_dynamic(body: &Body, ident: &str) -> bool {
    body.blocks()
        .any(|b| b.identifier() == "dynamic" && label(b, 0) == Some(ident))
}

/// `prefix.NAME.suffix` -> `NAME` (e.g. the role name out of `aws_iam_role.NAME.arn`).
fn reference_name<'a>(text: &'a str, prefix: &str, suffixes: &[&str]) -> Option<&'a str> {
    let rest = text.strip_prefix(prefix)?.strip_prefix('.')?;
    let (name, suffix) = rest.split_once('.')?;
    suffixes.contains(&suffix).then_some(name)
}

/// The key of an instance: `function["list-devices"]` -> `list-devices`.
fn instance_key(instance: &str) -> Option<&str> {
    instance.split_once("[\"")?.1.strip_suffix("\"]")
}

/// `local.functions[function].<setting>` as written.
fn function_setting(cfg: &Config, function: &str, setting: &str) -> Option<String> {
    let Some(Expression::Object(functions)) = cfg.locals.expr("functions") else {
        return None;
    };
    let (_, entry) = functions.iter().find(
        |(k, _)| matches!(k, hcl::ObjectKey::Expression(Expression::String(s)) if s == function),
    )?;
    let Expression::Object(entry) = entry else {
        return None;
    };
    entry
        .iter()
        .find(|(k, _)| k.to_string() == setting)
        .map(|(_, v)| norm(v))
}

/// The resource an instance belongs to: `function["list-devices"]` -> `function`.
fn resource_name(instance: &str) -> &str {
    instance.split_once('[').map_or(instance, |(name, _)| name)
}

fn set<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> BTreeSet<String> {
    items.into_iter().map(Into::into).collect()
}

// ---------------------------------------------------------------------------
// IAM policy model
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Condition {
    test: String,
    variable: String,
    values: Vec<String>,
}

#[derive(Debug, Clone)]
struct Statement {
    /// Where it came from, for messages.
    origin: String,
    allow: bool,
    actions: Vec<String>,
    /// `not_actions` present: the statement grants (almost) everything.
    not_actions: bool,
    resources: Vec<String>,
    not_resources: bool,
    /// `(type, identifiers)` per principals block.
    principals: Vec<(String, Vec<String>)>,
    not_principals: bool,
    conditions: Vec<Condition>,
}

impl Statement {
    fn condition(&self, test: &str, variable: &str) -> Option<&Condition> {
        self.conditions
            .iter()
            .find(|c| c.test == test && c.variable == variable)
    }
}

/// Case-insensitive IAM glob (`*` any run, `?` one character).
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(
        pattern.to_ascii_lowercase().as_bytes(),
        text.to_ascii_lowercase().as_bytes(),
    )
}

/// Whether an Allow statement grants `action`.
fn grants(st: &Statement, action: &str) -> bool {
    st.allow && (st.not_actions || st.actions.iter().any(|a| glob(a, action)))
}

/// Whether an action pattern can reach any action of `service` (`kms:Decrypt`,
/// `kms:*`, `*`, `k*:...` all reach `kms`).
fn touches_service(action: &str, service: &str) -> bool {
    match action.split_once(':') {
        Some((svc, _)) => glob(svc, service),
        None => glob(action, &format!("{service}:x")),
    }
}

/// The actions of an Allow statement that reach `service` (`*` for `not_actions`).
fn service_actions(st: &Statement, service: &str) -> Vec<String> {
    if !st.allow {
        return vec![];
    }
    if st.not_actions {
        return vec!["*".into()];
    }
    st.actions
        .iter()
        .filter(|a| touches_service(a, service))
        .cloned()
        .collect()
}

/// A DynamoDB table or one of its indexes, by Terraform resource name (which
/// is also the end of the deployed table name: `aws_dynamodb_table.audit` is
/// `<prefix>-audit`).
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    Table(&'a str),
    Index(&'a str, &'a str),
}

/// Whether a (normalized) resource pattern can match the target: a reference
/// to the table's `arn` (plus a suffix), or a written-out ARN. A written-out
/// ARN with a wildcard is assumed to match.
fn resource_covers(resource: &str, target: Target<'_>) -> bool {
    if resource == "*" {
        return true;
    }
    let (table, tail) = match target {
        Target::Table(t) => (t, String::new()),
        Target::Index(t, i) => (t, format!("/index/{i}")),
    };
    if let Some(rest) = resource.strip_prefix("aws_dynamodb_table.") {
        let Some((name, after)) = rest.split_once('.') else {
            return false;
        };
        let Some(suffix) = after.strip_prefix("arn") else {
            return false;
        };
        return name == table && glob(suffix, &tail);
    }
    if !resource.starts_with("arn:") {
        return false;
    }
    if resource.contains('*') {
        return true;
    }
    // arn:<partition>:dynamodb:<region>:<account>:table/<name>[/index/<index>]
    let Some((_, path)) = resource.split_once(":table/") else {
        return false;
    };
    let (name, index) = match path.split_once('/') {
        Some((name, rest)) => (name, format!("/{rest}")),
        None => (path, String::new()),
    };
    name.ends_with(table) && index == tail
}

/// Whether an Allow statement's resources reach the target.
fn statement_covers(st: &Statement, target: Target<'_>) -> bool {
    st.allow && (st.not_resources || st.resources.iter().any(|r| resource_covers(r, target)))
}

/// Statements of a policy given by reference (`data.aws_iam_policy_document.X.json`),
/// including its `source_policy_documents` / `override_policy_documents`.
fn policy_statements(
    cfg: &Config,
    reference: &str,
    depth: usize,
) -> Result<Vec<Statement>, String> {
    if depth > 8 {
        return Err(format!("policy documents nest too deeply at {reference}"));
    }
    let name = reference_name(reference, "data.aws_iam_policy_document", &["json", "minified_json"])
        .ok_or_else(|| {
            format!("policy `{reference}` is not an aws_iam_policy_document reference, so it cannot be inspected")
        })?;
    let doc = cfg
        .data("aws_iam_policy_document", name)
        .ok_or_else(|| format!("data.aws_iam_policy_document.{name} does not exist"))?;
    if has_dynamic(doc, "statement") {
        return Err(format!(
            "aws_iam_policy_document.{name} has a dynamic statement, which cannot be inspected"
        ));
    }
    for unsupported in ["source_json", "override_json"] {
        if attr(doc, unsupported).is_some() {
            return Err(format!(
                "aws_iam_policy_document.{name} uses {unsupported}, which cannot be inspected"
            ));
        }
    }
    let mut out = Vec::new();
    for key in ["source_policy_documents", "override_policy_documents"] {
        for nested in attr_list(doc, key).unwrap_or_default() {
            out.extend(policy_statements(cfg, &nested, depth + 1)?);
        }
    }
    for (i, st) in sub_blocks(doc, "statement").into_iter().enumerate() {
        for ident in ["condition", "principals", "not_principals"] {
            if has_dynamic(st, ident) {
                return Err(format!(
                    "aws_iam_policy_document.{name} statement {i} has a dynamic {ident} block"
                ));
            }
        }
        let sid = attr_str(st, "sid").unwrap_or_else(|| format!("#{i}"));
        out.push(Statement {
            origin: format!("aws_iam_policy_document.{name} statement {sid}"),
            allow: attr_str(st, "effect").is_none_or(|e| e == "Allow"),
            actions: attr_list(st, "actions").unwrap_or_default(),
            not_actions: attr(st, "not_actions").is_some(),
            resources: attr_list(st, "resources").unwrap_or_default(),
            not_resources: attr(st, "not_resources").is_some(),
            principals: sub_blocks(st, "principals")
                .into_iter()
                .map(|p| {
                    (
                        attr_str(p, "type").unwrap_or_default(),
                        attr_list(p, "identifiers").unwrap_or_default(),
                    )
                })
                .collect(),
            not_principals: !sub_blocks(st, "not_principals").is_empty(),
            conditions: sub_blocks(st, "condition")
                .into_iter()
                .map(|c| Condition {
                    test: attr_str(c, "test").unwrap_or_default(),
                    variable: attr_str(c, "variable").unwrap_or_default(),
                    values: attr_list(c, "values").unwrap_or_default(),
                })
                .collect(),
        });
    }
    Ok(out)
}

/// Statements behind a managed policy ARN: an `aws_iam_policy` of this
/// configuration, or one of the few AWS managed policies the design uses.
fn managed_policy_statements(cfg: &Config, arn: &str) -> Result<Vec<Statement>, String> {
    if let Some(name) = reference_name(arn, "aws_iam_policy", &["arn", "id"]) {
        let policy = cfg
            .resource("aws_iam_policy", name)
            .ok_or_else(|| format!("aws_iam_policy.{name} does not exist"))?;
        let doc = attr_str(policy, "policy")
            .ok_or_else(|| format!("aws_iam_policy.{name} has no policy"))?;
        return policy_statements(cfg, &doc, 0);
    }
    if arn.ends_with(":iam::aws:policy/AWSXRayDaemonWriteAccess") {
        // Contents of the AWS managed policy (X-Ray only).
        return Ok(vec![Statement {
            origin: "AWSXRayDaemonWriteAccess".into(),
            allow: true,
            actions: [
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
                "xray:GetSamplingStatisticSummaries",
            ]
            .map(String::from)
            .to_vec(),
            not_actions: false,
            resources: vec!["*".into()],
            not_resources: false,
            principals: vec![],
            not_principals: false,
            conditions: vec![],
        }]);
    }
    Err(format!(
        "managed policy `{arn}` is not known to this test, so the role's permissions cannot be checked"
    ))
}

/// Every statement that applies to `aws_iam_role.<role>`: inline policies,
/// `aws_iam_role_policy`, and attached managed policies.
fn role_statements(cfg: &Config, role: &str) -> Result<Vec<Statement>, String> {
    let body = cfg
        .resource("aws_iam_role", role)
        .ok_or_else(|| format!("aws_iam_role.{role} does not exist"))?;
    let mut out = Vec::new();
    for inline in sub_blocks(body, "inline_policy") {
        if let Some(policy) = attr_str(inline, "policy") {
            out.extend(policy_statements(cfg, &policy, 0)?);
        }
    }
    for arn in attr_list(body, "managed_policy_arns").unwrap_or_default() {
        out.extend(managed_policy_statements(cfg, &arn)?);
    }
    let role_ref = |expr: &str, what: &str| -> Result<bool, String> {
        match reference_name(expr, "aws_iam_role", &["id", "name"]) {
            Some(name) => Ok(name == role),
            None => Err(format!(
                "{what}: role `{expr}` is not a reference to an aws_iam_role"
            )),
        }
    };
    for (name, rp) in cfg.resources("aws_iam_role_policy") {
        let what = format!("aws_iam_role_policy.{name}");
        if role_ref(&attr_str(rp, "role").unwrap_or_default(), &what)? {
            let policy = attr_str(rp, "policy").ok_or_else(|| format!("{what} has no policy"))?;
            out.extend(policy_statements(cfg, &policy, 0)?);
        }
    }
    for (name, att) in cfg.resources("aws_iam_role_policy_attachment") {
        let what = format!("aws_iam_role_policy_attachment.{name}");
        if role_ref(&attr_str(att, "role").unwrap_or_default(), &what)? {
            let arn =
                attr_str(att, "policy_arn").ok_or_else(|| format!("{what} has no policy_arn"))?;
            out.extend(managed_policy_statements(cfg, &arn)?);
        }
    }
    for (name, att) in cfg.resources("aws_iam_policy_attachment") {
        let what = format!("aws_iam_policy_attachment.{name}");
        for r in attr_list(att, "roles").unwrap_or_default() {
            if role_ref(&r, &what)? {
                let arn = attr_str(att, "policy_arn")
                    .ok_or_else(|| format!("{what} has no policy_arn"))?;
                out.extend(managed_policy_statements(cfg, &arn)?);
            }
        }
    }
    Ok(out)
}

/// `aws_iam_role.<name>` that `aws_lambda_function.<function>` runs as.
fn function_role(cfg: &Config, function: &str) -> Result<String, String> {
    let f = cfg
        .resource("aws_lambda_function", function)
        .ok_or_else(|| format!("aws_lambda_function.{function} does not exist"))?;
    let role = attr_str(f, "role").unwrap_or_default();
    reference_name(&role, "aws_iam_role", &["arn"])
        .map(String::from)
        .ok_or_else(|| {
            format!(
                "aws_lambda_function.{function}: role `{role}` is not an aws_iam_role reference"
            )
        })
}

/// Statements of the execution role of a function.
fn function_statements(cfg: &Config, function: &str) -> Result<(String, Vec<Statement>), String> {
    let role = function_role(cfg, function)?;
    let statements = role_statements(cfg, &role)?;
    Ok((role, statements))
}

/// Checks that `st` carries the recovery-key encryption-context condition:
/// `ForAllValues:StringEquals kms:EncryptionContextKeys` = exactly
/// `schema::KMS_CONTEXT_KEYS`, and `Null kms:EncryptionContextKeys = false`.
fn check_context_condition(st: &Statement, errors: &mut Vec<String>) {
    let expected = set(schema::KMS_CONTEXT_KEYS);
    match st.condition("ForAllValues:StringEquals", "kms:EncryptionContextKeys") {
        None => errors.push(format!(
            "{}: no ForAllValues:StringEquals condition on kms:EncryptionContextKeys",
            st.origin
        )),
        Some(c) => {
            if set(c.values.clone()) != expected || c.values.len() != expected.len() {
                errors.push(format!(
                    "{}: kms:EncryptionContextKeys must be exactly {:?}, found {:?}",
                    st.origin,
                    schema::KMS_CONTEXT_KEYS,
                    c.values
                ));
            }
        }
    }
    match st.condition("Null", "kms:EncryptionContextKeys") {
        Some(c) if c.values == ["false"] => {}
        _ => errors.push(format!(
            "{}: missing `Null kms:EncryptionContextKeys = false` (ForAllValues alone passes when there is no context)",
            st.origin
        )),
    }
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// The functions, by their key in `local.functions`, as instance names.
const LIST: &str = r#"function["list-devices"]"#;
const KEY: &str = r#"function["get-recovery-key"]"#;
const MANAGE: &str = r#"function["manage-keys"]"#;

/// Which function serves each route (route key, function instance): the
/// routes of the route table (`api::ROUTES`), exactly.
fn expected_routes() -> Vec<(String, String)> {
    use recovery_portal::api::{ROUTES, Routes};
    ROUTES
        .iter()
        .map(|r| {
            let function = match r.unit {
                Routes::List => "list-devices",
                Routes::Key => "get-recovery-key",
                Routes::Manage => "manage-keys",
                Routes::All => unreachable!("no route is served by every unit"),
            };
            (
                format!("{} {}", r.method, r.path),
                instance_name("function", function),
            )
        })
        .collect()
}

/// The function an `integration_uri` invokes: `aws_lambda_function.F.invoke_arn`,
/// or, with provisioned concurrency, `<cond> ? aws_lambda_alias.A[0].invoke_arn
/// : aws_lambda_function.F.invoke_arn` where alias A is an alias of F.
fn integration_function(cfg: &Config, uri: &Expression) -> Option<String> {
    let direct =
        |text: &str| reference_name(text, "aws_lambda_function", &["invoke_arn"]).map(String::from);
    match uri {
        Expression::Conditional(c) => {
            let via_alias = alias_function(cfg, &norm(&c.true_expr), "invoke_arn")?;
            let f = direct(&norm(&c.false_expr))?;
            (via_alias == f).then_some(f)
        }
        other => direct(&norm(other)),
    }
}

/// `aws_lambda_alias.A[0].<attribute>` -> the function alias A belongs to.
fn alias_function(cfg: &Config, text: &str, attribute: &str) -> Option<String> {
    let rest = text.strip_prefix("aws_lambda_alias.")?;
    let (name, suffix) = rest.split_once('[')?;
    if suffix != format!("0].{attribute}") {
        return None;
    }
    let alias = cfg.resource("aws_lambda_alias", name)?;
    reference_name(
        &attr_str(alias, "function_name")?,
        "aws_lambda_function",
        &["function_name"],
    )
    .map(String::from)
}

/// (a) Every route is proxied with payload format 2.0 to the right function
/// and uses the JWT authorizer; API Gateway may invoke those functions.
fn check_routes(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();

    let apis = cfg.resources("aws_apigatewayv2_api");
    let [(api, api_body)] = apis.as_slice() else {
        return vec![format!(
            "expected exactly one aws_apigatewayv2_api, found {}",
            apis.len()
        )];
    };
    if attr_str(api_body, "protocol_type").as_deref() != Some("HTTP") {
        errors.push(format!(
            "aws_apigatewayv2_api.{api} must have protocol_type HTTP"
        ));
    }
    let api_id = format!("aws_apigatewayv2_api.{api}.id");

    let routes = cfg.resources("aws_apigatewayv2_route");
    let declared: Vec<String> = routes
        .iter()
        .map(|(_, r)| attr_str(r, "route_key").unwrap_or_default())
        .collect();
    let declared_set = set(declared.clone());
    if declared_set.len() != declared.len() {
        errors.push(format!("duplicate route keys: {declared:?}"));
    }
    let expected = expected_routes();
    let expected_set = set(expected.iter().map(|(k, _)| k.clone()));
    for missing in expected_set.difference(&declared_set) {
        errors.push(format!("route `{missing}` is missing"));
    }
    for extra in declared_set.difference(&expected_set) {
        errors.push(format!("unexpected route `{extra}`"));
    }

    let mut used_functions = BTreeSet::new();
    for (name, route) in &routes {
        let key = attr_str(route, "route_key").unwrap_or_default();
        let what = format!("route `{key}` (aws_apigatewayv2_route.{name})");
        let expected_fn = expected
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, f)| f.as_str());

        if attr_str(route, "api_id").as_deref() != Some(api_id.as_str()) {
            errors.push(format!("{what}: api_id is not {api_id}"));
        }

        // Authorization: the JWT authorizer of this API.
        if attr_str(route, "authorization_type").as_deref() != Some("JWT") {
            errors.push(format!("{what}: authorization_type is not JWT"));
        }
        let authorizer = attr_str(route, "authorizer_id").unwrap_or_default();
        match reference_name(&authorizer, "aws_apigatewayv2_authorizer", &["id"]).and_then(|a| {
            cfg.resource("aws_apigatewayv2_authorizer", a)
                .map(|b| (a, b))
        }) {
            None => errors.push(format!(
                "{what}: authorizer_id `{authorizer}` is not an authorizer of this configuration"
            )),
            Some((a, auth)) => {
                let jwt = sub_blocks(auth, "jwt_configuration");
                let ok = attr_str(auth, "authorizer_type").as_deref() == Some("JWT")
                    && attr_str(auth, "api_id").as_deref() == Some(api_id.as_str())
                    && attr_list(auth, "identity_sources")
                        .is_some_and(|s| s == ["$request.header.Authorization"])
                    && jwt.len() == 1
                    && attr_str(jwt[0], "issuer").as_deref() == Some("var.jwt_issuer")
                    && attr_list(jwt[0], "audience").is_some_and(|a| a == ["var.jwt_audience"]);
                if !ok {
                    errors.push(format!(
                        "{what}: aws_apigatewayv2_authorizer.{a} is not a JWT authorizer of this API reading the bearer token with issuer var.jwt_issuer and audience [var.jwt_audience]"
                    ));
                }
            }
        }

        // Target: an AWS_PROXY integration, payload 2.0, to the right function.
        let target = attr_str(route, "target").unwrap_or_default();
        let integration = target
            .strip_prefix("integrations/")
            .and_then(|t| reference_name(t, "aws_apigatewayv2_integration", &["id"]));
        let Some((iname, integ)) = integration.and_then(|i| {
            cfg.resource("aws_apigatewayv2_integration", i)
                .map(|b| (i, b))
        }) else {
            errors.push(format!(
                "{what}: target `{target}` is not integrations/<integration of this configuration>"
            ));
            continue;
        };
        let iwhat = format!("{what} -> aws_apigatewayv2_integration.{iname}");
        if attr_str(integ, "api_id").as_deref() != Some(api_id.as_str()) {
            errors.push(format!("{iwhat}: api_id is not {api_id}"));
        }
        if attr_str(integ, "integration_type").as_deref() != Some("AWS_PROXY") {
            errors.push(format!("{iwhat}: integration_type is not AWS_PROXY"));
        }
        if attr_str(integ, "payload_format_version").as_deref() != Some("2.0") {
            errors.push(format!("{iwhat}: payload_format_version is not \"2.0\""));
        }
        let uri = attr_str(integ, "integration_uri").unwrap_or_default();
        let function = attr(integ, "integration_uri").and_then(|e| integration_function(cfg, e));
        match (function.as_deref(), expected_fn) {
            (Some(f), Some(exp)) if f == exp => {
                used_functions.insert(f.to_string());
            }
            (f, exp) => errors.push(format!(
                "{iwhat}: integration_uri `{uri}` targets {f:?}, expected aws_lambda_function.{}.invoke_arn",
                exp.unwrap_or("?")
            )),
        }
    }

    // API Gateway may invoke each routed function, from this API only.
    let execution_arn = format!("aws_apigatewayv2_api.{api}.execution_arn/");
    for f in &used_functions {
        let allowed = cfg
            .resources("aws_lambda_permission")
            .into_iter()
            .any(|(_, p)| {
                attr_str(p, "function_name").is_some_and(|n| {
                    reference_name(&n, "aws_lambda_function", &["function_name", "arn"])
                        == Some(f.as_str())
                }) && attr_str(p, "action").as_deref() == Some("lambda:InvokeFunction")
                    && attr_str(p, "principal").as_deref() == Some("apigateway.amazonaws.com")
                    && attr_str(p, "source_arn").is_some_and(|s| s.starts_with(&execution_arn))
            });
        if !allowed {
            errors.push(format!(
                "no aws_lambda_permission lets apigateway.amazonaws.com invoke aws_lambda_function.{f} with a source_arn under {execution_arn}"
            ));
        }
    }
    // ... for each of its routes (a route without one answers 500).
    for (key, f) in &expected {
        let Some((method, path)) = key.split_once(' ') else {
            continue;
        };
        let concrete: Vec<&str> = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect();
        let request = format!("$default/{method}{}", concrete.join("/"));
        if !permission_sources(cfg, f, &execution_arn)
            .iter()
            .any(|p| glob(p, &request))
        {
            errors.push(format!(
                "route `{key}`: no aws_lambda_permission lets API Gateway invoke aws_lambda_function.{f} for {request}"
            ));
        }
    }
    errors
}

/// The source ARNs, after the API's execution ARN, of the permissions that
/// let API Gateway invoke `function` (one per instance of a for_each).
fn permission_sources(cfg: &Config, function: &str, execution_arn: &str) -> Vec<String> {
    cfg.resources("aws_lambda_permission")
        .into_iter()
        .filter(|(_, p)| {
            attr_str(p, "function_name").is_some_and(|n| {
                reference_name(&n, "aws_lambda_function", &["function_name", "arn"])
                    == Some(function)
            }) && attr_str(p, "action").as_deref() == Some("lambda:InvokeFunction")
                && attr_str(p, "principal").as_deref() == Some("apigateway.amazonaws.com")
        })
        .filter_map(|(_, p)| {
            attr_str(p, "source_arn").and_then(|s| s.strip_prefix(execution_arn).map(String::from))
        })
        .collect()
}

/// The functions run the cargo-lambda build of their own binary.
fn check_functions(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    let functions = cfg.resources("aws_lambda_function");
    let names = set(functions.iter().map(|(n, _)| *n));
    if names != set([LIST, KEY, MANAGE]) {
        errors.push(format!(
            "expected aws_lambda_function {LIST}, {KEY} and {MANAGE}, found {names:?}"
        ));
    }
    for (name, f) in functions {
        let what = format!("aws_lambda_function.{name}");
        let key = instance_key(name).unwrap_or_default();
        for (key, value) in [("runtime", "provided.al2023"), ("handler", "bootstrap")] {
            if attr_str(f, key).as_deref() != Some(value) {
                errors.push(format!("{what}: {key} must be {value}"));
            }
        }
        // The architecture is the build's, never a second setting.
        if attr_list(f, "architectures").is_none_or(|a| a != ["local.architecture"]) {
            errors.push(format!(
                "{what}: architectures must be [local.architecture] (from the build manifest)"
            ));
        }
        let conditions: Vec<String> = sub_blocks(f, "lifecycle")
            .into_iter()
            .flat_map(|l| sub_blocks(l, "precondition"))
            .filter_map(|p| attr_str(p, "condition"))
            .collect();
        for (needle, why) in [
            ("local.build", "the build manifest exists"),
            (
                &format!(
                    "local.build.zips[{key:?}], null) == filebase64sha256(local.function_zips[{key:?}])"
                ) as &str,
                "the zip is the one the manifest describes",
            ),
            (
                "var.architecture == local.architecture",
                "var.architecture agrees with the build",
            ),
        ] {
            if !conditions.iter().any(|c| c.contains(needle)) {
                errors.push(format!(
                    "{what}: no lifecycle precondition checks that {why} (`{needle}`)"
                ));
            }
        }
        // The zip of this function's own binary, and its hash.
        let filename = attr_str(f, "filename").unwrap_or_default();
        if filename != format!("local.function_zips[{key:?}]") {
            errors.push(format!(
                "{what}: filename `{filename}` is not its package local.function_zips[{key:?}]"
            ));
        }
        if attr_str(f, "source_code_hash") != Some(format!("filebase64sha256({filename})")) {
            errors.push(format!(
                "{what}: source_code_hash must be filebase64sha256({filename})"
            ));
        }
    }
    errors.extend(check_build_and_zips(cfg));
    errors
}

/// The build manifest and each function's zip: where scripts/package.sh
/// writes them, and local.function_zips / local.functions naming them.
fn check_build_and_zips(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    // local.build reads the manifest scripts/package.sh writes.
    let locals: Vec<&Body> = cfg
        .blocks
        .iter()
        .filter(|b| b.identifier() == "locals")
        .map(|b| b.body())
        .collect();
    let local = |n: &str| {
        locals
            .iter()
            .find_map(|b| attr_str(b, n))
            .unwrap_or_default()
    };
    if !local("build").contains("jsondecode(file(local.build_manifest))")
        || !local("build_manifest").contains("var.build_manifest")
        || local("architecture") != "try(local.build.architecture, null)"
    {
        errors.push(
            "local.build / local.architecture must come from jsondecode(file(local.build_manifest))"
                .into(),
        );
    }
    let package_sh =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/package.sh"))
            .unwrap();
    let manifest = cfg
        .variable_default("build_manifest")
        .map(norm)
        .unwrap_or_default();
    if !manifest
        .strip_prefix("../")
        .is_some_and(|m| package_sh.contains(&format!("manifest={m}\n")))
    {
        errors.push(format!(
            "variable build_manifest: default `{manifest}` is not where scripts/package.sh writes the manifest"
        ));
    }
    // local.function_zips: each function's zip setting, relative to the module.
    let zips_ok = matches!(cfg.locals.expr("function_zips"), Some(Expression::ForExpr(f))
    if norm(&f.collection_expr) == "local.functions"
        && f.key_expr.as_ref().map(norm) == f.key_var.as_ref().map(|k| k.to_string())
        && {
            let value = norm(&f.value_expr);
            value.contains(&format!("{}.zip", f.value_var)) && value.contains("path.module")
        });
    if !zips_ok {
        errors.push(
            "local.function_zips must map each function of local.functions to its zip setting (relative to path.module)"
                .into(),
        );
    }
    for (var, binary) in [
        ("list_devices_zip", "list-devices"),
        ("get_recovery_key_zip", "get-recovery-key"),
        ("manage_keys_zip", "manage-keys"),
    ] {
        let setting = function_setting(cfg, binary, "zip");
        if setting.as_deref() != Some(&format!("var.{var}")) {
            errors.push(format!(
                "local.functions[{binary:?}].zip is {setting:?}, expected var.{var}"
            ));
        }
        if !package_sh.contains(&format!("\"{binary}\"")) {
            errors.push(format!(
                "scripts/package.sh does not record the hash of {binary}'s zip"
            ));
        }
        let default = cfg.variable_default(var).map(norm).unwrap_or_default();
        if default != format!("../target/lambda/{binary}/bootstrap.zip") {
            errors.push(format!(
                "variable {var}: default `{default}` is not cargo lambda's output for {binary}"
            ));
        }
    }
    errors
}

/// Environment the functions read (`src/config.rs`): name -> expected value.
/// The optional ones are only set when their variable is not empty.
const ENVIRONMENT: [(&str, &str, bool); 13] = [
    ("PORTAL_BACKEND", "aws", true),
    ("PORTAL_ISSUER", "var.jwt_issuer", true),
    ("PORTAL_AUDIENCE", "var.jwt_audience", true),
    (
        "PORTAL_KEY_RATE_LIMIT",
        "tostring(var.key_rate_limit)",
        true,
    ),
    ("PORTAL_TABLE_PREFIX", "var.name_prefix", true),
    ("PORTAL_KMS_KEY_ID", "aws_kms_key.recovery_keys.arn", true),
    // Namespace of the embedded-metric-format metrics (monitoring.tf).
    ("PORTAL_METRICS_NAMESPACE", "var.metrics_namespace", true),
    ("PORTAL_JWKS", "var.jwks_json", false),
    ("PORTAL_JWKS_URL", "var.jwks_url", false),
    ("PORTAL_DEFAULT_TENANT", "var.default_tenant", false),
    ("PORTAL_TENANT_CLAIM", "var.tenant_claim", false),
    ("PORTAL_USER_CLAIM", "var.user_claim", false),
    ("PORTAL_WEB_MAX_AGE", "tostring(var.portal_max_age)", false),
];

/// `(name, value, unconditional)` of every object entry in a `merge(...)`
/// of maps and conditionals.
fn environment_entries(
    expr: &Expression,
    unconditional: bool,
    out: &mut Vec<(String, String, bool)>,
) {
    match expr {
        Expression::Object(map) => {
            for (key, value) in map {
                let key = match key {
                    hcl::ObjectKey::Identifier(ident) => ident.as_str().to_owned(),
                    hcl::ObjectKey::Expression(e) => norm(e),
                    other => other.to_string(),
                };
                out.push((key, norm(value), unconditional));
            }
        }
        Expression::FuncCall(call) if call.name.name.as_str() == "merge" => {
            for arg in &call.args {
                environment_entries(arg, unconditional, out);
            }
        }
        Expression::Conditional(c) => {
            environment_entries(&c.true_expr, false, out);
            environment_entries(&c.false_expr, false, out);
        }
        Expression::Parenthesis(inner) => environment_entries(inner, unconditional, out),
        _ => {}
    }
}

/// Both functions get the configuration `src/config.rs` reads, under the
/// right names (a typo would only show up at the first cold start).
fn check_environment(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    for (name, f) in cfg.resources("aws_lambda_function") {
        let env = sub_blocks(f, "environment");
        if env.len() != 1
            || attr_str(env[0], "variables").as_deref() != Some("local.function_environment")
        {
            errors.push(format!(
                "aws_lambda_function.{name}: environment must be local.function_environment"
            ));
        }
    }
    let Some(expr) = cfg
        .blocks
        .iter()
        .filter(|b| b.identifier() == "locals")
        .find_map(|b| attr(b.body(), "function_environment"))
    else {
        return vec!["no local.function_environment".into()];
    };
    let mut entries = Vec::new();
    environment_entries(expr, true, &mut entries);
    for (key, value, _) in &entries {
        match ENVIRONMENT.iter().find(|(k, _, _)| k == key) {
            None => errors.push(format!(
                "local.function_environment: unknown variable {key}"
            )),
            Some((_, expected, _)) if value != expected => errors.push(format!(
                "local.function_environment: {key} = {value}, expected {expected}"
            )),
            Some(_) => {}
        }
    }
    for (key, _, required) in ENVIRONMENT {
        let found: Vec<bool> = entries
            .iter()
            .filter(|(k, _, _)| k == key)
            .map(|(_, _, u)| *u)
            .collect();
        if found.is_empty() {
            errors.push(format!("local.function_environment: {key} is missing"));
        } else if required && !found.contains(&true) {
            errors.push(format!(
                "local.function_environment: {key} must always be set"
            ));
        }
    }
    errors
}

/// Lambda's JSON log format (the only one with log-level filtering), with
/// both levels from variables whose allowed values the functions' filter
/// (`AWS_LAMBDA_LOG_LEVEL`, read by `src/telemetry.rs`) understands.
fn check_logging(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    for (name, f) in cfg.resources("aws_lambda_function") {
        let what = format!("aws_lambda_function.{name}");
        let logging = sub_blocks(f, "logging_config");
        let [logging] = logging.as_slice() else {
            errors.push(format!("{what}: needs one logging_config block"));
            continue;
        };
        for (key, value) in [
            ("log_format", "JSON"),
            ("application_log_level", "var.application_log_level"),
            ("system_log_level", "var.system_log_level"),
            (
                "log_group",
                &format!("aws_cloudwatch_log_group.{name}.name") as &str,
            ),
        ] {
            if attr_str(logging, key).as_deref() != Some(value) {
                errors.push(format!("{what}: logging_config.{key} must be {value}"));
            }
        }
    }
    for (var, lambda_levels) in [
        (
            "application_log_level",
            &["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"][..],
        ),
        ("system_log_level", &["DEBUG", "INFO", "WARN"][..]),
    ] {
        let allowed = variable_allowed_values(cfg, var);
        if allowed.is_empty() {
            errors.push(format!(
                "variable {var}: needs a validation contains([...], var.{var})"
            ));
        }
        let default = cfg.variable_default(var).map(norm).unwrap_or_default();
        if !allowed.contains(&default) {
            errors.push(format!(
                "variable {var}: default `{default}` is not allowed"
            ));
        }
        for level in &allowed {
            if !lambda_levels.contains(&level.as_str()) {
                errors.push(format!("variable {var}: Lambda has no level {level}"));
            }
            // Lambda passes the application level on as AWS_LAMBDA_LOG_LEVEL.
            if var == "application_log_level"
                && level
                    .parse::<tracing_subscriber::filter::LevelFilter>()
                    .is_err()
            {
                errors.push(format!(
                    "variable {var}: the functions' log filter does not understand {level}"
                ));
            }
        }
    }
    errors
}

/// The values a `validation { condition = contains([...], var.NAME) }` allows.
fn variable_allowed_values(cfg: &Config, name: &str) -> Vec<String> {
    let Some(var) = cfg
        .blocks
        .iter()
        .find(|b| b.identifier() == "variable" && label(b, 0) == Some(name))
    else {
        return Vec::new();
    };
    sub_blocks(var.body(), "validation")
        .into_iter()
        .filter_map(|v| attr(v, "condition"))
        .filter_map(|c| match c {
            Expression::FuncCall(call)
                if call.name.name.as_str() == "contains"
                    && call.args.get(1).map(norm) == Some(format!("var.{name}")) =>
            {
                match call.args.first() {
                    Some(Expression::Array(items)) => Some(items.iter().map(norm).collect()),
                    _ => None,
                }
            }
            _ => None,
        })
        .next()
        .unwrap_or_default()
}

/// (b) The list-devices role has no KMS permission at all.
fn check_list_role_has_no_kms(cfg: &Config) -> Vec<String> {
    let (role, statements) = match function_statements(cfg, LIST) {
        Ok(x) => x,
        Err(e) => return vec![e],
    };
    statements
        .iter()
        .filter(|st| !service_actions(st, "kms").is_empty())
        .map(|st| {
            format!(
                "list-devices role aws_iam_role.{role} must have no KMS permission, but {} allows {:?}",
                st.origin,
                service_actions(st, "kms")
            )
        })
        .collect()
}

/// (c) The get-recovery-key role may only `kms:Decrypt`, only the recovery-key
/// CMK, only with exactly the code's encryption-context keys.
fn check_key_role_kms(cfg: &Config) -> Vec<String> {
    let (role, statements) = match function_statements(cfg, KEY) {
        Ok(x) => x,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    let mut decrypt_statements = 0;
    for st in &statements {
        let kms = service_actions(st, "kms");
        if kms.is_empty() {
            continue;
        }
        if kms.iter().any(|a| !a.eq_ignore_ascii_case("kms:Decrypt")) {
            errors.push(format!(
                "aws_iam_role.{role}: kms:Decrypt must be the only KMS action, but {} allows {kms:?}",
                st.origin
            ));
        }
        if grants(st, "kms:Decrypt") {
            decrypt_statements += 1;
            if st.not_resources || st.resources != ["aws_kms_key.recovery_keys.arn"] {
                errors.push(format!(
                    "{}: kms:Decrypt must be on aws_kms_key.recovery_keys.arn only, found {:?}",
                    st.origin, st.resources
                ));
            }
            check_context_condition(st, &mut errors);
        }
    }
    if decrypt_statements == 0 {
        errors.push(format!(
            "aws_iam_role.{role} cannot kms:Decrypt recovery keys"
        ));
    }
    errors
}

/// Key policies: only the key function's role may decrypt recovery keys (with
/// the context condition), the list role is named nowhere, and the tables key
/// is usable by the account only through DynamoDB.
fn check_key_policies(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    let (list_role, key_role) = match (function_role(cfg, LIST), function_role(cfg, KEY)) {
        (Ok(l), Ok(k)) => (l, k),
        (l, k) => return [l.err(), k.err()].into_iter().flatten().collect(),
    };
    let key_policy = |key: &str| -> Result<Vec<Statement>, String> {
        let body = cfg
            .resource("aws_kms_key", key)
            .ok_or_else(|| format!("aws_kms_key.{key} does not exist"))?;
        let policy = attr_str(body, "policy")
            .ok_or_else(|| format!("aws_kms_key.{key} has no explicit key policy"))?;
        policy_statements(cfg, &policy, 0)
    };

    match key_policy("recovery_keys") {
        Err(e) => errors.push(e),
        Ok(statements) => {
            let list_arn = format!("aws_iam_role.{list_role}.arn");
            let key_arn = format!("aws_iam_role.{key_role}.arn");
            for st in &statements {
                let ids: Vec<&String> = st.principals.iter().flat_map(|(_, ids)| ids).collect();
                if ids.iter().any(|i| **i == list_arn) {
                    errors.push(format!(
                        "{}: the recovery-key CMK policy names the list-devices role",
                        st.origin
                    ));
                }
                // Anything that yields plaintext or hands out access.
                let sensitive = ["kms:Decrypt", "kms:ReEncryptFrom", "kms:CreateGrant"];
                if sensitive.iter().any(|a| grants(st, a)) {
                    // The key role, and the operators who run `portal keys
                    // verify` (a validated variable, empty by default).
                    let with_operators =
                        format!("concat([{key_arn}], var.keys_verify_principal_arns)");
                    let only_key_role = !st.not_principals
                        && st.principals.len() == 1
                        && st.principals[0].0 == "AWS"
                        && (st.principals[0].1 == [key_arn.clone()]
                            || st.principals[0].1 == [with_operators]);
                    if !only_key_role {
                        errors.push(format!(
                            "{}: only aws_iam_role.{key_role} may decrypt with the recovery-key CMK, found principals {:?}",
                            st.origin, st.principals
                        ));
                    }
                    check_context_condition(st, &mut errors);
                }
            }
        }
    }

    match key_policy("tables") {
        Err(e) => errors.push(e),
        Ok(statements) => {
            for st in statements.iter().filter(|st| st.allow) {
                let wildcard = st.not_principals
                    || st
                        .principals
                        .iter()
                        .any(|(t, ids)| t == "AWS" && ids.iter().any(|i| i == "*"));
                if !wildcard {
                    continue;
                }
                let via_dynamodb =
                    st.condition("StringEquals", "kms:ViaService")
                        .is_some_and(|c| {
                            !c.values.is_empty()
                                && c.values.iter().all(|v| v.starts_with("dynamodb."))
                        });
                let own_account = st
                    .condition("StringEquals", "kms:CallerAccount")
                    .is_some_and(|c| c.values == ["local.account_id"]);
                if !(via_dynamodb && own_account) {
                    errors.push(format!(
                        "{}: a wildcard principal needs kms:ViaService = dynamodb.<region> and kms:CallerAccount = this account",
                        st.origin
                    ));
                }
            }
        }
    }
    errors
}

/// The import policy can seal keys (Encrypt, with the context) but never
/// decrypt, and can record ownership changes in the audit trail.
fn check_import_policy(cfg: &Config) -> Vec<String> {
    let statements = match managed_policy_statements(cfg, "aws_iam_policy.import.arn") {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    let mut encrypt = 0;
    for st in &statements {
        let kms = service_actions(st, "kms");
        if kms.iter().any(|a| !a.eq_ignore_ascii_case("kms:Encrypt")) {
            errors.push(format!(
                "{}: the import policy's only KMS action must be kms:Encrypt, found {kms:?}",
                st.origin
            ));
        }
        if grants(st, "kms:Encrypt") {
            encrypt += 1;
            if st.resources != ["aws_kms_key.recovery_keys.arn"] {
                errors.push(format!(
                    "{}: kms:Encrypt must be on aws_kms_key.recovery_keys.arn only",
                    st.origin
                ));
            }
            check_context_condition(st, &mut errors);
        }
    }
    if encrypt == 0 {
        errors.push("the import policy cannot kms:Encrypt recovery keys".into());
    }
    // `portal import` records ownership changes in the audit trail.
    if !statements
        .iter()
        .any(|st| grants(st, "dynamodb:PutItem") && statement_covers(st, Target::Table("audit")))
    {
        errors.push(
            "the import policy cannot dynamodb:PutItem on the audit table (ownership changes are audited)"
                .into(),
        );
    }
    errors
}

/// (d) The DynamoDB tables are exactly `schema::ALL_TABLES`.
fn check_tables(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    let tables = cfg.resources("aws_dynamodb_table");
    let logical_of = |body: &Body| {
        attr_str(body, "name").and_then(|n| n.strip_prefix("var.name_prefix-").map(String::from))
    };
    let found = set(tables.iter().filter_map(|(_, b)| logical_of(b)));
    let expected = set(schema::ALL_TABLES.map(|t| t.logical));
    if found != expected || tables.len() != expected.len() {
        errors.push(format!(
            "tables (named \"${{var.name_prefix}}-<logical>\") must be exactly {expected:?}, found {found:?} among {} aws_dynamodb_table",
            tables.len()
        ));
    }

    for def in schema::ALL_TABLES {
        let Some((res, t)) = tables
            .iter()
            .find(|(_, b)| logical_of(b).as_deref() == Some(def.logical))
        else {
            continue;
        };
        let what = format!("aws_dynamodb_table.{res} ({})", def.logical);

        if attr_str(t, "hash_key").as_deref() != Some(def.hash) {
            errors.push(format!("{what}: hash_key must be {}", def.hash));
        }
        if attr_str(t, "range_key").as_deref() != def.range {
            errors.push(format!(
                "{what}: range_key must be {:?}, found {:?}",
                def.range,
                attr_str(t, "range_key")
            ));
        }

        let attributes: Vec<(String, String)> = sub_blocks(t, "attribute")
            .into_iter()
            .map(|a| {
                (
                    attr_str(a, "name").unwrap_or_default(),
                    attr_str(a, "type").unwrap_or_default(),
                )
            })
            .collect();
        let expected_attrs: BTreeSet<(String, String)> = def
            .key_attributes()
            .into_iter()
            .map(|a| (a.to_string(), "S".to_string()))
            .collect();
        let found_attrs: BTreeSet<(String, String)> = attributes.iter().cloned().collect();
        if found_attrs != expected_attrs || attributes.len() != expected_attrs.len() {
            errors.push(format!(
                "{what}: attribute definitions must be exactly {expected_attrs:?} (all S), found {attributes:?}"
            ));
        }

        if has_dynamic(t, "global_secondary_index")
            || !sub_blocks(t, "local_secondary_index").is_empty()
        {
            errors.push(format!(
                "{what}: indexes must be static global_secondary_index blocks"
            ));
        }
        let gsis = sub_blocks(t, "global_secondary_index");
        let gsi_names: Vec<String> = gsis
            .iter()
            .map(|g| attr_str(g, "name").unwrap_or_default())
            .collect();
        let expected_names = set(def.indexes.iter().map(|i| i.name));
        if set(gsi_names.clone()) != expected_names || gsi_names.len() != expected_names.len() {
            errors.push(format!("{what}: global secondary indexes must be exactly {expected_names:?}, found {gsi_names:?}"));
        }
        for ix in def.indexes {
            let Some(g) = gsis
                .iter()
                .find(|g| attr_str(g, "name").as_deref() == Some(ix.name))
            else {
                continue;
            };
            let iwhat = format!("{what} index {}", ix.name);
            if attr_str(g, "hash_key").as_deref() != Some(ix.hash) {
                errors.push(format!("{iwhat}: hash_key must be {}", ix.hash));
            }
            if attr_str(g, "range_key").as_deref() != ix.range {
                errors.push(format!("{iwhat}: range_key must be {:?}", ix.range));
            }
            let projection = attr_str(g, "projection_type").unwrap_or_default();
            let non_key = attr_list(g, "non_key_attributes");
            match ix.projection {
                schema::Projection::All => {
                    if projection != "ALL" || non_key.is_some() {
                        errors.push(format!(
                            "{iwhat}: projection must be ALL without non_key_attributes"
                        ));
                    }
                }
                schema::Projection::Include(attrs) => {
                    let non_key = non_key.unwrap_or_default();
                    if projection != "INCLUDE"
                        || set(non_key.clone()) != set(attrs.iter().copied())
                        || non_key.len() != attrs.len()
                    {
                        errors.push(format!(
                            "{iwhat}: projection must be INCLUDE {attrs:?}, found {projection} {non_key:?}"
                        ));
                    }
                }
            }
        }

        let ttl = sub_blocks(t, "ttl");
        let ttl_attr = ttl
            .first()
            .filter(|b| attr_str(b, "enabled").as_deref() == Some("true"))
            .and_then(|b| attr_str(b, "attribute_name"));
        if ttl.len() > 1 || ttl_attr.as_deref() != def.ttl {
            errors.push(format!(
                "{what}: TTL must be {:?}, found {ttl_attr:?}",
                def.ttl
            ));
        }

        // Settings common to all tables.
        if attr_str(t, "billing_mode").as_deref() != Some("PAY_PER_REQUEST") {
            errors.push(format!("{what}: billing_mode must be PAY_PER_REQUEST"));
        }
        if attr_str(t, "deletion_protection_enabled").as_deref() != Some("var.deletion_protection")
        {
            errors.push(format!(
                "{what}: deletion_protection_enabled must be var.deletion_protection"
            ));
        }
        let pitr = sub_blocks(t, "point_in_time_recovery");
        if pitr.len() != 1 || attr_str(pitr[0], "enabled").as_deref() != Some("true") {
            errors.push(format!("{what}: point-in-time recovery must be enabled"));
        }
        let sse = sub_blocks(t, "server_side_encryption");
        if sse.len() != 1
            || attr_str(sse[0], "enabled").as_deref() != Some("true")
            || attr_str(sse[0], "kms_key_arn").as_deref() != Some("aws_kms_key.tables.arn")
        {
            errors.push(format!("{what}: server-side encryption must use aws_kms_key.tables.arn (not the recovery-key CMK)"));
        }
    }
    errors
}

/// Every statement of every role and managed policy of the configuration.
fn all_role_and_policy_statements(cfg: &Config) -> Result<Vec<Statement>, String> {
    let mut out = Vec::new();
    for (role, _) in cfg.resources("aws_iam_role") {
        out.extend(role_statements(cfg, role)?);
    }
    for (policy, _) in cfg.resources("aws_iam_policy") {
        out.extend(managed_policy_statements(
            cfg,
            &format!("aws_iam_policy.{policy}.arn"),
        )?);
    }
    Ok(out)
}

/// (e) Audit events are append-only: no role or policy may update or delete
/// them. BatchWriteItem (which deletes too) and PartiQL writes count as well.
fn check_audit_append_only(cfg: &Config) -> Vec<String> {
    let statements = match all_role_and_policy_statements(cfg) {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let forbidden = [
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:PartiQLUpdate",
        "dynamodb:PartiQLDelete",
    ];
    let mut errors = Vec::new();
    for st in &statements {
        if !statement_covers(st, Target::Table("audit")) {
            continue;
        }
        for action in forbidden {
            if grants(st, action) {
                errors.push(format!("{}: allows {action} on the audit table", st.origin));
            }
        }
    }
    errors
}

/// The list function writes no audit event (only key retrievals are
/// audited, by the get-recovery-key function), so its role may not write
/// the audit table in any way.
fn check_list_role_cannot_write_audit(cfg: &Config) -> Vec<String> {
    let (role, statements) = match function_statements(cfg, LIST) {
        Ok(x) => x,
        Err(e) => return vec![e],
    };
    let writes = [
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:PartiQLInsert",
        "dynamodb:PartiQLUpdate",
        "dynamodb:PartiQLDelete",
    ];
    let mut errors = Vec::new();
    for st in &statements {
        if !statement_covers(st, Target::Table("audit")) {
            continue;
        }
        for action in writes {
            if grants(st, action) {
                errors.push(format!(
                    "list-devices role aws_iam_role.{role}: {} allows {action} on the audit table",
                    st.origin
                ));
            }
        }
    }
    errors
}

/// (f) The list role never reaches the devices base table (device items hold
/// ciphertext) except `GetItem` restricted to tenant items (`pk = T#...`),
/// and only queries the devices indexes.
fn check_list_role_devices_access(cfg: &Config) -> Vec<String> {
    let (role, statements) = match function_statements(cfg, LIST) {
        Ok(x) => x,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    let mut tenant_get = false;
    for st in &statements {
        let dynamo = service_actions(st, "dynamodb");
        if dynamo.is_empty() {
            continue;
        }
        if statement_covers(st, Target::Table("devices")) {
            let leading_keys = st.condition("ForAllValues:StringLike", "dynamodb:LeadingKeys");
            let only_get = dynamo.len() == 1 && dynamo[0].eq_ignore_ascii_case("dynamodb:GetItem");
            if !only_get || leading_keys.is_none_or(|c| c.values != ["T#*"]) {
                errors.push(format!(
                    "{}: the list-devices role may only GetItem tenant items (ForAllValues:StringLike dynamodb:LeadingKeys = [\"T#*\"]) on the devices table, found {dynamo:?} with conditions {:?}",
                    st.origin, st.conditions
                ));
            } else {
                tenant_get = true;
            }
        }
        for index in schema::DEVICES.indexes {
            if statement_covers(st, Target::Index("devices", index.name))
                && dynamo
                    .iter()
                    .any(|a| !a.eq_ignore_ascii_case("dynamodb:Query"))
            {
                errors.push(format!(
                    "{}: only dynamodb:Query is allowed on devices index {}, found {dynamo:?}",
                    st.origin, index.name
                ));
            }
        }
    }
    if !tenant_get {
        errors.push(format!(
            "aws_iam_role.{role} cannot read tenant items (GetItem with LeadingKeys T#*)"
        ));
    }
    // The indexes it serves from (by_rotation is the manage function's).
    for index in [schema::BY_OWNER, schema::BY_KEY] {
        if !statements.iter().any(|st| {
            grants(st, "dynamodb:Query")
                && statement_covers(st, Target::Index("devices", index.name))
        }) {
            errors.push(format!(
                "aws_iam_role.{role} cannot query devices index {}",
                index.name
            ));
        }
    }
    errors
}

/// A manage-keys statement on the rate-limit table: UpdateItem of the
/// denied-event counters only, on that table only.
fn only_counts_denials(st: &Statement, dynamo: &[String]) -> bool {
    let leading = st.condition("ForAllValues:StringLike", "dynamodb:LeadingKeys");
    let present = st.condition("Null", "dynamodb:LeadingKeys");
    dynamo.len() == 1
        && dynamo[0].eq_ignore_ascii_case("dynamodb:UpdateItem")
        && !st.not_resources
        && st.resources == ["aws_dynamodb_table.rate_limits.arn"]
        && leading.is_some_and(|c| c.values == ["*#denied#*"])
        && present.is_some_and(|c| c.values == ["false"])
}

/// (g) The manage-keys role seals but never decrypts: its only KMS action is
/// `kms:Encrypt` on the recovery-key CMK with exactly the code's context
/// keys. It writes the devices table (and its by_rotation index is all it
/// queries besides the table), appends to the audit table (PutItem only),
/// reaches the rate-limit table only to count refused writes (UpdateItem on
/// the `<tenant>#<user>#denied#<hour>` items), and has no other service.
fn check_manage_role(cfg: &Config) -> Vec<String> {
    let (role, statements) = match function_statements(cfg, MANAGE) {
        Ok(x) => x,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    let mut encrypt = 0;
    let mut writes_devices = false;
    let mut appends_audit = false;
    for st in statements.iter().filter(|st| st.allow) {
        let kms = service_actions(st, "kms");
        if kms.iter().any(|a| !a.eq_ignore_ascii_case("kms:Encrypt")) {
            errors.push(format!(
                "aws_iam_role.{role}: kms:Encrypt must be its only KMS action, but {} allows {kms:?}",
                st.origin
            ));
        }
        if grants(st, "kms:Encrypt") {
            encrypt += 1;
            if st.not_resources || st.resources != ["aws_kms_key.recovery_keys.arn"] {
                errors.push(format!(
                    "{}: kms:Encrypt must be on aws_kms_key.recovery_keys.arn only, found {:?}",
                    st.origin, st.resources
                ));
            }
            check_context_condition(st, &mut errors);
        }
        let dynamo = service_actions(st, "dynamodb");
        let others: Vec<&String> = st
            .actions
            .iter()
            .filter(|a| {
                !["kms", "dynamodb", "logs", "xray"]
                    .iter()
                    .any(|s| touches_service(a, s))
                    || a.as_str() == "*"
            })
            .collect();
        if st.not_actions || !others.is_empty() {
            errors.push(format!(
                "{}: the manage-keys role may only use logs, DynamoDB and KMS, found {:?}",
                st.origin, st.actions
            ));
        }
        if dynamo.is_empty() {
            continue;
        }
        let counts_denials = statement_covers(st, Target::Table("rate_limits"));
        if counts_denials && !only_counts_denials(st, &dynamo) {
            errors.push(format!(
                "{}: on the rate-limit table the manage-keys role may only UpdateItem the denied-event counters (ForAllValues:StringLike dynamodb:LeadingKeys = [\"*#denied#*\"], not Null), found {dynamo:?} on {:?} with conditions {:?}",
                st.origin, st.resources, st.conditions
            ));
        }
        if statement_covers(st, Target::Table("audit")) {
            if dynamo.len() == 1 && dynamo[0].eq_ignore_ascii_case("dynamodb:PutItem") {
                appends_audit = true;
            } else {
                errors.push(format!(
                    "{}: on the audit table the manage-keys role may only PutItem, found {dynamo:?}",
                    st.origin
                ));
            }
        }
        let allowed = |r: &String| {
            r == "aws_dynamodb_table.devices.arn"
                || r == "aws_dynamodb_table.audit.arn"
                || (counts_denials && r == "aws_dynamodb_table.rate_limits.arn")
                || *r
                    == format!(
                        "aws_dynamodb_table.devices.arn/index/{}",
                        schema::BY_ROTATION.name
                    )
        };
        if st.not_resources || !st.resources.iter().all(allowed) {
            errors.push(format!(
                "{}: the manage-keys role's DynamoDB access must name the devices table, its by_rotation index or the audit table, found {:?}",
                st.origin, st.resources
            ));
        }
        if grants(st, "dynamodb:PutItem") && statement_covers(st, Target::Table("devices")) {
            writes_devices = true;
        }
    }
    if encrypt == 0 {
        errors.push(format!(
            "aws_iam_role.{role} cannot kms:Encrypt (escrow seals keys)"
        ));
    }
    if !writes_devices {
        errors.push(format!(
            "aws_iam_role.{role} cannot write the devices table"
        ));
    }
    if !appends_audit {
        errors.push(format!("aws_iam_role.{role} cannot append audit events"));
    }
    if !statements.iter().any(|st| {
        grants(st, "dynamodb:Query")
            && statement_covers(st, Target::Index("devices", schema::BY_ROTATION.name))
    }) {
        errors.push(format!("aws_iam_role.{role} cannot query by_rotation"));
    }
    // On the devices table: what the lifecycle and the incidents need (an
    // incident is a TransactWriteItems of a ConditionCheck, Puts and Updates
    // with the audit Put; listing them is a Query), and nothing more.
    let on_devices: BTreeSet<String> = statements
        .iter()
        .filter(|st| statement_covers(st, Target::Table("devices")))
        .flat_map(|st| service_actions(st, "dynamodb"))
        .collect();
    if on_devices != set(MANAGE_DEVICES_ACTIONS) {
        errors.push(format!(
            "aws_iam_role.{role}: DynamoDB actions on the devices table must be exactly {MANAGE_DEVICES_ACTIONS:?}, found {on_devices:?}"
        ));
    }
    errors
}

/// The manage-keys role's actions on the devices table. No deletes:
/// retirement sets a TTL and only DynamoDB deletes, when retention ends.
const MANAGE_DEVICES_ACTIONS: [&str; 5] = [
    "dynamodb:BatchGetItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
];

/// The $default stage throttles every route below the shared KMS quota and
/// writes access logs.
fn check_stage(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    let stages = cfg.resources("aws_apigatewayv2_stage");
    let [(name, stage)] = stages.as_slice() else {
        return vec![format!(
            "expected exactly one aws_apigatewayv2_stage, found {}",
            stages.len()
        )];
    };
    let what = format!("aws_apigatewayv2_stage.{name}");
    if attr_str(stage, "name").as_deref() != Some("$default")
        || attr_str(stage, "auto_deploy").as_deref() != Some("true")
    {
        errors.push(format!("{what}: must be the auto-deployed $default stage"));
    }
    let settings = sub_blocks(stage, "default_route_settings");
    let throttled = settings.len() == 1
        && attr_str(settings[0], "throttling_rate_limit").as_deref()
            == Some("var.throttle_rate_limit")
        && attr_str(settings[0], "throttling_burst_limit").as_deref()
            == Some("var.throttle_burst_limit");
    if !throttled {
        errors.push(format!("{what}: default_route_settings must throttle with var.throttle_rate_limit / var.throttle_burst_limit"));
    }
    // The default KMS request quota (10,000/s) is shared by the whole account.
    for var in ["throttle_rate_limit", "throttle_burst_limit"] {
        let default = cfg
            .variable_default(var)
            .map(norm)
            .and_then(|d| d.parse::<f64>().ok());
        if default.is_none_or(|d| d <= 0.0 || d > 5000.0) {
            errors.push(format!("variable {var}: default {default:?} must be positive and at most half the 10,000/s KMS quota"));
        }
    }
    let logs = sub_blocks(stage, "access_log_settings");
    if logs.len() != 1
        || attr_str(logs[0], "destination_arn")
            .is_none_or(|d| !d.starts_with("aws_cloudwatch_log_group."))
    {
        errors.push(format!(
            "{what}: access logs must go to a CloudWatch log group"
        ));
    }
    errors
}

// ---------------------------------------------------------------------------
// The portal page (portal.tf) and the API's CORS
// ---------------------------------------------------------------------------

/// A `locals` value by name.
fn local<'a>(cfg: &'a Config, name: &str) -> Option<&'a Expression> {
    cfg.blocks
        .iter()
        .filter(|b| b.identifier() == "locals")
        .find_map(|b| attr(b.body(), name))
}

/// An attribute's text with one level of `local.NAME` resolved.
fn attr_text(cfg: &Config, body: &Body, key: &str) -> Option<String> {
    let text = attr_str(body, key)?;
    match text.strip_prefix("local.").and_then(|n| local(cfg, n)) {
        Some(e) => Some(norm(e)),
        None => Some(text),
    }
}

fn object_keys(expr: &Expression) -> BTreeSet<String> {
    match expr {
        Expression::Object(o) => o
            .iter()
            .map(|(k, _)| match k {
                hcl::expr::ObjectKey::Identifier(i) => i.to_string(),
                hcl::expr::ObjectKey::Expression(e) => norm(e),
                other => format!("{other:?}"),
            })
            .collect(),
        _ => BTreeSet::new(),
    }
}

fn is_true(body: &Body, key: &str) -> bool {
    attr_str(body, key).as_deref() == Some("true")
}

/// The one `<ty>` resource whose `bucket` is the portal bucket.
fn for_portal_bucket<'a>(cfg: &'a Config, ty: &str) -> Option<&'a Body> {
    cfg.resources(ty)
        .into_iter()
        .find(|(_, b)| attr_str(b, "bucket").as_deref() == Some("aws_s3_bucket.portal.id"))
        .map(|(_, b)| b)
}

/// The page's bucket is private: all public access blocked, versioned,
/// encrypted, and its policy lets only this CloudFront distribution read.
fn check_portal_bucket(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    if cfg.resource("aws_s3_bucket", "portal").is_none() {
        return vec!["no aws_s3_bucket.portal".into()];
    }
    match for_portal_bucket(cfg, "aws_s3_bucket_public_access_block") {
        Some(b) => {
            for key in [
                "block_public_acls",
                "block_public_policy",
                "ignore_public_acls",
                "restrict_public_buckets",
            ] {
                if !is_true(b, key) {
                    errors.push(format!(
                        "portal bucket public access block: {key} must be true"
                    ));
                }
            }
        }
        None => errors.push("portal bucket has no public access block".into()),
    }
    let versioned = for_portal_bucket(cfg, "aws_s3_bucket_versioning").is_some_and(|b| {
        sub_blocks(b, "versioning_configuration")
            .first()
            .is_some_and(|v| attr_str(v, "status").as_deref() == Some("Enabled"))
    });
    if !versioned {
        errors.push("portal bucket: versioning must be Enabled".into());
    }
    if for_portal_bucket(cfg, "aws_s3_bucket_server_side_encryption_configuration").is_none() {
        errors.push("portal bucket: no server-side encryption configuration".into());
    }
    let Some(policy) =
        for_portal_bucket(cfg, "aws_s3_bucket_policy").and_then(|b| attr_str(b, "policy"))
    else {
        errors.push("portal bucket has no bucket policy".into());
        return errors;
    };
    let statements = match policy_statements(cfg, &policy, 0) {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let allows: Vec<&Statement> = statements.iter().filter(|s| s.allow).collect();
    if allows.is_empty() {
        errors.push("portal bucket policy: CloudFront is not allowed to read".into());
    }
    for st in allows {
        let cloudfront_only = !st.not_principals
            && !st.principals.is_empty()
            && st.principals.iter().all(|(ty, ids)| {
                ty == "Service" && ids.iter().all(|i| i == "cloudfront.amazonaws.com")
            });
        if !cloudfront_only {
            errors.push(format!(
                "{}: only the CloudFront service may be allowed, got {:?}",
                st.origin, st.principals
            ));
        }
        if st.not_actions || st.actions != ["s3:GetObject"] {
            errors.push(format!(
                "{}: CloudFront needs s3:GetObject only, got {:?}",
                st.origin, st.actions
            ));
        }
        let this_distribution = st
            .condition("StringEquals", "AWS:SourceArn")
            .is_some_and(|c| c.values == ["aws_cloudfront_distribution.portal.arn"]);
        if !this_distribution {
            errors.push(format!(
                "{}: must be limited to this distribution (StringEquals AWS:SourceArn)",
                st.origin
            ));
        }
    }
    errors
}

/// CloudFront reads the bucket through origin access control, only over
/// HTTPS, and adds the page's security headers.
fn check_portal_distribution(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(dist) = cfg.resource("aws_cloudfront_distribution", "portal") else {
        return vec!["no aws_cloudfront_distribution.portal".into()];
    };
    let origins = sub_blocks(dist, "origin");
    let via_oac = origins.len() == 1
        && attr_str(origins[0], "domain_name").as_deref()
            == Some("aws_s3_bucket.portal.bucket_regional_domain_name")
        && attr_str(origins[0], "origin_access_control_id")
            .and_then(|r| {
                reference_name(&r, "aws_cloudfront_origin_access_control", &["id"])
                    .map(str::to_owned)
            })
            .and_then(|name| cfg.resource("aws_cloudfront_origin_access_control", &name))
            .is_some_and(|oac| {
                attr_str(oac, "signing_behavior").as_deref() == Some("always")
                    && attr_str(oac, "origin_access_control_origin_type").as_deref() == Some("s3")
            });
    if !via_oac {
        errors.push("distribution: its one origin must be the portal bucket, read through an origin access control that always signs".into());
    }
    let behaviors = sub_blocks(dist, "default_cache_behavior");
    let Some(behavior) = behaviors.first() else {
        return vec!["distribution: no default_cache_behavior".into()];
    };
    if !matches!(
        attr_str(behavior, "viewer_protocol_policy").as_deref(),
        Some("redirect-to-https" | "https-only")
    ) {
        errors.push("distribution: viewers must be sent to HTTPS".into());
    }
    let Some(policy) = attr_str(behavior, "response_headers_policy_id")
        .and_then(|r| {
            reference_name(&r, "aws_cloudfront_response_headers_policy", &["id"]).map(str::to_owned)
        })
        .and_then(|name| cfg.resource("aws_cloudfront_response_headers_policy", &name))
    else {
        errors.push("distribution: no response headers policy on the default behavior".into());
        return errors;
    };
    let Some(sec) = sub_blocks(policy, "security_headers_config")
        .first()
        .copied()
    else {
        return vec!["response headers policy: no security_headers_config".into()];
    };
    let block = |name: &str| sub_blocks(sec, name).first().copied();
    match block("content_security_policy")
        .and_then(|b| attr_text(cfg, b, "content_security_policy"))
    {
        Some(csp) => {
            for directive in [
                "default-src 'self'",
                "script-src 'self'",
                "style-src 'self'",
                "frame-ancestors 'none'",
                "base-uri 'none'",
                "object-src 'none'",
                "connect-src",
            ] {
                if !csp.contains(directive) {
                    errors.push(format!("CSP lacks {directive}: {csp}"));
                }
            }
            if csp.contains("unsafe-") || csp.contains("data:") {
                errors.push(format!("CSP allows inline code or data: URLs: {csp}"));
            }
        }
        None => errors.push("response headers policy: no Content-Security-Policy".into()),
    }
    let hsts_ok = block("strict_transport_security").is_some_and(|b| {
        attr_str(b, "access_control_max_age_sec")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|age| age >= 31_536_000)
            && is_true(b, "include_subdomains")
    });
    if !hsts_ok {
        errors.push("response headers policy: HSTS of at least a year with subdomains".into());
    }
    if block("referrer_policy")
        .and_then(|b| attr_str(b, "referrer_policy"))
        .as_deref()
        != Some("no-referrer")
    {
        errors.push("response headers policy: Referrer-Policy must be no-referrer".into());
    }
    if block("content_type_options").is_none() {
        errors.push("response headers policy: X-Content-Type-Options nosniff missing".into());
    }
    if block("frame_options")
        .and_then(|b| attr_str(b, "frame_option"))
        .as_deref()
        != Some("DENY")
    {
        errors.push("response headers policy: X-Frame-Options must be DENY".into());
    }
    for name in [
        "content_security_policy",
        "strict_transport_security",
        "referrer_policy",
        "content_type_options",
        "frame_options",
    ] {
        if block(name).is_some_and(|b| !is_true(b, "override")) {
            errors.push(format!(
                "response headers policy: {name} must override the origin's"
            ));
        }
    }
    errors
}

/// Every file of web/ is uploaded with a content type, and config.json is
/// written from the variables with the four fields the page reads.
fn check_portal_content(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    let objects = cfg.resources("aws_s3_object");
    let files = objects
        .iter()
        .find(|(_, b)| attr_str(b, "for_each").is_some_and(|f| f.contains("fileset(")));
    match files {
        Some((name, b)) => {
            let dir = attr_text(cfg, b, "for_each").unwrap_or_default();
            let web = local(cfg, "portal_web_dir").map(norm).unwrap_or_default();
            if !(dir.contains("../web")
                || (dir.contains("local.portal_web_dir") && web.ends_with("/../web")))
            {
                errors.push(format!(
                    "aws_s3_object.{name}: must upload every file of web/ ({dir})"
                ));
            }
            if attr_str(b, "bucket").as_deref() != Some("aws_s3_bucket.portal.id") {
                errors.push(format!(
                    "aws_s3_object.{name}: must go to the portal bucket"
                ));
            }
            let types = attr_str(b, "content_type")
                .unwrap_or_default()
                .contains("local.portal_content_types");
            let known = local(cfg, "portal_content_types")
                .map(object_keys)
                .unwrap_or_default();
            if !types {
                errors.push(format!(
                    "aws_s3_object.{name}: content_type must come from local.portal_content_types"
                ));
            }
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
            for entry in std::fs::read_dir(&dir).expect("web/") {
                let file = entry.unwrap().file_name().into_string().unwrap();
                let ext = file.rsplit('.').next().unwrap_or_default().to_owned();
                if !known.contains(&ext) {
                    errors.push(format!(
                        "web/{file}: no content type for .{ext} in local.portal_content_types"
                    ));
                }
            }
        }
        None => errors.push("no aws_s3_object uploads web/ (for_each over fileset)".into()),
    }
    let config = objects
        .iter()
        .find(|(_, b)| attr_str(b, "key").as_deref() == Some("config.json"));
    match config {
        Some((name, b)) => {
            let content = attr_str(b, "content").unwrap_or_default();
            let fields = content
                .strip_prefix("jsonencode(local.")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|l| local(cfg, l));
            let keys = fields.map(object_keys).unwrap_or_default();
            if keys
                != set([
                    "issuer",
                    "client_id",
                    "scopes",
                    "api_base_url",
                    "auth_params",
                    "max_age",
                ])
            {
                errors.push(format!("aws_s3_object.{name}: config.json must be jsonencode(local....) of issuer, client_id, scopes, api_base_url, auth_params, max_age; got {keys:?}"));
            }
            if let Some(Expression::Object(o)) = fields {
                let value = |k: &str| {
                    o.iter()
                        .find(|(key, _)| matches!(key, hcl::expr::ObjectKey::Identifier(i) if i.as_str() == k))
                        .map(|(_, v)| norm(v))
                        .unwrap_or_default()
                };
                if value("issuer") != "var.jwt_issuer" {
                    errors.push(
                        "config.json: issuer must be var.jwt_issuer (the tokens' iss)".into(),
                    );
                }
                if value("auth_params") != "var.portal_auth_params" {
                    errors.push("config.json: auth_params must be var.portal_auth_params".into());
                }
                if !value("max_age").contains("var.portal_max_age") {
                    errors.push("config.json: max_age must come from var.portal_max_age".into());
                }
                if !value("api_base_url").contains("aws_apigatewayv2_stage.default.invoke_url") {
                    errors.push(
                        "config.json: api_base_url must default to this stack's stage".into(),
                    );
                }
            }
            if attr_str(b, "content_type").as_deref() != Some("application/json") {
                errors.push(format!(
                    "aws_s3_object.{name}: content_type must be application/json"
                ));
            }
        }
        None => errors.push("no aws_s3_object writes config.json".into()),
    }
    let url = cfg
        .blocks
        .iter()
        .find(|b| b.identifier() == "output" && label(b, 0) == Some("portal_url"))
        .and_then(|b| attr_str(b.body(), "value"));
    if !url.is_some_and(|u| {
        u.starts_with("local.portal_origin")
            || u.contains("aws_cloudfront_distribution.portal.domain_name")
    }) {
        errors.push("output portal_url must give the distribution's URL".into());
    }
    errors
}

/// The API lets the portal's origin call it: the request headers the page
/// sends, the response headers it reads, and by default the distribution.
fn check_api_cors(cfg: &Config) -> Vec<String> {
    let Some(api) = cfg.resource("aws_apigatewayv2_api", "portal") else {
        return vec!["no aws_apigatewayv2_api.portal".into()];
    };
    let cors = sub_blocks(api, "cors_configuration");
    let [cors] = cors.as_slice() else {
        return vec![
            "aws_apigatewayv2_api.portal: needs one (non-dynamic) cors_configuration".into(),
        ];
    };
    let mut errors = Vec::new();
    let lower = |key: &str| -> BTreeSet<String> {
        attr_list(cors, key)
            .unwrap_or_default()
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect()
    };
    for (key, needed) in [
        (
            "allow_headers",
            ["authorization", "content-type", "x-request-id"],
        ),
        (
            "expose_headers",
            ["retry-after", "x-request-id", "www-authenticate"],
        ),
    ] {
        let have = lower(key);
        for h in needed {
            if !have.contains(h) {
                errors.push(format!("CORS {key} lacks {h}"));
            }
        }
    }
    // Exactly the routes' methods: a browser's preflight for a write route
    // (PUT, PATCH, DELETE) fails unless its method is allowed.
    let methods = lower("allow_methods");
    let routed = set(expected_routes().into_iter().map(|(k, _)| {
        k.split_once(' ')
            .map(|(m, _)| m.to_ascii_lowercase())
            .unwrap_or_default()
    }));
    if methods != routed {
        errors.push(format!(
            "CORS allow_methods must be the routes' methods {routed:?}, got {methods:?}"
        ));
    }
    let origins = attr_str(cors, "allow_origins").unwrap_or_default();
    if !(origins.contains("var.cors_allow_origins")
        && origins.contains("aws_cloudfront_distribution.portal.domain_name"))
    {
        errors.push(format!(
            "CORS allow_origins must default to the portal distribution: {origins}"
        ));
    }
    errors
}

// ---------------------------------------------------------------------------
// Monitoring (monitoring.tf), capacity settings, operators
// ---------------------------------------------------------------------------

/// The metrics the functions write (embedded metric format) in the
/// `var.metrics_namespace` namespace: each without dimensions, and some also
/// by the one dimension named here.
const METRICS: [(&str, Option<&str>); 13] = [
    ("KeysDisclosed", None),
    ("Denials", Some("Reason")),
    ("RateLimited", None),
    ("Unavailable", Some("Cause")),
    ("AuditWriteFailures", None),
    ("BatchSize", None),
    ("IncidentsOpened", None),
    ("SettingsChanges", None),
    ("OwnerChanges", None),
    ("OwnerChangesRefused", None),
    ("DevicesRetired", None),
    ("DevicesRestored", None),
    ("AgentKeysInHour", None),
];

/// Values of the `Cause` dimension of `Unavailable`.
const UNAVAILABLE_CAUSES: [&str; 4] = ["store", "audit", "kms", "idp"];

/// `(key, value)` of an object expression, normalized, sorted by key.
fn object_entries(expr: &Expression) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = match expr {
        Expression::Object(o) => o
            .iter()
            .map(|(k, v)| {
                let key = match k {
                    hcl::expr::ObjectKey::Identifier(i) => i.to_string(),
                    hcl::expr::ObjectKey::Expression(e) => norm(e),
                    other => format!("{other:?}"),
                };
                (key, norm(v))
            })
            .collect(),
        _ => Vec::new(),
    };
    out.sort();
    out
}

/// The expression itself, or the local it names (`local.NAME`).
fn resolve<'a>(cfg: &'a Config, expr: &'a Expression) -> &'a Expression {
    norm(expr)
        .strip_prefix("local.")
        .and_then(|n| local(cfg, n))
        .unwrap_or(expr)
}

fn variable<'a>(cfg: &'a Config, name: &str) -> Option<&'a Body> {
    cfg.blocks
        .iter()
        .find(|b| b.identifier() == "variable" && label(b, 0) == Some(name))
        .map(|b| b.body())
}

/// The conditions of a variable's validation blocks, as text.
fn validations(cfg: &Config, name: &str) -> Vec<String> {
    variable(cfg, name)
        .map(|v| {
            sub_blocks(v, "validation")
                .into_iter()
                .filter(|b| attr_str(b, "error_message").is_some_and(|m| !m.is_empty()))
                .filter_map(|b| attr(b, "condition").map(|c| c.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn output_value(cfg: &Config, name: &str) -> Option<String> {
    cfg.blocks
        .iter()
        .find(|b| b.identifier() == "output" && label(b, 0) == Some(name))
        .and_then(|b| attr_str(b.body(), "value"))
}

/// One metric an alarm reads.
#[derive(Debug)]
struct AlarmMetric {
    /// The metric_query id, for metric math.
    id: String,
    namespace: String,
    name: String,
    dimensions: Vec<(String, String)>,
}

/// The metrics of an alarm: its own, or those of its metric queries.
fn alarm_metrics(cfg: &Config, alarm: &Body) -> Vec<AlarmMetric> {
    let dims = |b: &Body| {
        attr(b, "dimensions")
            .map(|e| object_entries(resolve(cfg, e)))
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    if let Some(name) = attr_str(alarm, "metric_name") {
        out.push(AlarmMetric {
            id: String::new(),
            namespace: attr_str(alarm, "namespace").unwrap_or_default(),
            name,
            dimensions: dims(alarm),
        });
    }
    for q in sub_blocks(alarm, "metric_query") {
        for m in sub_blocks(q, "metric") {
            out.push(AlarmMetric {
                id: attr_str(q, "id").unwrap_or_default(),
                namespace: attr_str(m, "namespace").unwrap_or_default(),
                name: attr_str(m, "metric_name").unwrap_or_default(),
                dimensions: dims(m),
            });
        }
    }
    out
}

/// The metric-math expression an alarm evaluates (`return_data = true`).
fn alarm_expression(alarm: &Body) -> Option<String> {
    sub_blocks(alarm, "metric_query")
        .into_iter()
        .find(|q| is_true(q, "return_data"))
        .and_then(|q| attr_str(q, "expression"))
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.sort();
    out
}

/// `local.NAME` maps each `<ty>` resource of the configuration (by its
/// name) to `<ty>.<name>.<attribute>`.
fn covers_every(cfg: &Config, local_name: &str, ty: &str, attribute: &str) -> Result<(), String> {
    let entries = local(cfg, local_name)
        .map(object_entries)
        .unwrap_or_default();
    let all = set(cfg.resources(ty).into_iter().map(|(n, _)| n));
    let good = set(entries
        .iter()
        .filter(|(k, v)| *v == format!("{ty}.{k}.{attribute}"))
        .map(|(k, _)| k.clone()));
    if good != all || entries.len() != all.len() {
        return Err(format!(
            "local.{local_name} must map every {ty} ({all:?}) to its {attribute}, found {entries:?}"
        ));
    }
    Ok(())
}

/// `local.monitored_functions` is `{ for k, f in aws_lambda_function.function
/// : ... => f.function_name }` and every function is an instance of it.
fn monitors_every_function(cfg: &Config) -> Result<(), String> {
    let ok = matches!(local(cfg, "monitored_functions"), Some(Expression::ForExpr(f))
        if norm(&f.collection_expr) == "aws_lambda_function.function"
            && norm(&f.value_expr) == format!("{}.function_name", f.value_var));
    let others: Vec<&str> = cfg
        .resources("aws_lambda_function")
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| resource_name(n) != "function")
        .collect();
    if !ok || !others.is_empty() {
        return Err(format!(
            "local.monitored_functions must map every aws_lambda_function.function to its function_name, and every function must be one of them (others: {others:?})"
        ));
    }
    Ok(())
}

/// Alarms: the API's 5xx rate, Lambda errors and throttles of every
/// function, DynamoDB throttling of every table, KMS trouble, audit-write
/// failures and opened incidents; all notify the alarm topic; custom metrics
/// are the ones the code writes, in its namespace.
fn check_alarms(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    if cfg
        .variable_default("metrics_namespace")
        .map(norm)
        .as_deref()
        != Some("RecoveryPortal")
    {
        errors.push("variable metrics_namespace must default to RecoveryPortal".into());
    }
    let alarms = cfg.resources("aws_cloudwatch_metric_alarm");
    let ns = "var.metrics_namespace";
    for (name, a) in &alarms {
        let what = format!("aws_cloudwatch_metric_alarm.{name}");
        for key in ["alarm_actions", "ok_actions"] {
            if attr_str(a, key).as_deref() != Some("local.alarm_actions") {
                errors.push(format!("{what}: {key} must be local.alarm_actions"));
            }
        }
        let metrics = alarm_metrics(cfg, a);
        if metrics.is_empty() {
            errors.push(format!("{what}: reads no metric"));
        }
        for m in metrics {
            if m.namespace == ns {
                match METRICS.iter().find(|(n, _)| *n == m.name) {
                    None => errors.push(format!(
                        "{what}: the code writes no metric {} (it writes {:?})",
                        m.name,
                        METRICS.map(|(n, _)| n)
                    )),
                    Some((_, dim)) => {
                        if m.dimensions.len() > 1
                            || m.dimensions.iter().any(|(k, _)| Some(k.as_str()) != *dim)
                        {
                            errors.push(format!(
                                "{what}: {} is published with no dimension or with {dim:?}, not {:?}",
                                m.name, m.dimensions
                            ));
                        }
                    }
                }
            } else if !m.namespace.starts_with("AWS/") {
                errors.push(format!(
                    "{what}: namespace `{}` is neither var.metrics_namespace nor an AWS one",
                    m.namespace
                ));
            }
        }
    }
    let actions = local(cfg, "alarm_actions").map(norm).unwrap_or_default();
    if ![
        "var.create_alarm_topic",
        "aws_sns_topic.alarms[0].arn",
        "var.alarm_topic_arn",
    ]
    .iter()
    .all(|n| actions.contains(n))
    {
        errors.push(format!(
            "local.alarm_actions must be the created topic or var.alarm_topic_arn: {actions}"
        ));
    }
    let reads = |a: &Body, namespace: &str, metric: &str, dims: &[(&str, &str)]| {
        alarm_metrics(cfg, a)
            .into_iter()
            .find(|m| m.namespace == namespace && m.name == metric && m.dimensions == pairs(dims))
    };
    let any_alarm = |f: &dyn Fn(&Body) -> bool| alarms.iter().any(|(_, a)| f(a));
    let at_least_one = |a: &Body| {
        attr_str(a, "threshold").as_deref() == Some("1")
            && attr_str(a, "comparison_operator").as_deref()
                == Some("GreaterThanOrEqualToThreshold")
    };

    // Every function: errors and throttles.
    if let Err(e) = monitors_every_function(cfg) {
        errors.push(e);
    }
    for metric in ["Errors", "Throttles"] {
        if !any_alarm(&|a| {
            attr_str(a, "for_each").as_deref() == Some("local.monitored_functions")
                && reads(a, "AWS/Lambda", metric, &[("FunctionName", "each.value")]).is_some()
                && at_least_one(a)
        }) {
            errors.push(format!(
                "no alarm on AWS/Lambda {metric} >= 1 for each of local.monitored_functions"
            ));
        }
    }
    // Every table: throttled reads and writes.
    if let Err(e) = covers_every(cfg, "monitored_tables", "aws_dynamodb_table", "name") {
        errors.push(e);
    }
    // (The alarm's for_each over local.monitored_tables is expanded: one
    // instance per table.)
    for (table, _) in cfg.resources("aws_dynamodb_table") {
        let name = format!("aws_dynamodb_table.{table}.name");
        if !any_alarm(&|a| {
            let dims = [("TableName", name.as_str())];
            let (Some(r), Some(w)) = (
                reads(a, "AWS/DynamoDB", "ReadThrottleEvents", &dims),
                reads(a, "AWS/DynamoDB", "WriteThrottleEvents", &dims),
            ) else {
                return false;
            };
            alarm_expression(a).is_some_and(|e| e.contains(&r.id) && e.contains(&w.id))
        }) {
            errors.push(format!(
                "no alarm on ReadThrottleEvents + WriteThrottleEvents of aws_dynamodb_table.{table}"
            ));
        }
    }
    // The API's 5xx rate: 5xx / Count of this API's stage.
    let api = [
        ("ApiId", "aws_apigatewayv2_api.portal.id"),
        ("Stage", "aws_apigatewayv2_stage.default.name"),
    ];
    if !any_alarm(&|a| {
        let (Some(e), Some(c)) = (
            reads(a, "AWS/ApiGateway", "5xx", &api),
            reads(a, "AWS/ApiGateway", "Count", &api),
        ) else {
            return false;
        };
        alarm_expression(a).is_some_and(|x| x.contains(&format!("{} / {}", e.id, c.id)))
            && attr_str(a, "threshold").as_deref() == Some("var.api_5xx_rate_threshold")
    }) {
        errors
            .push("no alarm on the API's 5xx / Count rate above var.api_5xx_rate_threshold".into());
    }
    // The code's own signals.
    for (metric, dims, what) in [
        (
            "Unavailable",
            &[("Cause", "kms")][..],
            "KMS failing or throttling",
        ),
        ("AuditWriteFailures", &[][..], "audit writes failing"),
        ("IncidentsOpened", &[][..], "an incident opened"),
        ("SettingsChanges", &[][..], "a tenant settings change"),
        (
            "OwnerChangesRefused",
            &[][..],
            "an owner change naming the caller",
        ),
    ] {
        if !any_alarm(&|a| reads(a, ns, metric, dims).is_some() && at_least_one(a)) {
            errors.push(format!(
                "no alarm on {what}: {metric} {dims:?} >= 1 in var.metrics_namespace"
            ));
        }
    }
    // Owner changes, retirements and one agent's keys in an hour: above a
    // threshold the deployment chooses.
    for (metric, var) in [
        ("OwnerChanges", "var.owner_changes_alarm_threshold"),
        ("DevicesRetired", "var.retirements_alarm_threshold"),
        ("AgentKeysInHour", "var.agent_hourly_keys_alarm_threshold"),
    ] {
        if !any_alarm(&|a| {
            reads(a, ns, metric, &[]).is_some()
                && attr_str(a, "threshold").as_deref() == Some(var)
                && attr_str(a, "comparison_operator").as_deref() == Some("GreaterThanThreshold")
        }) {
            errors.push(format!("no alarm on {metric} above {var}"));
        }
    }
    if !any_alarm(&|a| {
        reads(a, ns, "IncidentsOpened", &[]).is_some()
            && attr_str(a, "treat_missing_data").as_deref() == Some("notBreaching")
    }) {
        errors.push("the incident alarm must treat missing data as not breaching".into());
    }
    errors
}

/// The dashboard shows the code's metrics and the capacity that
/// docs/operations.md's capacity section talks about.
fn check_dashboard(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(d) = cfg.resource("aws_cloudwatch_dashboard", "portal") else {
        return vec!["no aws_cloudwatch_dashboard.portal".into()];
    };
    let body = attr_str(d, "dashboard_body").unwrap_or_default();
    if !body.starts_with("jsonencode(") {
        errors.push("dashboard_body must be jsonencode(...) so it can be checked".into());
    }
    let mut needles: Vec<String> = vec!["var.metrics_namespace".into()];
    needles.extend(METRICS.map(|(m, _)| format!("\"{m}\"")));
    needles.extend(
        [
            // Denials by reason, 503s by cause.
            ",Reason}",
            "local.unavailable_causes",
            // Lambda per function.
            "local.monitored_functions",
            "\"ConcurrentExecutions\"",
            "\"Throttles\"",
            "\"Duration\"",
            // KMS calls against the quota.
            "\"AWS/Usage\"",
            "\"CallCount\"",
            "\"Decrypt\"",
            "SERVICE_QUOTA(",
            // DynamoDB per table.
            "local.monitored_tables",
            "\"ConsumedReadCapacityUnits\"",
            "\"ConsumedWriteCapacityUnits\"",
            "\"ReadThrottleEvents\"",
            "\"WriteThrottleEvents\"",
            // The scheduled Entra sync's runs (entra_sync.tf).
            "\"EntraSyncSucceeded\"",
            "\"EntraSyncKeysCopied\"",
            // The API.
            "\"4xx\"",
            "\"5xx\"",
            "\"Latency\"",
            "aws_apigatewayv2_api.portal.id",
        ]
        .map(String::from),
    );
    for n in needles {
        if !body.contains(&n) {
            errors.push(format!("dashboard: shows no {n}"));
        }
    }
    let causes: Vec<String> = match local(cfg, "unavailable_causes") {
        Some(Expression::Array(items)) => items.iter().map(norm).collect(),
        _ => Vec::new(),
    };
    if causes != UNAVAILABLE_CAUSES {
        errors.push(format!(
            "local.unavailable_causes must be {UNAVAILABLE_CAUSES:?}, found {causes:?}"
        ));
    }
    if output_value(cfg, "dashboard_name").as_deref()
        != Some("aws_cloudwatch_dashboard.portal.dashboard_name")
    {
        errors.push("output dashboard_name must give the dashboard's name".into());
    }
    errors
}

/// The optional alarm topic is encrypted with a rotated key of its own that
/// CloudWatch may use to publish; an e-mail address can be subscribed.
fn check_alarm_topic(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(topic) = cfg.resource("aws_sns_topic", "alarms") else {
        return vec!["no aws_sns_topic.alarms".into()];
    };
    if attr_str(topic, "count").as_deref() != Some("var.create_alarm_topic ? 1 : 0") {
        errors.push("aws_sns_topic.alarms: count must be var.create_alarm_topic ? 1 : 0".into());
    }
    let key_ref = attr_str(topic, "kms_master_key_id").unwrap_or_default();
    let key = key_ref
        .strip_prefix("aws_kms_key.")
        .and_then(|r| r.split_once('['))
        .filter(|(_, rest)| *rest == "0].arn")
        .map(|(k, _)| k.to_owned());
    match key {
        None => errors.push(format!(
            "aws_sns_topic.alarms: kms_master_key_id `{key_ref}` must be a customer managed key of this configuration (CloudWatch cannot publish with the AWS managed SNS key)"
        )),
        Some(k) if ["recovery_keys", "tables", "logs"].contains(&k.as_str()) => errors.push(
            format!("aws_sns_topic.alarms: must not use aws_kms_key.{k}, which has another purpose"),
        ),
        Some(k) => match cfg.resource("aws_kms_key", &k) {
            None => errors.push(format!("aws_kms_key.{k} does not exist")),
            Some(body) => {
                if !is_true(body, "enable_key_rotation") {
                    errors.push(format!("aws_kms_key.{k}: key rotation must be enabled"));
                }
                let statements = attr_str(body, "policy")
                    .ok_or_else(|| format!("aws_kms_key.{k} has no key policy"))
                    .and_then(|p| policy_statements(cfg, &p, 0));
                match statements {
                    Err(e) => errors.push(e),
                    Ok(statements) => {
                        let cloudwatch = statements.iter().any(|st| {
                            st.principals
                                == [("Service".to_string(), vec!["cloudwatch.amazonaws.com".to_string()])]
                                && grants(st, "kms:GenerateDataKey")
                                && grants(st, "kms:Decrypt")
                        });
                        if !cloudwatch {
                            errors.push(format!(
                                "aws_kms_key.{k}: the key policy must let cloudwatch.amazonaws.com GenerateDataKey and Decrypt"
                            ));
                        }
                        for st in &statements {
                            let people = st.not_principals
                                || st.principals.iter().any(|(t, _)| t == "AWS");
                            if people && (grants(st, "kms:Decrypt") || grants(st, "kms:CreateGrant")) {
                                errors.push(format!(
                                    "{}: no person may use the alarm topic's key, found {:?}",
                                    st.origin, st.principals
                                ));
                            }
                        }
                    }
                }
            }
        },
    }
    let email = cfg
        .resources("aws_sns_topic_subscription")
        .into_iter()
        .any(|(_, s)| {
            attr_str(s, "topic_arn").as_deref() == Some("aws_sns_topic.alarms[0].arn")
                && attr_str(s, "protocol").as_deref() == Some("email")
                && attr_str(s, "endpoint").as_deref() == Some("var.alarm_email")
                && attr_str(s, "count").is_some_and(|c| c.contains("var.alarm_email"))
        });
    if !email {
        errors.push("no e-mail subscription of var.alarm_email to the alarm topic".into());
    }
    if !output_value(cfg, "alarm_topic_arn").is_some_and(|v| v.contains("local.alarm_actions")) {
        errors.push("output alarm_topic_arn must give the topic the alarms notify".into());
    }
    errors
}

/// Reserved concurrency per function (a validated variable, unreserved by
/// default), and optional provisioned concurrency of the retrieval function:
/// published, held by an alias, which the API integration and the invoke
/// permissions use.
fn check_concurrency(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    for (f, var) in [
        (LIST, "list_reserved_concurrency"),
        (KEY, "key_reserved_concurrency"),
        (MANAGE, "manage_reserved_concurrency"),
    ] {
        let reserved = cfg
            .resource("aws_lambda_function", f)
            .and_then(|b| attr_str(b, "reserved_concurrent_executions"));
        if reserved != Some(format!("var.{var}")) {
            errors.push(format!(
                "aws_lambda_function.{f}: reserved_concurrent_executions must be var.{var}"
            ));
        }
        if cfg.variable_default(var).map(norm).as_deref() != Some("-1") {
            errors.push(format!("variable {var}: default must be -1 (unreserved)"));
        }
    }
    let pc = "var.key_provisioned_concurrency";
    let enabled = format!("{pc} > 0");
    let counted = format!("{enabled} ? 1 : 0");
    if cfg
        .variable_default("key_provisioned_concurrency")
        .map(norm)
        .as_deref()
        != Some("0")
    {
        errors.push("variable key_provisioned_concurrency: default must be 0 (none)".into());
    }
    let key_fn = cfg.resource("aws_lambda_function", KEY);
    if key_fn.and_then(|b| attr_str(b, "publish")) != Some(enabled.clone()) {
        errors.push(format!(
            "aws_lambda_function.{KEY}: publish must be {enabled} (provisioned concurrency needs a version)"
        ));
    }
    let aliases = cfg.resources("aws_lambda_alias");
    let [(alias, a)] = aliases.as_slice() else {
        errors.push(format!(
            "expected one aws_lambda_alias (of {KEY}), found {}",
            aliases.len()
        ));
        return errors;
    };
    let key_function_name = format!("aws_lambda_function.{KEY}.function_name");
    let key_version = format!("aws_lambda_function.{KEY}.version");
    for (key, value) in [
        ("count", counted.as_str()),
        ("function_name", &key_function_name),
        ("function_version", &key_version),
    ] {
        if attr_str(a, key).as_deref() != Some(value) {
            errors.push(format!("aws_lambda_alias.{alias}: {key} must be {value}"));
        }
    }
    let configs = cfg.resources("aws_lambda_provisioned_concurrency_config");
    let qualifier = format!("aws_lambda_alias.{alias}[0].name");
    match configs.as_slice() {
        [(name, c)] => {
            for (key, value) in [
                ("count", counted.as_str()),
                ("function_name", &key_function_name),
                ("qualifier", qualifier.as_str()),
                ("provisioned_concurrent_executions", pc),
            ] {
                if attr_str(c, key).as_deref() != Some(value) {
                    errors.push(format!(
                        "aws_lambda_provisioned_concurrency_config.{name}: {key} must be {value}"
                    ));
                }
            }
        }
        other => errors.push(format!(
            "expected one aws_lambda_provisioned_concurrency_config, found {}",
            other.len()
        )),
    }
    // The API calls the alias when there is one.
    let via_alias = format!("aws_lambda_alias.{alias}[0].invoke_arn");
    let mut integrations = 0;
    for (name, i) in cfg.resources("aws_apigatewayv2_integration") {
        let Some(uri) = attr(i, "integration_uri") else {
            continue;
        };
        if integration_function(cfg, uri).as_deref() != Some(KEY) {
            continue;
        }
        integrations += 1;
        let ok = matches!(uri, Expression::Conditional(c)
            if norm(&c.cond_expr) == enabled && norm(&c.true_expr) == via_alias);
        if !ok {
            errors.push(format!(
                "aws_apigatewayv2_integration.{name}: integration_uri must be {enabled} ? {via_alias} : aws_lambda_function.{KEY}.invoke_arn"
            ));
        }
    }
    if integrations == 0 {
        errors.push(format!("no integration invokes {KEY}"));
    }
    // ... and may invoke it (a permission on the function does not cover an alias).
    let qualified = format!("{enabled} ? {qualifier} : null");
    for (name, p) in cfg.resources("aws_lambda_permission") {
        let function = attr_str(p, "function_name").unwrap_or_default();
        if reference_name(&function, "aws_lambda_function", &["function_name", "arn"]) == Some(KEY)
            && attr_str(p, "qualifier") != Some(qualified.clone())
        {
            errors.push(format!(
                "aws_lambda_permission.{name}: qualifier must be {qualified}"
            ));
        }
    }
    errors
}

/// Per-route throttles: a map variable (empty by default) applied as the
/// stage's route settings, whose keys must be routes of the API.
fn check_route_throttles(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(stage) = cfg.resource("aws_apigatewayv2_stage", "default") else {
        return vec!["no aws_apigatewayv2_stage.default".into()];
    };
    let dynamic: Vec<&Body> = stage
        .blocks()
        .filter(|b| b.identifier() == "dynamic" && label(b, 0) == Some("route_settings"))
        .map(|b| b.body())
        .collect();
    let ok = match dynamic.as_slice() {
        [d] => {
            let content = sub_blocks(d, "content");
            attr_str(d, "for_each").as_deref() == Some("var.route_throttles")
                && content.len() == 1
                && attr_str(content[0], "route_key").as_deref() == Some("route_settings.key")
                && attr_str(content[0], "throttling_rate_limit").as_deref()
                    == Some("route_settings.value.rate_limit")
                && attr_str(content[0], "throttling_burst_limit").as_deref()
                    == Some("route_settings.value.burst_limit")
        }
        _ => false,
    };
    if !ok || !sub_blocks(stage, "route_settings").is_empty() {
        errors.push("aws_apigatewayv2_stage.default: route settings must be one dynamic \"route_settings\" over var.route_throttles (route_key = key, throttling_rate_limit = value.rate_limit, throttling_burst_limit = value.burst_limit)".into());
    }
    if !matches!(cfg.variable_default("route_throttles"), Some(Expression::Object(o)) if o.is_empty())
    {
        errors.push(
            "variable route_throttles: default must be {} (every route keeps the stage's limits)"
                .into(),
        );
    }
    let conditions = validations(cfg, "route_throttles");
    let expected = set(expected_routes().into_iter().map(|(k, _)| k));
    let listed = conditions.iter().any(|c| {
        let keys: Vec<&str> = c
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| {
                s.split_once(' ').is_some_and(|(m, p)| {
                    ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m) && p.starts_with('/')
                })
            })
            .collect();
        set(keys.iter().copied()) == expected && keys.len() == expected.len()
    });
    if !listed {
        errors.push(format!(
            "variable route_throttles: a validation must allow exactly the API's route keys {expected:?}"
        ));
    }
    if !conditions
        .iter()
        .any(|c| c.contains("rate_limit > 0") && c.contains("burst_limit > 0"))
    {
        errors.push("variable route_throttles: a validation must require positive limits".into());
    }
    // Route settings name routes: the stage comes after all of them (a
    // for_each resource's address stands for all its instances).
    let routes = set(cfg
        .resources("aws_apigatewayv2_route")
        .into_iter()
        .map(|(n, _)| format!("aws_apigatewayv2_route.{}", resource_name(n))));
    let after = set(attr_list(stage, "depends_on").unwrap_or_default());
    if !routes.is_subset(&after) {
        errors.push(format!(
            "aws_apigatewayv2_stage.default: depends_on lacks {:?}",
            routes.difference(&after).collect::<Vec<_>>()
        ));
    }
    errors
}

/// Variables that bound capacity, notifications or access are validated.
const VALIDATED_VARIABLES: [&str; 10] = [
    "metrics_namespace",
    "alarm_topic_arn",
    "alarm_email",
    "api_5xx_rate_threshold",
    "key_provisioned_concurrency",
    "route_throttles",
    "keys_verify_principal_arns",
    "list_reserved_concurrency",
    "key_reserved_concurrency",
    "manage_reserved_concurrency",
];

fn check_variables_validated(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    for name in VALIDATED_VARIABLES {
        let conditions = validations(cfg, name);
        if conditions.is_empty() {
            errors.push(format!(
                "variable {name}: needs a validation block (condition and error_message)"
            ));
        }
        let var_ref = format!("var.{name}");
        if conditions.iter().any(|c| !c.contains(&var_ref)) {
            errors.push(format!(
                "variable {name}: every validation must test {var_ref}"
            ));
        }
    }
    errors
}

/// `portal keys verify` has a policy of its own: Decrypt with the context,
/// Scan/Query/GetItem of the devices table, PutItem of audit events, and
/// nothing else; nothing in the configuration attaches it, and no other
/// role or policy may Decrypt recovery keys or Scan.
fn check_keys_verify(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    let arn = "aws_iam_policy.keys_verify.arn";
    let statements = match managed_policy_statements(cfg, arn) {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let mut actions = BTreeSet::new();
    for st in &statements {
        if !st.allow {
            continue;
        }
        if st.not_actions || st.not_resources {
            errors.push(format!("{}: no not_actions / not_resources", st.origin));
        }
        actions.extend(st.actions.iter().cloned());
        if grants(st, "kms:Decrypt") {
            if st.resources != ["aws_kms_key.recovery_keys.arn"] {
                errors.push(format!(
                    "{}: kms:Decrypt must be on aws_kms_key.recovery_keys.arn only",
                    st.origin
                ));
            }
            check_context_condition(st, &mut errors);
        }
        let dynamo = service_actions(st, "dynamodb");
        if !dynamo.is_empty() {
            let reads = dynamo
                .iter()
                .all(|a| a.eq_ignore_ascii_case("dynamodb:Scan"));
            let put = dynamo
                .iter()
                .all(|a| a.eq_ignore_ascii_case("dynamodb:PutItem"));
            let ok = (reads && st.resources == ["aws_dynamodb_table.devices.arn"])
                || (put && st.resources == ["aws_dynamodb_table.audit.arn"]);
            if !ok {
                errors.push(format!(
                    "{}: Scan goes to the devices table and PutItem to the audit table, found {dynamo:?} on {:?}",
                    st.origin, st.resources
                ));
            }
        }
    }
    let expected = set(["kms:Decrypt", "dynamodb:Scan", "dynamodb:PutItem"]);
    if actions != expected {
        errors.push(format!(
            "the keys_verify policy must grant exactly {expected:?}, found {actions:?}"
        ));
    }
    if output_value(cfg, "keys_verify_policy_arn").as_deref() != Some(arn) {
        errors.push(format!("output keys_verify_policy_arn must be {arn}"));
    }
    // Nothing here attaches it: operators attach it to their own role.
    for ty in [
        "aws_iam_role_policy_attachment",
        "aws_iam_policy_attachment",
        "aws_iam_user_policy_attachment",
        "aws_iam_group_policy_attachment",
    ] {
        for (name, b) in cfg.resources(ty) {
            if attr_str(b, "policy_arn").is_some_and(|p| p.contains("aws_iam_policy.keys_verify")) {
                errors.push(format!("{ty}.{name} attaches the keys_verify policy"));
            }
        }
    }
    for (role, body) in cfg.resources("aws_iam_role") {
        if attr_str(body, "managed_policy_arns")
            .is_some_and(|p| p.contains("aws_iam_policy.keys_verify"))
        {
            errors.push(format!(
                "aws_iam_role.{role} attaches the keys_verify policy"
            ));
        }
    }
    // No one else gains Decrypt or Scan.
    let key_role = function_role(cfg, KEY).unwrap_or_default();
    let mut others: Vec<(String, Vec<Statement>)> = Vec::new();
    for (role, _) in cfg.resources("aws_iam_role") {
        match role_statements(cfg, role) {
            Ok(s) => others.push((format!("aws_iam_role.{role}"), s)),
            Err(e) => errors.push(e),
        }
    }
    for (policy, _) in cfg.resources("aws_iam_policy") {
        if policy == "keys_verify" {
            continue;
        }
        match managed_policy_statements(cfg, &format!("aws_iam_policy.{policy}.arn")) {
            Ok(s) => others.push((format!("aws_iam_policy.{policy}"), s)),
            Err(e) => errors.push(e),
        }
    }
    for (who, statements) in others {
        for st in statements {
            if grants(&st, "dynamodb:Scan") {
                errors.push(format!("{who}: {} allows dynamodb:Scan", st.origin));
            }
            if grants(&st, "kms:Decrypt") && who != format!("aws_iam_role.{key_role}") {
                errors.push(format!("{who}: {} allows kms:Decrypt", st.origin));
            }
        }
    }
    if cfg
        .variable_default("keys_verify_principal_arns")
        .map(norm)
        .as_deref()
        != Some("[]")
    {
        errors.push("variable keys_verify_principal_arns: default must be [] (no operator can decrypt until named)".into());
    }
    errors
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

fn assert_clean(name: &str, errors: Vec<String>) {
    assert!(errors.is_empty(), "{name}:\n  - {}", errors.join("\n  - "));
}

#[test]
fn routes_target_the_right_function_behind_the_jwt_authorizer() {
    assert_clean("routes", check_routes(&Config::load()));
}

#[test]
fn functions_run_their_own_binary() {
    assert_clean("functions", check_functions(&Config::load()));
}

#[test]
fn functions_get_the_configuration_the_code_reads() {
    assert_clean("environment", check_environment(&Config::load()));
}

#[test]
fn functions_log_json_at_the_levels_of_two_variables() {
    assert_clean("logging", check_logging(&Config::load()));
}

#[test]
fn list_role_has_no_kms_permission() {
    assert_clean("list role KMS", check_list_role_has_no_kms(&Config::load()));
}

#[test]
fn key_role_only_decrypts_with_the_encryption_context() {
    assert_clean("key role KMS", check_key_role_kms(&Config::load()));
}

#[test]
fn key_policies_match_the_roles() {
    assert_clean("key policies", check_key_policies(&Config::load()));
}

#[test]
fn import_policy_encrypts_but_never_decrypts() {
    assert_clean("import policy", check_import_policy(&Config::load()));
}

#[test]
fn tables_match_the_schema() {
    assert_clean("tables", check_tables(&Config::load()));
}

#[test]
fn audit_events_are_append_only() {
    assert_clean("audit", check_audit_append_only(&Config::load()));
}

#[test]
fn list_role_cannot_write_audit_events() {
    assert_clean(
        "list role audit",
        check_list_role_cannot_write_audit(&Config::load()),
    );
}

#[test]
fn list_role_reads_only_tenant_items_and_indexes_of_devices() {
    assert_clean(
        "list role devices",
        check_list_role_devices_access(&Config::load()),
    );
}

#[test]
fn manage_role_seals_but_never_decrypts_and_writes_devices_only() {
    assert_clean("manage role", check_manage_role(&Config::load()));
}

#[test]
fn stage_throttles_below_the_kms_quota() {
    assert_clean("stage", check_stage(&Config::load()));
}

#[test]
fn portal_bucket_is_private_and_read_only_by_cloudfront() {
    assert_clean("portal bucket", check_portal_bucket(&Config::load()));
}

#[test]
fn portal_is_served_over_https_with_security_headers() {
    assert_clean(
        "portal distribution",
        check_portal_distribution(&Config::load()),
    );
}

#[test]
fn portal_files_and_config_json_are_uploaded() {
    assert_clean("portal content", check_portal_content(&Config::load()));
}

#[test]
fn api_cors_lets_the_portal_call_and_read_its_headers() {
    assert_clean("API CORS", check_api_cors(&Config::load()));
}

#[test]
fn alarms_cover_every_function_table_and_signal() {
    assert_clean("alarms", check_alarms(&Config::load()));
}

#[test]
fn dashboard_shows_the_metrics_and_the_capacity() {
    assert_clean("dashboard", check_dashboard(&Config::load()));
}

#[test]
fn alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use() {
    assert_clean("alarm topic", check_alarm_topic(&Config::load()));
}

#[test]
fn concurrency_is_reserved_and_provisioned_through_an_alias() {
    assert_clean("concurrency", check_concurrency(&Config::load()));
}

#[test]
fn route_throttles_apply_to_routes_of_the_api() {
    assert_clean("route throttles", check_route_throttles(&Config::load()));
}

#[test]
fn capacity_notification_and_access_variables_are_validated() {
    assert_clean(
        "validated variables",
        check_variables_validated(&Config::load()),
    );
}

#[test]
fn keys_verify_policy_is_the_only_other_decrypt_and_the_only_scan() {
    assert_clean("keys verify", check_keys_verify(&Config::load()));
}

/// A breaking edit of the real HCL and the check that must notice it.
/// Addresses of the resources of a deployment made before `local.functions`
/// and `local.routes`, as its state holds them.
fn addresses_before_for_each() -> Vec<String> {
    let mut out = Vec::new();
    for f in ["list_devices", "get_recovery_key", "manage_keys"] {
        for ty in [
            "aws_lambda_function",
            "aws_iam_role",
            "aws_iam_role_policy",
            "aws_cloudwatch_log_group",
            "aws_apigatewayv2_integration",
        ] {
            out.push(format!("{ty}.{f}"));
        }
        out.push(format!("aws_iam_role_policy_attachment.{f}_xray[0]"));
    }
    for r in [
        "list_devices",
        "list_recovery_keys",
        "list_audit_events",
        "get_recovery_key",
        "batch_recovery_keys",
        "escrow_recovery_key",
        "upsert_device",
        "retire_device",
        "restore_device",
        "rotation_requests",
        "get_tenant_settings",
        "patch_tenant_settings",
        "open_incident",
        "list_incidents",
        "close_incident",
    ] {
        out.push(format!("aws_apigatewayv2_route.{r}"));
    }
    for p in [
        "list_devices_api",
        "get_recovery_key_api",
        "batch_recovery_keys_api",
    ] {
        out.push(format!("aws_lambda_permission.{p}"));
    }
    for key in [
        "PUT /v1/devices/{device_id}/recovery-keys/{key_id}",
        "PUT /v1/devices/{device_id}",
        "DELETE /v1/devices/{device_id}",
        "POST /v1/devices/{device_id}/restore",
        "GET /v1/rotation-requests",
        "GET /v1/tenant/settings",
        "PATCH /v1/tenant/settings",
        "POST /v1/incidents",
        "GET /v1/incidents",
        "DELETE /v1/incidents/{incident_id}",
    ] {
        out.push(format!(
            "aws_lambda_permission.{}",
            instance_name("manage_keys_api", key)
        ));
    }
    out
}

/// `moved` blocks: every address of a deployment made before the for_each
/// layout moves to an instance that exists (so `terraform plan` on it
/// replaces nothing), and no move starts at an address still declared
/// (Terraform refuses that).
fn check_moved(cfg: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    // Every instance the evaluated configuration declares; a `count`
    // resource's [0] stands for its instance.
    let mut declared = BTreeSet::new();
    for b in cfg.blocks.iter().filter(|b| b.identifier() == "resource") {
        let (Some(ty), Some(name)) = (label(b, 0), label(b, 1)) else {
            continue;
        };
        declared.insert(format!("{ty}.{name}"));
        declared.insert(format!("{ty}.{name}[0]"));
    }
    let moves: Vec<(String, String)> = cfg
        .blocks
        .iter()
        .filter(|b| b.identifier() == "moved")
        .map(|b| {
            let get = |k: &str| attr(b.body(), k).map(|e| e.to_string()).unwrap_or_default();
            (get("from"), get("to"))
        })
        .collect();
    for (from, to) in &moves {
        if !declared.contains(to) {
            errors.push(format!("moved {from} -> {to}: no such instance"));
        }
        if declared.contains(from) {
            errors.push(format!("moved {from} -> {to}: {from} is still declared"));
        }
    }
    for old in addresses_before_for_each() {
        if !declared.contains(&old) && !moves.iter().any(|(from, _)| *from == old) {
            errors.push(format!(
                "{old} (deployed before for_each) is neither declared nor moved: plan would destroy it"
            ));
        }
    }
    errors
}

#[test]
fn an_existing_deployment_moves_without_replacement() {
    assert_clean("moved", check_moved(&Config::load()));
}

/// Every check passes on the configuration, and fails once its mutation's
/// structural edits are applied to the configuration as written.
#[test]
fn every_check_can_fail() {
    let original = parse_blocks(&sources());
    let cfg = Config::from_blocks(&original);
    for mutation in mutations::MUTATIONS {
        assert_clean(mutation.what, (mutation.check)(&cfg));
    }
    for mutation in mutations::MUTATIONS {
        let mut mutated = original.clone();
        for edit in mutation.edits {
            edit::apply(&mut mutated, *edit);
        }
        let errors = (mutation.check)(&Config::from_blocks(&mutated));
        assert!(
            !errors.is_empty(),
            "mutation `{}` went unnoticed",
            mutation.what
        );
        // Visible with --nocapture: what each check reports for its mutation.
        println!("{:<50} -> {}", mutation.what, errors[0]);
    }
}

// ---------------------------------------------------------------------------
// The deployment path as documented
// ---------------------------------------------------------------------------

fn declared(cfg: &Config, kind: &str) -> BTreeSet<String> {
    cfg.blocks
        .iter()
        .filter(|b| b.identifier() == kind)
        .filter_map(|b| label(b, 0).map(str::to_owned))
        .collect()
}

fn read(relative: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// One layout: every variable is declared in variables.tf and every output
/// in outputs.tf (a newcomer finds each input and output in one place).
#[test]
fn variables_and_outputs_each_live_in_one_file() {
    for (name, text) in sources() {
        let body: Body = hcl::from_str(&text).unwrap();
        for b in body.blocks() {
            let home = match b.identifier() {
                "variable" => "variables.tf",
                "output" => "outputs.tf",
                _ => continue,
            };
            assert_eq!(
                name,
                home,
                "{} {:?} belongs in infra/{home}",
                b.identifier(),
                label(b, 0)
            );
        }
    }
}

/// `infra/terraform.tfvars.example` is a first deployment's tfvars: valid
/// HCL setting every variable that has no default, and mentioning (set or
/// commented out) every variable there is, and nothing else.
#[test]
fn tfvars_example_covers_every_variable() {
    let cfg = Config::load();
    let variables = declared(&cfg, "variable");
    let required: BTreeSet<String> = cfg
        .blocks
        .iter()
        .filter(|b| b.identifier() == "variable" && attr(b.body(), "default").is_none())
        .filter_map(|b| label(b, 0).map(str::to_owned))
        .collect();
    assert!(required.contains("jwt_issuer"), "{required:?}");
    let text = read("infra/terraform.tfvars.example");
    let body: Body = hcl::from_str(&text).expect("the example is valid HCL");
    let set: BTreeSet<String> = body.attributes().map(|a| a.key().to_owned()).collect();
    assert!(
        required.is_subset(&set),
        "required variables missing from the example: {:?}",
        required.difference(&set).collect::<Vec<_>>()
    );
    assert_eq!(
        attr_str(&body, "jwt_issuer").map(|i| i.starts_with("https://")),
        Some(true)
    );
    // `# name = value` lines: the optional variables, with their defaults.
    let commented: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter_map(|l| l.split_once(" ="))
        .map(|(name, _)| name.trim())
        .filter(|name| {
            name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect();
    let mentioned: BTreeSet<String> = set.union(&commented).cloned().collect();
    assert_eq!(
        mentioned, variables,
        "the example must mention exactly the declared variables"
    );
}

/// Every Terraform output and variable the READMEs and docs/ name exists (the README
/// once sent users to a `recovery_key_arn` output that did not).
#[test]
fn readmes_name_only_outputs_and_variables_that_exist() {
    let cfg = Config::load();
    let outputs = declared(&cfg, "output");
    let variables = declared(&cfg, "variable");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut checked = 0;
    // The README's deployment and capacity sections live in docs/ now.
    for file in [
        "README.md",
        "infra/README.md",
        "docs/operations.md",
        "docs/security.md",
        "docs/api.md",
    ] {
        let text = read(file);
        for rest in text.split("output -raw ").skip(1) {
            let name = ident(rest);
            assert!(outputs.contains(&name), "{file}: no output {name:?}");
            checked += 1;
        }
        // `<NAME output>` placeholders.
        for rest in text.split('<').skip(1) {
            if let Some((name, _)) = rest.split_once(" output>") {
                assert!(outputs.contains(name), "{file}: no output {name:?}");
                checked += 1;
            }
        }
        for rest in text.split("-var ").skip(1) {
            let name = ident(rest);
            assert!(variables.contains(&name), "{file}: no variable {name:?}");
            checked += 1;
        }
        // The output table of infra/README.md.
        for line in text.lines().filter(|l| l.starts_with("| `")) {
            for name in line
                .split('|')
                .nth(1)
                .unwrap()
                .split('`')
                .skip(1)
                .step_by(2)
            {
                if name.ends_with("_arn") || name.ends_with("_name") || name == "api_url" {
                    assert!(
                        outputs.contains(name) || variables.contains(name),
                        "{file}: `{name}` is neither an output nor a variable"
                    );
                }
            }
        }
    }
    assert!(checked >= 6, "found only {checked} references");
}
