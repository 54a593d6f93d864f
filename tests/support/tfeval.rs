//! Terraform's `locals` and `for_each`, evaluated the way `terraform plan`
//! expands them, so that tests read the instances Terraform would create
//! rather than the text that declares them.
//!
//! `expand` turns every `resource`/`data` block with a `for_each` into one
//! block per instance, labelled `NAME["KEY"]` (the instance's address), with
//! `each.key` and `each.value` substituted and every sub-expression that
//! needs no variable or resource attribute evaluated by hcl-rs's expression
//! evaluator (`hcl::eval::Context`); a `dynamic` block inside one whose list
//! is then known becomes its blocks. A `for_each` over other resources or
//! files, which only apply knows, stays as written. What depends on a variable or on a
//! resource stays symbolic (`var.name_prefix`, `aws_kms_key.recovery_keys.arn`),
//! as it is at plan time before apply. Other blocks are left as written.
//!
//! Locals that need no variable (`local.routes`) are evaluated to values;
//! the others (`local.functions`, which holds variables) are followed as
//! expressions where a `for_each` or an index names their entries.

use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::expr::{Conditional, Operation, TemplateExpr, Traversal, TraversalOperator};
use hcl::template::{Element, Template};
use hcl::{Block, Body, Expression, Map, ObjectKey, Structure, Value};
use std::collections::BTreeMap;

/// The configuration's blocks with every `for_each` expanded.
pub fn expand(blocks: &[Block]) -> Vec<Block> {
    let locals = Locals::new(blocks);
    let mut out = Vec::new();
    for block in blocks {
        let kind = block.identifier();
        let for_each = attribute(block.body(), "for_each");
        match for_each {
            Some(expr) if kind == "resource" || kind == "data" => match locals.instances(expr) {
                Ok(instances) => {
                    for (key, value) in instances {
                        out.push(locals.instance(block, &key, &value));
                    }
                }
                // Over other resources' instances or files (alarms per
                // function, the page's files): left as written, one block
                // standing for all its instances.
                Err(_) => out.push(block.clone()),
            },
            _ => out.push(block.clone()),
        }
    }
    out
}

/// The address label of one instance: `function["list-devices"]`.
pub fn instance_name(name: &str, key: &str) -> String {
    format!("{name}[{key:?}]")
}

fn attribute<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

/// Every `locals` entry as written, and those that evaluate without a
/// variable or resource as values.
pub struct Locals {
    exprs: BTreeMap<String, Expression>,
    ctx: Context<'static>,
}

impl Locals {
    pub fn new(blocks: &[Block]) -> Locals {
        let exprs: BTreeMap<String, Expression> = blocks
            .iter()
            .filter(|b| b.identifier() == "locals")
            .flat_map(|b| b.body().attributes())
            .map(|a| (a.key().to_owned(), a.expr().clone()))
            .collect();
        // Locals name locals: evaluate until nothing more resolves.
        let mut values = Map::new();
        loop {
            let ctx = context(&values);
            let found: Vec<(String, Value)> = exprs
                .iter()
                .filter(|(name, _)| !values.contains_key(*name))
                .filter_map(|(name, e)| Some((name.clone(), e.evaluate(&ctx).ok()?)))
                .collect();
            if found.is_empty() {
                break;
            }
            values.extend(found);
        }
        Locals {
            exprs,
            ctx: context(&values),
        }
    }

    /// A local as written.
    #[allow(dead_code)] // tests/infra reads locals; tests/aws only expands.
    pub fn expr(&self, name: &str) -> Option<&Expression> {
        self.exprs.get(name)
    }

