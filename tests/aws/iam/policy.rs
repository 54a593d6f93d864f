//! IAM policy evaluation, as AWS documents it, for the subset of the policy
//! language `infra/` uses: Allow/Deny statements with actions, resources,
//! principals and conditions. Anything outside that subset panics, so a new
//! construct in `infra/` cannot be silently read as "allowed".

use std::collections::BTreeMap;

/// One `statement` of an `aws_iam_policy_document`.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sid: String,
    pub allow: bool,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
    /// Principal identifiers (key policies only), resolved by the caller.
    pub principals: Vec<String>,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone)]
pub struct Condition {
    pub test: String,
    pub variable: String,
    pub values: Vec<String>,
}

/// What AWS authorizes one call (or one item of a transaction) by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    pub action: String,
    pub resource: String,
    /// Condition keys with their values (multivalued keys such as
    /// `dynamodb:LeadingKeys` or `kms:EncryptionContextKeys`). An absent
    /// key is absent, not empty.
    pub context: BTreeMap<String, Vec<String>>,
}

/// IAM's `*`/`?` wildcard match (case-sensitive, as for ARNs).
pub fn like(pattern: &str, value: &str) -> bool {
    fn go(p: &[u8], v: &[u8]) -> bool {
        match (p.first(), v.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], v) || (!v.is_empty() && go(p, &v[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &v[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &v[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), value.as_bytes())
}

/// Actions match case-insensitively (`dynamodb:getitem` is `dynamodb:GetItem`).
fn action_matches(pattern: &str, action: &str) -> bool {
    like(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
}

fn single(op: &str, value: &str, want: &[String]) -> bool {
    match op {
        "StringEquals" => want.iter().any(|w| w == value),
        "StringLike" => want.iter().any(|w| like(w, value)),
        "StringNotEquals" => !want.iter().any(|w| w == value),
        "ArnLike" => want.iter().any(|w| like(w, value)),
        "ArnEquals" => want.iter().any(|w| w == value),
        "Bool" => want.iter().any(|w| w.eq_ignore_ascii_case(value)),
        other => {
            panic!("condition operator {other:?} is not modelled: extend tests/aws/iam/policy.rs")
        }
    }
}

/// One condition against the request context (AWS's documented semantics:
/// `ForAllValues` holds vacuously for an absent key, which is why `infra/`
/// pairs it with a `Null` test; `IfExists` holds when the key is absent).
pub fn condition_holds(c: &Condition, ctx: &BTreeMap<String, Vec<String>>) -> bool {
    let got = ctx.get(&c.variable);
    if c.test == "Null" {
        let want_null = c.values.iter().any(|v| v == "true");
        return got.is_none() == want_null;
    }
    let (set_op, op) = match c.test.split_once(':') {
        Some((s, o)) => (Some(s), o),
        None => (None, c.test.as_str()),
    };
    let (op, if_exists) = match op.strip_suffix("IfExists") {
        Some(o) => (o, true),
        None => (op, false),
    };
    match (set_op, got) {
        (Some("ForAllValues"), None) => true,
        (Some("ForAllValues"), Some(vs)) => vs.iter().all(|v| single(op, v, &c.values)),
        (Some("ForAnyValue"), None) => false,
        (Some("ForAnyValue"), Some(vs)) => vs.iter().any(|v| single(op, v, &c.values)),
        (Some(other), _) => panic!("set operator {other:?} is not modelled"),
        (None, None) => if_exists,
        (None, Some(vs)) => match vs.as_slice() {
            [v] => single(op, v, &c.values),
            // A single-valued operator on a multivalued key: AWS compares
            // each value; any match counts (and is what nobody should rely on).
            vs => vs.iter().any(|v| single(op, v, &c.values)),
        },
    }
}

/// Does `s` apply to `req` (for `principal`, when it names principals)?
pub fn applies(s: &Statement, req: &Request, principal: Option<&str>) -> bool {
    s.actions.iter().any(|a| action_matches(a, &req.action))
        && s.resources.iter().any(|r| like(r, &req.resource))
        && match principal {
            None => true,
            Some(p) => s.principals.iter().any(|x| x == p),
        }
        && s.conditions
            .iter()
            .all(|c| condition_holds(c, &req.context))
}

/// Explicit deny wins, then any allow; else the implicit deny.
pub fn allows(statements: &[Statement], req: &Request, principal: Option<&str>) -> bool {
    if statements
        .iter()
        .any(|s| !s.allow && applies(s, req, principal))
    {
        return false;
    }
    statements
        .iter()
        .any(|s| s.allow && applies(s, req, principal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn cond(test: &str, var: &str, values: &[&str]) -> Condition {
        Condition {
            test: test.into(),
            variable: var.into(),
            values: values.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn wildcards_match_as_iam_does() {
        assert!(like(
            "arn:aws:dynamodb:*:*:table/t",
            "arn:aws:dynamodb:r:1:table/t"
        ));
        assert!(like("T#*", "T#contoso"));
        assert!(!like("T#*", "D#contoso#PC"));
        assert!(!like("arn:x:table/t", "arn:x:table/t/index/i"));
        assert!(action_matches("dynamodb:Get*", "dynamodb:GetItem"));
        assert!(action_matches("DynamoDB:getitem", "dynamodb:GetItem"));
    }

    #[test]
    fn for_all_values_is_vacuous_without_the_key_and_null_closes_that() {
        let all = cond("ForAllValues:StringLike", "dynamodb:LeadingKeys", &["T#*"]);
        let null = cond("Null", "dynamodb:LeadingKeys", &["false"]);
        let none = ctx(&[]);
        let tenant = ctx(&[("dynamodb:LeadingKeys", &["T#a"])]);
        let mixed = ctx(&[("dynamodb:LeadingKeys", &["T#a", "D#a#PC"])]);
        assert!(condition_holds(&all, &none));
        assert!(!condition_holds(&null, &none));
        assert!(condition_holds(&all, &tenant) && condition_holds(&null, &tenant));
        assert!(!condition_holds(&all, &mixed));
        let keys = cond(
            "ForAllValues:StringEquals",
            "kms:EncryptionContextKeys",
            &["tenant_id", "device_id", "key_id"],
        );
        assert!(condition_holds(
            &keys,
            &ctx(&[("kms:EncryptionContextKeys", &["tenant_id", "key_id"])])
        ));
        assert!(!condition_holds(
            &keys,
            &ctx(&[("kms:EncryptionContextKeys", &["tenant_id", "other"])])
        ));
    }

    #[test]
    fn explicit_deny_wins() {
        let req = Request {
            action: "dynamodb:GetItem".into(),
            resource: "arn:t".into(),
            context: BTreeMap::new(),
        };
        let allow = Statement {
            sid: "A".into(),
            allow: true,
            actions: vec!["dynamodb:*".into()],
            resources: vec!["*".into()],
            principals: vec![],
            conditions: vec![],
        };
        let deny = Statement {
            allow: false,
            sid: "D".into(),
            ..allow.clone()
        };
        assert!(allows(std::slice::from_ref(&allow), &req, None));
        assert!(!allows(&[allow, deny], &req, None));
        assert!(!allows(&[], &req, None));
    }
}
