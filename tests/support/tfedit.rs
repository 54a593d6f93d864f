//! Structural edits of the configuration as written, for the mutation
//! checks: each names what it changes by its place in the parsed HCL (a
//! block path and an attribute, an object entry, a list element), never by
//! the n-th occurrence of some text, and fails loudly when that place is
//! gone.
//!
//! A block path is `/`-separated: the first segment is a top-level block
//! (`resource.TYPE.NAME`, `data.TYPE.NAME`, `variable.NAME`, or `locals`,
//! the locals block that holds the edited attribute); each further segment
//! is a nested block: `IDENT` (the first), `IDENT#N` (the N-th),
//! `IDENT[ATTR=VALUE]` (the one whose attribute reads VALUE, e.g.
//! `statement[sid=QueryAuditIndexes]`) or `IDENT.LABEL` (`dynamic.route_settings`).
//! A top-level segment may carry a `[ATTR=VALUE]` too (`moved[from=...]`).

use hcl::{Attribute, Block, Body, Expression, ObjectKey, Structure};

/// One edit. Expressions are HCL source (`"[\"*\"]"`, `var.x`).
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // Each test binary uses the edits it needs.
pub enum Edit {
    /// Sets (or adds) an attribute.
    Set(&'static str, &'static str, &'static str),
    /// Removes an attribute.
    Remove(&'static str, &'static str),
    /// Removes the block the path ends at.
    Drop(&'static str),
    /// Appends blocks/attributes (HCL source) to the body at the path (`""`:
    /// the top level).
    Add(&'static str, &'static str),
    /// Renames the block the path ends at (`validation` -> `unchecked`).
    Rename(&'static str, &'static str),
    /// Replaces every sub-expression equal to the first expression by the
    /// second, in the attribute (`"*"`: every attribute, nested blocks too).
    Rewrite(&'static str, &'static str, &'static str, &'static str),
    /// Appends an element to a list attribute.
    AddItem(&'static str, &'static str, &'static str),
    /// Removes an element from every list in the attribute, at any depth.
    RemoveItem(&'static str, &'static str, &'static str),
    /// Sets the value of an object entry, found by its keys from any object
    /// in the attribute (`&["manage-keys", "zip"]`).
    SetEntry(
        &'static str,
        &'static str,
        &'static [&'static str],
        &'static str,
    ),
    /// Removes an object entry (found as for `SetEntry`).
    DropEntry(&'static str, &'static str, &'static [&'static str]),
    /// Renames an object entry's key.
    RenameEntry(&'static str, &'static str, &'static str, &'static str),
}

/// Applies `edit` to `blocks`; panics naming the edit if its target is gone.
pub fn apply(blocks: &mut Vec<Block>, edit: Edit) {
    match edit {
        Edit::Set(path, key, value) => {
            let body = body_at(blocks, path, key);
            let value = expr(value);
            match body.attributes_mut().find(|a| a.key() == key) {
                Some(a) => a.expr = value,
                None => body.0.push(Attribute::new(key, value).into()),
            }
        }
        Edit::Remove(path, key) => {
            let body = body_at(blocks, path, key);
            let before = body.0.len();
            body.0
                .retain(|s| !matches!(s, Structure::Attribute(a) if a.key() == key));
            assert!(body.0.len() < before, "{path}: no attribute {key}");
        }
        Edit::Drop(path) if !path.contains('/') => {
            let index = top_index(blocks, path, "");
            blocks.remove(index);
        }
        Edit::Drop(path) => {
            let (parent, last) = path.rsplit_once('/').expect("a nested block path");
            let body = body_at(blocks, parent, "");
            let index = find_block(body, last).unwrap_or_else(|| panic!("{path}: no such block"));
            let mut i = 0;
            body.0.retain(|s| {
                let Structure::Block(_) = s else {
                    return true;
                };
                i += 1;
                i - 1 != index
            });
        }
        Edit::Add(path, text) => {
            let added: Body = hcl::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            if path.is_empty() {
                blocks.extend(added.into_blocks());
            } else {
                body_at(blocks, path, "").0.extend(added);
            }
        }
        Edit::Rename(path, ident) => {
            let (parent, last) = path.rsplit_once('/').expect("a nested block path");
            let body = body_at(blocks, parent, "");
            let index = find_block(body, last).unwrap_or_else(|| panic!("{path}: no such block"));
            let block = body.blocks_mut().nth(index).unwrap();
            block.identifier = hcl::Identifier::new(ident).unwrap();
        }
        Edit::Rewrite(path, key, from, to) => {
            let (from, to) = (expr(from), expr(to));
            let mut count = 0;
            for e in attribute_exprs(body_at(blocks, path, key), key) {
                count += rewrite(e, &from, &to);
            }
            assert!(count > 0, "{path}: no `{from}` in {key}");
        }
        Edit::AddItem(..) | Edit::RemoveItem(..) => apply_list(blocks, edit),
        Edit::SetEntry(..) | Edit::DropEntry(..) | Edit::RenameEntry(..) => {
            apply_entry(blocks, edit)
        }
    }
}

/// The list edits: one element in or out.
fn apply_list(blocks: &mut [Block], edit: Edit) {
    match edit {
        Edit::AddItem(path, key, item) => match attr_mut(body_at(blocks, path, key), key) {
            Expression::Array(items) => items.push(expr(item)),
            other => panic!("{path}: {key} is `{other}`, not a list"),
        },
        Edit::RemoveItem(path, key, item) => {
            let item = expr(item);
            let mut count = 0;
            for e in attribute_exprs(body_at(blocks, path, key), key) {
                count += remove_item(e, &item);
            }
            assert!(count > 0, "{path}: no list in {key} holds `{item}`");
        }
        _ => unreachable!("not a list edit"),
    }
}

/// The object-entry edits: set, drop or rename an entry.
fn apply_entry(blocks: &mut [Block], edit: Edit) {
    match edit {
        Edit::SetEntry(path, key, keys, value) => {
            let e = attr_mut(body_at(blocks, path, key), key);
            *entry(e, keys).unwrap_or_else(|| panic!("{path}: no entry {keys:?} in {key}")) =
                expr(value);
        }
        Edit::DropEntry(path, key, keys) => {
            let (last, parents) = keys.split_last().expect("a key");
            let e = attr_mut(body_at(blocks, path, key), key);
            let map = match parents {
                [] => object_with(e, last),
                _ => entry(e, parents).and_then(|p| object_with(p, last)),
            }
            .unwrap_or_else(|| panic!("{path}: no entry {keys:?} in {key}"));
            map.retain(|k, _| key_text(k).as_deref() != Some(last));
        }
        Edit::RenameEntry(path, key, from, to) => {
            let e = attr_mut(body_at(blocks, path, key), key);
            let map = object_with(e, from).unwrap_or_else(|| panic!("{path}: no entry {from}"));
            let entries: Vec<(ObjectKey, Expression)> = std::mem::take(map).into_iter().collect();
            for (k, v) in entries {
                let k = if key_text(&k).as_deref() == Some(from) {
                    ObjectKey::Expression(Expression::String(to.to_owned()))
                } else {
                    k
                };
                map.insert(k, v);
            }
        }
        _ => unreachable!("not an entry edit"),
    }
}

/// An expression as the checks compare it: a string's value, a template
/// without `${` `}`, anything else as HCL.
fn norm(expr: &Expression) -> String {
    match expr {
        Expression::String(s) => s.clone(),
        Expression::TemplateExpr(t) => t.to_string().replace("${", "").replace('}', ""),
        other => other.to_string(),
    }
}

/// HCL expression source as an expression.
fn expr(text: &str) -> Expression {
    let body: Body = hcl::from_str(&format!("x = {text}\n"))
        .unwrap_or_else(|e| panic!("mutation expression `{text}`: {e}"));
    body.into_attributes().next().unwrap().expr
}

/// Index of the top-level block a path's first segment names.
fn top_index(blocks: &[Block], top: &str, key: &str) -> usize {
    let (head, predicate) = top.split_once('[').unwrap_or((top, ""));
    let parts: Vec<&str> = head.split('.').collect();
    blocks
        .iter()
        .position(|b| {
            let labels: Vec<&str> = b.labels().iter().map(|l| l.as_str()).collect();
            let named = match parts.as_slice() {
                ["locals"] => b.body().attributes().any(|a| a.key() == key),
                [_, rest @ ..] => labels == rest,
                [] => false,
            };
            let selected = match predicate.strip_suffix(']').and_then(|p| p.split_once('=')) {
                Some((k, v)) => b
                    .body()
                    .attributes()
                    .any(|a| a.key() == k && norm(a.expr()) == v),
                None => true,
            };
            b.identifier() == parts[0] && named && selected
        })
        .unwrap_or_else(|| panic!("no top-level block {top} (for {key})"))
}

/// The body a block path names. `locals` is the locals block holding `key`.
fn body_at<'a>(blocks: &'a mut [Block], path: &str, key: &str) -> &'a mut Body {
    let mut segments = path.split('/');
    let top = segments.next().unwrap_or_default();
    let index = top_index(blocks, top, key);
    let mut body = &mut blocks[index].body;
    for segment in segments {
        let index =
            find_block(body, segment).unwrap_or_else(|| panic!("{path}: no block {segment}"));
        body = &mut body.blocks_mut().nth(index).unwrap().body;
    }
    body
}