    /// `(key, each.value)` of every instance a `for_each` may create. Under
    /// a condition that needs a variable (`var.enable_xray ? local.f : {}`,
    /// `{ for k, f in local.f : k => f if var.enable_xray }`) it is every
    /// instance that may exist.
    pub fn instances(&self, expr: &Expression) -> Result<Vec<(String, Expression)>, String> {
        if let Ok(value) = expr.evaluate(&self.ctx) {
            return match value {
                Value::Object(map) => Ok(map.into_iter().map(|(k, v)| (k, v.into())).collect()),
                Value::Array(items) => items
                    .into_iter()
                    .map(|v| match v {
                        Value::String(s) => Ok((s.clone(), Expression::String(s))),
                        other => Err(format!("set element {other:?} is not a string")),
                    })
                    .collect(),
                other => Err(format!("{other:?} is neither a map nor a set")),
            };
        }
        match expr {
            Expression::Object(map) => map
                .iter()
                .map(|(k, v)| Ok((object_key(k).ok_or("computed key")?, v.clone())))
                .collect(),
            Expression::Conditional(c) => {
                let mut out = self.instances(&c.true_expr)?;
                for (k, v) in self.instances(&c.false_expr)? {
                    if !out.iter().any(|(o, _)| *o == k) {
                        out.push((k, v));
                    }
                }
                Ok(out)
            }
            Expression::Parenthesis(inner) => self.instances(inner),
            Expression::ForExpr(f) => self.filtered(f),
            Expression::Traversal(t) => match local_name(t) {
                Some(name) if t.operators.len() == 1 => {
                    self.instances(self.exprs.get(name).ok_or(format!("no local.{name}"))?)
                }
                _ => Err(format!("`{expr}` is not a local")),
            },
            other => Err(format!("`{other}` cannot be evaluated here")),
        }
    }

    /// `{ for k, v in COLLECTION : k => v if COND }`: the instances of the
    /// collection whose condition is not known to be false.
    fn filtered(&self, f: &hcl::expr::ForExpr) -> Result<Vec<(String, Expression)>, String> {
        let key_var = f.key_var.as_ref().ok_or("a for over a list")?;
        let is_var = |e: &Expression, name: &hcl::Identifier| matches!(e, Expression::Variable(v) if v.as_str() == name.as_str());
        let identity = f.key_expr.as_ref().is_some_and(|k| is_var(k, key_var))
            && is_var(&f.value_expr, &f.value_var);
        if !identity {
            return Err("a for that changes keys or values".into());
        }
        let mut out = Vec::new();
        for (key, value) in self.instances(&f.collection_expr)? {
            let mut ctx = self.ctx.clone();
            ctx.declare_var(key_var.clone(), key.clone());
            if let Ok(v) = value.evaluate(&self.ctx) {
                ctx.declare_var(f.value_var.clone(), v);
            }
            let excluded = f
                .cond_expr
                .as_ref()
                .is_some_and(|c| matches!(c.evaluate(&ctx), Ok(Value::Bool(false))));
            if !excluded {
                out.push((key, value));
            }
        }
        Ok(out)
    }

    /// One instance of `block`: `each` substituted, then evaluated as far as
    /// it goes.
    fn instance(&self, block: &Block, key: &str, value: &Expression) -> Block {
        let each = Each { key, value };
        let mut body = Body::builder();
        for structure in block.body().iter() {
            match structure {
                Structure::Attribute(a) if a.key() == "for_each" => {}
                other => body = body.add_structures(self.structures(other, &each)),
            }
        }
        let name = block
            .labels()
            .get(1)
            .map(|l| l.as_str())
            .unwrap_or_default();
        let mut labels = block.labels().to_vec();
        labels[1] = instance_name(name, key).into();
        Block::builder(block.identifier())
            .add_labels(labels)
            .add_structures(body.build())
            .build()
    }

    /// `s` in one instance: itself, or a `dynamic` block's blocks.
    fn structures(&self, s: &Structure, each: &Each<'_>) -> Vec<Structure> {
        match s {
            Structure::Block(b) if b.identifier() == "dynamic" => self
                .dynamic(b, each)
                .unwrap_or_else(|| vec![self.structure(s, each)]),
            other => vec![self.structure(other, each)],
        }
    }

