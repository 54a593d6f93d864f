//! The IAM side of `infra/`, read structurally with hcl-rs and followed the
//! way AWS wires it: route → integration → function (or its alias) →
//! execution role → the role's inline policies → statements; managed
//! policies for the CLI; the recovery-key CMK's key policy. References are
//! resolved to ARNs in one symbolic account so that they compare with the
//! ARNs of the calls the code makes. Every `for_each` is expanded first
//! (`tfeval`), so a function is `function["list-devices"]`, one instance of
//! the resource that `local.functions` drives.

#[path = "../../support/tfeval.rs"]
mod tfeval;

use super::policy::{Condition, Statement};
use hcl::{Block, Body, Expression};
use std::collections::{BTreeMap, BTreeSet};

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";
/// The principal a key policy names as `local.account_root_arn` (the
/// account: IAM policies decide).
pub const ACCOUNT_ROOT: &str = "account-root";

pub struct Infra {
    blocks: Vec<Block>,
    /// The value `var.name_prefix` is given (the tables' test prefix).
    prefix: String,
    /// The test's tfvars: `var.a.b` by its path `a.b` (the scheduled
    /// sync's tenant, which its role is pinned to).
    vars: BTreeMap<String, String>,
}

/// A DynamoDB table: its partition key and its indexes' partition keys.
#[derive(Debug, Clone)]
pub struct Table {
    pub hash_key: String,
    pub index_hash_keys: BTreeMap<String, String>,
}