/// Index (among the body's blocks) of the block a path segment names.
fn find_block(body: &Body, segment: &str) -> Option<usize> {
    let (ident, rest) = segment
        .find(['#', '[', '.'])
        .map_or((segment, ""), |i| segment.split_at(i));
    let mut candidates = body
        .blocks()
        .enumerate()
        .filter(|(_, b)| b.identifier() == ident);
    if let Some(n) = rest.strip_prefix('#') {
        return candidates.nth(n.parse().ok()?).map(|(i, _)| i);
    }
    if let Some(label) = rest.strip_prefix('.') {
        return candidates
            .find(|(_, b)| b.labels().first().map(|l| l.as_str()) == Some(label))
            .map(|(i, _)| i);
    }
    if let Some(cond) = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let (key, value) = cond.split_once('=')?;
        return candidates
            .find(|(_, b)| {
                b.body()
                    .attributes()
                    .any(|a| a.key() == key && norm(a.expr()) == value)
            })
            .map(|(i, _)| i);
    }
    candidates.next().map(|(i, _)| i)
}

fn attr_mut<'a>(body: &'a mut Body, key: &str) -> &'a mut Expression {
    &mut body
        .attributes_mut()
        .find(|a| a.key() == key)
        .unwrap_or_else(|| panic!("no attribute {key}"))
        .expr
}