    /// `dynamic "NAME" { for_each = LIST  content { ... } }` whose list is
    /// known once `each` is substituted (`for_each = each.value.pin`): one
    /// NAME block per element, `NAME.value` replaced by the element. `None`
    /// (left as written) for a list known only at plan, or an `iterator`.
    fn dynamic(&self, b: &Block, each: &Each<'_>) -> Option<Vec<Structure>> {
        let name = b.labels().first()?.as_str();
        if attribute(b.body(), "iterator").is_some() {
            return None;
        }
        let mut list = attribute(b.body(), "for_each")?.clone();
        self.substitute(&mut list, each);
        let _ = list.evaluate_in_place(&self.ctx);
        let Expression::Array(items) = list else {
            return None;
        };
        let content = b.body().blocks().find(|c| c.identifier() == "content")?;
        let blocks = items.iter().map(|item| {
            let body = content.body().iter().flat_map(|s| {
                let mut out = self.structures(s, each);
                out.iter_mut().for_each(|s| iterator_value(s, name, item));
                out
            });
            Block::builder(name).add_structures(body).build().into()
        });
        Some(blocks.collect())
    }

    fn structure(&self, s: &Structure, each: &Each<'_>) -> Structure {
        match s {
            Structure::Attribute(a) => {
                let mut e = a.expr().clone();
                self.substitute(&mut e, each);
                let _ = e.evaluate_in_place(&self.ctx);
                fold(&mut e);
                hcl::Attribute::new(a.key(), e).into()
            }
            Structure::Block(b) => {
                let body: Vec<Structure> = b
                    .body()
                    .iter()
                    .flat_map(|s| self.structures(s, each))
                    .collect();
                Block::builder(b.identifier())
                    .add_labels(b.labels().to_vec())
                    .add_structures(body)
                    .build()
                    .into()
            }
        }
    }

    /// Replaces `each.key`, `each.value...` and `local.NAME[...]...` (where
    /// the index reaches an entry of a local written as an object) in `e`.
    fn substitute(&self, e: &mut Expression, each: &Each<'_>) {
        match e {
            Expression::Array(items) => items.iter_mut().for_each(|i| self.substitute(i, each)),
            Expression::Object(map) => {
                let entries: Vec<(ObjectKey, Expression)> =
                    std::mem::take(map).into_iter().collect();
                for (mut k, mut v) in entries {
                    if let ObjectKey::Expression(ke) = &mut k {
                        self.substitute(ke, each);
                    }
                    self.substitute(&mut v, each);
                    map.insert(k, v);
                }
            }
            Expression::TemplateExpr(t) => {
                if let Some(new) = self.template(t, each) {
                    *e = new;
                }
            }
            Expression::Traversal(t) => {
                self.substitute(&mut t.expr, each);
                for op in &mut t.operators {
                    if let TraversalOperator::Index(i) = op {
                        self.substitute(i, each);
                    }
                }
                if let Some(new) = self.resolve(t, each) {
                    *e = new;
                }
            }
            Expression::FuncCall(f) => f.args.iter_mut().for_each(|a| self.substitute(a, each)),
            Expression::Parenthesis(inner) => self.substitute(inner, each),
            Expression::Conditional(c) => {
                let Conditional {
                    cond_expr,
                    true_expr,
                    false_expr,
                } = c.as_mut();
                for x in [cond_expr, true_expr, false_expr] {
                    self.substitute(x, each);
                }
            }
            Expression::Operation(op) => match op.as_mut() {
                Operation::Unary(u) => self.substitute(&mut u.expr, each),
                Operation::Binary(b) => {
                    self.substitute(&mut b.lhs_expr, each);
                    self.substitute(&mut b.rhs_expr, each);
                }
            },
            Expression::ForExpr(f) => {
                self.substitute(&mut f.collection_expr, each);
                self.substitute(&mut f.value_expr, each);
                if let Some(k) = &mut f.key_expr {
                    self.substitute(k, each);
                }
                if let Some(c) = &mut f.cond_expr {
                    self.substitute(c, each);
                }
            }
            _ => {}
        }
    }

