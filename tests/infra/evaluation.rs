//! The evaluator the Terraform checks read through (`tests/support/tfeval.rs`):
//! `for_each` over locals becomes the instances plan would create.

use crate::tfeval;
use hcl::{Block, Body};

fn expand(text: &str) -> Vec<Block> {
    let body: Body = hcl::from_str(text).unwrap();
    tfeval::expand(&body.into_blocks().collect::<Vec<_>>())
}

fn attr(blocks: &[Block], name: &str, key: &str) -> String {
    let block = blocks
        .iter()
        .find(|b| b.labels().get(1).map(|l| l.as_str()) == Some(name))
        .unwrap_or_else(|| panic!("no instance {name}"));
    let expr = block
        .body()
        .attributes()
        .find(|a| a.key() == key)
        .unwrap()
        .expr();
    expr.to_string()
}

const CONFIG: &str = r#"
locals {
  functions = {
    "a-b" = { size = var.size, extra = 0 }
    "c"   = { size = 1, extra = var.extra }
  }
  routes  = { "GET /x/{id}" = "a-b", "PUT /y" = "c" }
  sources = { for k, f in local.routes : k => replace(k, " ", "") if f == "c" }
}

resource "t" "fn" {
  for_each = local.functions
  name     = "${var.prefix}-${each.key}"
  size     = each.value.size
  pick     = each.value.extra > 0 ? aws_x.alias[0].arn : aws_x.fn[each.key].arn
  log      = "${aws_log.fn[each.key].arn}:*"
}

resource "t" "route" {
  for_each = local.routes
  target   = "integrations/${t.fn[each.value].id}"
}

resource "t" "perm" {
  for_each = local.sources
  source   = "${t.api.arn}/*/${each.value}"
}

resource "t" "some" {
  for_each = { for k, f in local.functions : k => f if k != "c" }
  role     = t.fn[each.key].name
}

# Unknown until plan: every instance that may exist.
resource "t" "maybe" {
  for_each = { for k, f in local.functions : k => f if var.on }
  role     = t.fn[each.key].name
}

resource "t" "files" {
  for_each = fileset("web", "**")
  key      = each.value
}
"#;

#[test]
fn for_each_over_locals_becomes_one_block_per_instance() {
    let blocks = expand(CONFIG);
    let names: Vec<String> = blocks
        .iter()
        .filter_map(|b| b.labels().get(1).map(|l| l.as_str().to_owned()))
        .collect();
    assert_eq!(
        names,
        [
            r#"fn["a-b"]"#,
            r#"fn["c"]"#,
            r#"route["GET /x/{id}"]"#,
            r#"route["PUT /y"]"#,
            r#"perm["PUT /y"]"#,
            r#"some["a-b"]"#,
            r#"maybe["a-b"]"#,
            r#"maybe["c"]"#,
            "files",
        ]
    );
    // each.key inlined into templates, each.value followed into the local.
    assert_eq!(
        attr(&blocks, r#"fn["a-b"]"#, "name"),
        r#""${var.prefix}-a-b""#
    );
    assert_eq!(attr(&blocks, r#"fn["a-b"]"#, "size"), "var.size");
    assert_eq!(attr(&blocks, r#"fn["c"]"#, "size"), "1");
    // A condition the evaluator decides picks its branch; one it cannot stays.
    assert_eq!(
        attr(&blocks, r#"fn["a-b"]"#, "pick"),
        r#"aws_x.fn["a-b"].arn"#
    );
    assert_eq!(
        attr(&blocks, r#"fn["c"]"#, "pick"),
        r#"var.extra > 0 ? aws_x.alias[0].arn : aws_x.fn["c"].arn"#
    );
    assert_eq!(
        attr(&blocks, r#"fn["c"]"#, "log"),
        r#""${aws_log.fn["c"].arn}:*""#
    );
    assert_eq!(
        attr(&blocks, r#"route["GET /x/{id}"]"#, "target"),
        r#""integrations/${t.fn["a-b"].id}""#
    );
    // A local computed from locals by a for expression, with functions.
    assert_eq!(
        attr(&blocks, r#"perm["PUT /y"]"#, "source"),
        r#""${t.api.arn}/*/PUT/y""#
    );
    assert_eq!(attr(&blocks, r#"maybe["c"]"#, "role"), r#"t.fn["c"].name"#);
}