/// The attribute `key`, or with `"*"` every attribute of the body and its
/// nested blocks.
fn attribute_exprs<'a>(body: &'a mut Body, key: &str) -> Vec<&'a mut Expression> {
    let mut out = Vec::new();
    for s in body.iter_mut() {
        match s {
            Structure::Attribute(a) if key == "*" || a.key() == key => out.push(&mut a.expr),
            Structure::Block(b) if key == "*" => out.extend(attribute_exprs(&mut b.body, key)),
            _ => {}
        }
    }
    out
}

/// Every direct sub-expression of `e`.
fn children(e: &mut Expression) -> Vec<&mut Expression> {
    use hcl::expr::{Operation, TraversalOperator};
    match e {
        Expression::Array(items) => items.iter_mut().collect(),
        Expression::Object(map) => map.values_mut().collect(),
        Expression::FuncCall(f) => f.args.iter_mut().collect(),
        Expression::Parenthesis(inner) => vec![inner.as_mut()],
        Expression::Conditional(c) => {
            let c = c.as_mut();
            vec![&mut c.cond_expr, &mut c.true_expr, &mut c.false_expr]
        }
        Expression::Operation(op) => match op.as_mut() {
            Operation::Unary(u) => vec![&mut u.expr],
            Operation::Binary(b) => vec![&mut b.lhs_expr, &mut b.rhs_expr],
        },
        Expression::ForExpr(f) => {
            let f = f.as_mut();
            let mut out = vec![&mut f.collection_expr, &mut f.value_expr];
            out.extend(f.key_expr.as_mut());
            out.extend(f.cond_expr.as_mut());
            out
        }
        Expression::Traversal(t) => {
            let t = t.as_mut();
            let mut out = vec![&mut t.expr];
            for op in &mut t.operators {
                if let TraversalOperator::Index(i) = op {
                    out.push(i);
                }
            }
            out
        }
        _ => vec![],
    }
}

fn rewrite(e: &mut Expression, from: &Expression, to: &Expression) -> usize {
    if e == from {
        *e = to.clone();
        return 1;
    }
    children(e).into_iter().map(|c| rewrite(c, from, to)).sum()
}

fn remove_item(e: &mut Expression, item: &Expression) -> usize {
    let mut count = 0;
    if let Expression::Array(items) = e {
        let before = items.len();
        items.retain(|i| i != item);
        count += before - items.len();
    }
    count
        + children(e)
            .into_iter()
            .map(|c| remove_item(c, item))
            .sum::<usize>()
}

fn key_text(k: &ObjectKey) -> Option<String> {
    match k {
        ObjectKey::Identifier(i) => Some(i.to_string()),
        ObjectKey::Expression(Expression::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The first object (depth first) with an entry `key`.
fn object_with<'a>(
    e: &'a mut Expression,
    key: &str,
) -> Option<&'a mut hcl::Object<ObjectKey, Expression>> {
    let has = matches!(e, Expression::Object(map) if map.keys().any(|k| key_text(k).as_deref() == Some(key)));
    if has {
        let Expression::Object(map) = e else {
            unreachable!()
        };
        return Some(map);
    }
    children(e).into_iter().find_map(|c| object_with(c, key))
}

/// The value at `keys` (the first from any object holding `keys[0]`, then
/// down through nested objects).
fn entry<'a>(e: &'a mut Expression, keys: &[&str]) -> Option<&'a mut Expression> {
    let (first, rest) = keys.split_first()?;
    let map = object_with(e, first)?;
    let mut value = map
        .iter_mut()
        .find(|(k, _)| key_text(k).as_deref() == Some(first))
        .map(|(_, v)| v)?;
    for key in rest {
        let Expression::Object(inner) = value else {
            return None;
        };
        value = inner
            .iter_mut()
            .find(|(k, _)| key_text(k).as_deref() == Some(key))
            .map(|(_, v)| v)?;
    }
    Some(value)
}