fn label(b: &Block, i: usize) -> Option<&str> {
    b.labels().get(i).map(|l| l.as_str())
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

/// An expression as text: a string literal's value, a template's source
/// (`${...}` kept), anything else as HCL.
fn text(e: &Expression) -> String {
    match e {
        Expression::String(s) => s.clone(),
        Expression::TemplateExpr(t) => t.to_string(),
        other => other.to_string(),
    }
}

/// The `<kind>.<name>` references in `text` (e.g. every
/// `aws_lambda_function.X` in an expression); an instance's key is part of
/// its name (`function["list-devices"]`).
fn refs_to(text: &str, kind: &str) -> BTreeSet<String> {
    let needle = format!("{kind}.");
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(&needle) {
        let before_ok = i == 0
            || !rest.as_bytes()[i - 1].is_ascii_alphanumeric() && rest.as_bytes()[i - 1] != b'_';
        let tail = &rest[i + needle.len()..];
        let mut name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        if let Some(key) = tail[name.len()..].strip_prefix("[\"")
            && let Some(end) = key.find("\"]")
        {
            name = format!("{name}[\"{}\"]", &key[..end]);
        }
        if before_ok && !name.is_empty() {
            out.insert(name);
        }
        rest = &rest[i + needle.len()..];
    }
    out
}

/// Every `infra/*.tf` as `(file name, text)`.
pub fn sources() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("infra");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tf"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The top-level blocks of `(file name, text)` pairs.
pub fn parse_blocks(sources: &[(String, String)]) -> Vec<Block> {
    let mut blocks = Vec::new();
    for (name, src) in sources {
        let body: Body = hcl::from_str(src).unwrap_or_else(|e| panic!("parsing {name}: {e}"));
        blocks.extend(body.blocks().cloned());
    }
    blocks
}

impl Infra {
    pub fn load(prefix: &str, vars: &[(&str, &str)]) -> Infra {
        Infra::from_blocks(prefix, vars, &parse_blocks(&sources()))
    }

    /// From the configuration's blocks as written (the mutation test edits
    /// them); every `for_each` is expanded here.
    pub fn from_blocks(prefix: &str, vars: &[(&str, &str)], blocks: &[Block]) -> Infra {
        Infra {
            blocks: tfeval::expand(blocks),
            prefix: prefix.to_owned(),
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn all(&self, kind: &str, ty: &str) -> std::vec::IntoIter<(&str, &Body)> {
        self.blocks
            .iter()
            .filter(|b| b.identifier() == kind && label(b, 0) == Some(ty))
            .filter_map(|b| Some((label(b, 1)?, b.body())))
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn one(&self, kind: &str, ty: &str, name: &str) -> &Body {
        self.all(kind, ty)
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b)
            .unwrap_or_else(|| panic!("infra/ has no {kind} {ty}.{name}"))
    }

    fn attr_text(&self, kind: &str, ty: &str, name: &str, key: &str) -> String {
        let body = self.one(kind, ty, name);
        text(attr(body, key).unwrap_or_else(|| panic!("{ty}.{name} has no {key}")))
    }

    fn local(&self, name: &str) -> &Expression {
        self.blocks
            .iter()
            .filter(|b| b.identifier() == "locals")
            .find_map(|b| attr(b.body(), name))
            .unwrap_or_else(|| panic!("infra/ has no local.{name}"))
    }

    /// One reference (`aws_dynamodb_table.devices.arn`, `var.name_prefix`)
    /// as the value AWS would see.
    fn resolve_ref(&self, r: &str) -> String {
        let parts: Vec<&str> = r.trim().split('.').collect();
        match parts.as_slice() {
            ["var", "name_prefix"] => self.prefix.clone(),
            ["local", "partition"] => "aws".into(),
            ["local", "account_root_arn"] => ACCOUNT_ROOT.into(),
            ["aws_dynamodb_table", t, "arn"] => format!(
                "arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{}",
                self.resolve(&self.attr_text("resource", "aws_dynamodb_table", t, "name"))
            ),
            ["aws_kms_key", k, "arn"] => format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/{k}"),
            ["aws_iam_role", role, "arn"] => format!("role:{}", role.trim_end_matches("[0]")),
            ["aws_secretsmanager_secret", secret, "arn"] => format!(
                "arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{}",
                secret.trim_end_matches("[0]")
            ),
            ["var", path @ ..] if self.vars.contains_key(&path.join(".")) => {
                self.vars[&path.join(".")].clone()
            }
            ["var", v] => format!("var:{v}"),
            ["aws_cloudwatch_log_group", g, "arn"] => {
                format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{g}")
            }
            _ => format!("<unresolved {r}>"),
        }
    }

    /// A string with `${...}` interpolations, or a bare reference.
    fn resolve(&self, s: &str) -> String {
        let s = s.trim();
        if !s.contains("${") {
            let bare = !s.is_empty()
                && s.contains('.')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-[]\"".contains(c));
            return if bare {
                self.resolve_ref(s)
            } else {
                s.to_owned()
            };
        }
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let end = rest[i..].find('}').expect("closed interpolation") + i;
            out.push_str(&self.resolve_ref(&rest[i + 2..end]));
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// A list expression (literal array, a local holding one, `concat`).
    fn list(&self, e: &Expression) -> Vec<String> {
        match e {
            Expression::Array(items) => items.iter().flat_map(|i| self.list(i)).collect(),
            Expression::Traversal(_) if text(e) == "local.account_root_arn" => {
                vec![ACCOUNT_ROOT.to_owned()]
            }
            Expression::Traversal(_) if text(e).starts_with("local.") => {
                let name = text(e).trim_start_matches("local.").to_owned();
                self.list(self.local(&name))
            }
            Expression::FuncCall(c) if c.name.name.as_str() == "concat" => {
                c.args.iter().flat_map(|a| self.list(a)).collect()
            }
            other => vec![self.resolve(&text(other))],
        }
    }

    fn statements(&self, doc: &str) -> Vec<Statement> {
        let body = self.one("data", "aws_iam_policy_document", doc);
        body.blocks()
            .filter(|b| b.identifier() == "statement")
            .map(|s| {
                let b = s.body();
                let get = |k: &str| attr(b, k).map(|e| self.list(e)).unwrap_or_default();
                assert!(
                    attr(b, "not_actions").is_none() && attr(b, "not_resources").is_none(),
                    "{doc}: not_actions/not_resources are not modelled"
                );
                Statement {
                    sid: attr(b, "sid").map(text).unwrap_or_default(),
                    allow: attr(b, "effect").map(text).is_none_or(|e| e == "Allow"),
                    actions: get("actions"),
                    resources: get("resources"),
                    principals: b
                        .blocks()
                        .filter(|p| p.identifier() == "principals")
                        .flat_map(|p| {
                            attr(p.body(), "identifiers")
                                .map(|e| self.list(e))
                                .unwrap_or_default()
                        })
                        .collect(),
                    conditions: b
                        .blocks()
                        .filter(|c| c.identifier() == "condition")
                        .map(|c| Condition {
                            test: text(attr(c.body(), "test").unwrap()),
                            variable: text(attr(c.body(), "variable").unwrap()),
                            values: self.list(attr(c.body(), "values").unwrap()),
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// The policy document a `policy = data.aws_iam_policy_document.X.json`
    /// attribute names.
    fn document_of(&self, body: &Body) -> String {
        let t = text(attr(body, "policy").expect("policy attribute"));
        let docs = refs_to(&t, "data.aws_iam_policy_document");
        assert_eq!(docs.len(), 1, "one policy document per policy: {t}");
        docs.into_iter().next().unwrap()
    }

    /// Every route key and the execution role of the function it invokes.
    pub fn route_roles(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (name, route) in self.all("resource", "aws_apigatewayv2_route") {
            let key = text(attr(route, "route_key").unwrap());
            let target = text(attr(route, "target").unwrap());
            let integrations = refs_to(&target, "aws_apigatewayv2_integration");
            assert_eq!(integrations.len(), 1, "route {name}: target {target}");
            let integration = integrations.into_iter().next().unwrap();
            let uri = self.attr_text(
                "resource",
                "aws_apigatewayv2_integration",
                &integration,
                "integration_uri",
            );
            let mut functions = refs_to(&uri, "aws_lambda_function");
            for alias in refs_to(&uri, "aws_lambda_alias") {
                let f = self.attr_text("resource", "aws_lambda_alias", &alias, "function_name");
                functions.extend(refs_to(&f, "aws_lambda_function"));
            }
            assert_eq!(
                functions.len(),
                1,
                "route {key}: integration {integration} invokes {functions:?}"
            );
            let function = functions.into_iter().next().unwrap();
            let role = self.attr_text("resource", "aws_lambda_function", &function, "role");
            let roles = refs_to(&role, "aws_iam_role");
            assert_eq!(roles.len(), 1, "function {function}: role {role}");
            out.insert(key, roles.into_iter().next().unwrap());
        }
        out
    }

    /// The statements of every inline policy of `role`, named `policy/sid`.
    pub fn role_statements(&self, role: &str) -> Vec<(String, Statement)> {
        let mut out = Vec::new();
        for (name, body) in self.all("resource", "aws_iam_role_policy") {
            let r = text(attr(body, "role").unwrap());
            if refs_to(&r, "aws_iam_role").contains(role) {
                for s in self.statements(&self.document_of(body)) {
                    out.push((format!("{name}/{}", s.sid), s));
                }
            }
        }
        assert!(!out.is_empty(), "role {role} has no inline policy");
        out
    }

    /// The statements of the managed policy `aws_iam_policy.<name>`.
    pub fn managed_policy(&self, name: &str) -> Vec<(String, Statement)> {
        let body = self.one("resource", "aws_iam_policy", name);
        self.statements(&self.document_of(body))
            .into_iter()
            .map(|s| (format!("{name}/{}", s.sid), s))
            .collect()
    }

    /// The key policy of `aws_kms_key.<name>`.
    pub fn key_policy(&self, key: &str) -> Vec<Statement> {
        self.statements(&self.document_of(self.one("resource", "aws_kms_key", key)))
    }

    /// Every table by its deployed name.
    pub fn tables(&self) -> BTreeMap<String, Table> {
        self.all("resource", "aws_dynamodb_table")
            .map(|(_, b)| {
                let name = self.resolve(&text(attr(b, "name").unwrap()));
                let index_hash_keys = b
                    .blocks()
                    .filter(|g| g.identifier() == "global_secondary_index")
                    .map(|g| {
                        (
                            text(attr(g.body(), "name").unwrap()),
                            text(attr(g.body(), "hash_key").unwrap()),
                        )
                    })
                    .collect();
                (
                    name,
                    Table {
                        hash_key: text(attr(b, "hash_key").unwrap()),
                        index_hash_keys,
                    },
                )
            })
            .collect()
    }
}