    /// `each.key`, `each.value.a.b`, `local.map["k"].a` as the expression
    /// they stand for; `None` when `t` is none of these (or goes where no
    /// written object leads, like `local.build.zips[...]`).
    fn resolve(&self, t: &Traversal, each: &Each<'_>) -> Option<Expression> {
        let Expression::Variable(root) = &t.expr else {
            return None;
        };
        let mut ops = t.operators.iter();
        let first = match ops.next()? {
            TraversalOperator::GetAttr(a) => a.as_str(),
            _ => return None,
        };
        let start = match (root.as_str(), first) {
            ("each", "key") => Expression::String(each.key.to_owned()),
            ("each", "value") => each.value.clone(),
            // Locals without operators stay named (checks follow them).
            ("local", name) if t.operators.len() > 1 => self.exprs.get(name)?.clone(),
            _ => return None,
        };
        let rest: Vec<TraversalOperator> = ops.cloned().collect();
        let mut current = start;
        for (i, op) in rest.iter().enumerate() {
            let key = match op {
                TraversalOperator::GetAttr(a) => a.to_string(),
                TraversalOperator::Index(Expression::String(s)) => s.clone(),
                _ => None?,
            };
            match &current {
                Expression::Object(map) => {
                    current = map
                        .iter()
                        .find(|(k, _)| object_key(k).as_deref() == Some(key.as_str()))
                        .map(|(_, v)| v.clone())?;
                }
                // each.value is a reference: keep the rest as a traversal.
                _ if root.as_str() == "each" => {
                    return Some(Expression::Traversal(Box::new(Traversal::new(
                        current,
                        rest[i..].to_vec(),
                    ))));
                }
                _ => return None,
            }
        }
        Some(current)
    }

    /// A template with `each`/locals substituted in its interpolations;
    /// interpolations that became literals are inlined.
    fn template(&self, t: &TemplateExpr, each: &Each<'_>) -> Option<Expression> {
        let mut template = Template::from_expr(t).ok()?;
        let mut elements = Vec::new();
        for element in template.elements_mut().iter_mut() {
            match element {
                Element::Interpolation(i) => {
                    self.substitute(&mut i.expr, each);
                    let _ = i.expr.evaluate_in_place(&self.ctx);
                    match &i.expr {
                        Expression::String(s) => elements.push(Element::Literal(s.clone())),
                        Expression::Number(n) => elements.push(Element::Literal(n.to_string())),
                        _ => elements.push(element.clone()),
                    }
                }
                other => elements.push(other.clone()),
            }
        }
        let mut rebuilt = Template::new();
        let mut literal = String::new();
        let mut only_literal = true;
        for element in elements {
            match element {
                Element::Literal(s) => {
                    literal.push_str(&s);
                    rebuilt = rebuilt.add_literal(s);
                }
                other => {
                    only_literal = false;
                    rebuilt = rebuilt.add_element(other);
                }
            }
        }
        if only_literal {
            return Some(Expression::String(literal));
        }
        Some(Expression::TemplateExpr(Box::new(
            TemplateExpr::QuotedString(rebuilt.to_string()),
        )))
    }
}

/// Replaces `NAME.value` (a `dynamic` block's iterator) by `item` in the
/// attributes of `s` (lists, objects and parentheses included; the
/// configuration uses it nowhere else).
fn iterator_value(s: &mut Structure, name: &str, item: &Expression) {
    fn walk(e: &mut Expression, name: &str, item: &Expression) {
        match e {
            Expression::Traversal(t)
                if matches!(&t.expr, Expression::Variable(v) if v.as_str() == name)
                    && matches!(t.operators.as_slice(), [TraversalOperator::GetAttr(a)] if a.as_str() == "value") =>
            {
                *e = item.clone();
            }
            Expression::Array(items) => items.iter_mut().for_each(|i| walk(i, name, item)),
            Expression::Object(map) => map.values_mut().for_each(|v| walk(v, name, item)),
            Expression::Parenthesis(inner) => walk(inner, name, item),
            _ => {}
        }
    }
    match s {
        Structure::Attribute(a) => walk(&mut a.expr, name, item),
        Structure::Block(b) => b
            .body
            .iter_mut()
            .for_each(|s| iterator_value(s, name, item)),
    }
}

struct Each<'a> {
    key: &'a str,
    value: &'a Expression,
}

fn local_name(t: &Traversal) -> Option<&str> {
    match (&t.expr, t.operators.first()) {
        (Expression::Variable(v), Some(TraversalOperator::GetAttr(a))) if v.as_str() == "local" => {
            Some(a.as_str())
        }
        _ => None,
    }
}

fn object_key(k: &ObjectKey) -> Option<String> {
    match k {
        ObjectKey::Identifier(i) => Some(i.to_string()),
        ObjectKey::Expression(Expression::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// `true ? a : b` -> `a` (and so on inward): a condition the evaluator
/// decided picks its branch, as Terraform does.
fn fold(e: &mut Expression) {
    match e {
        Expression::Conditional(c) => {
            fold(&mut c.true_expr);
            fold(&mut c.false_expr);
            if let Expression::Bool(b) = c.cond_expr {
                *e = if b {
                    c.true_expr.clone()
                } else {
                    c.false_expr.clone()
                };
            }
        }
        Expression::Array(items) => items.iter_mut().for_each(fold),
        Expression::Object(map) => map.values_mut().for_each(fold),
        Expression::Parenthesis(inner) => fold(inner),
        _ => {}
    }
}

/// The evaluation context: `local` (the locals known so far) and the
/// Terraform functions the configuration's locals use.
fn context(locals: &Map<String, Value>) -> Context<'static> {
    use ParamType::String as S;
    let any_object = || ParamType::object_of(ParamType::Any);
    let mut ctx = Context::new();
    ctx.declare_var("local", Value::Object(locals.clone()));
    ctx.declare_func("replace", FuncDef::new(replace, [S, S, S]));
    ctx.declare_func("split", FuncDef::new(split, [S, S]));
    ctx.declare_func("join", FuncDef::new(join, [S, ParamType::array_of(S)]));
    ctx.declare_func("startswith", FuncDef::new(startswith, [S, S]));
    ctx.declare_func("keys", FuncDef::new(keys, [any_object()]));
    ctx.declare_func(
        "merge",
        FuncDef::builder().variadic_param(any_object()).build(merge),
    );
    ctx
}

fn arg(args: &FuncArgs, i: usize) -> &str {
    // The declared parameter types make these strings.
    args[i].as_str().unwrap_or_default()
}

fn replace(args: FuncArgs) -> Result<Value, String> {
    let from = arg(&args, 1);
    if from.len() > 1 && from.starts_with('/') && from.ends_with('/') {
        return Err("regular expressions are not modelled".into());
    }
    Ok(arg(&args, 0).replace(from, arg(&args, 2)).into())
}

fn split(args: FuncArgs) -> Result<Value, String> {
    let parts = arg(&args, 1).split(arg(&args, 0)).map(Value::from);
    Ok(Value::Array(parts.collect()))
}

fn join(args: FuncArgs) -> Result<Value, String> {
    let parts: Vec<&str> = args[1]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    Ok(parts.join(arg(&args, 0)).into())
}

fn startswith(args: FuncArgs) -> Result<Value, String> {
    Ok(arg(&args, 0).starts_with(arg(&args, 1)).into())
}

fn keys(args: FuncArgs) -> Result<Value, String> {
    let map = args[0].as_object().cloned().unwrap_or_default();
    Ok(Value::Array(map.into_keys().map(Value::from).collect()))
}

fn merge(args: FuncArgs) -> Result<Value, String> {
    let mut out = Map::new();
    for arg in args.variadic_args() {
        out.extend(arg.as_object().cloned().unwrap_or_default());
    }
    Ok(Value::Object(out))
}
