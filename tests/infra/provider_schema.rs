//! `infra/*.tf` against the `hashicorp/aws` provider's own schema.
//!
//! `terraform validate` needs the provider binary, which cannot be
//! downloaded everywhere the tests run. The provider's schema is also
//! published on npm: cdktf generates `@cdktf/provider-aws` from the
//! provider itself (`terraform providers schema -json`), and its `.jsii`
//! file describes every resource and data source as a class whose `Config`
//! interface has one property per argument and nested block. Each property's
//! documentation links to the registry under its Terraform name
//! (`.../docs/resources/dynamodb_table#billing_mode`); nested blocks are
//! properties typed with another struct and documented as "`x` block.";
//! a struct-typed property not documented so is a nested attribute
//! (`x = { ... }`); a single struct (not a list) allows one block at most;
//! a property that is not `optional` is required.
//!
//! `scripts/provider-schema.sh` installs the pinned version (see
//! `scripts/schema/package.json`) into `scripts/schema/node_modules`;
//! `scripts/test.sh` runs it before `cargo test`. Without it these tests
//! fail (they never skip).
//!
//! Checked, for every `resource`, `data` and `provider "aws"` block:
//! unknown arguments and nested blocks at any depth (inside
//! `dynamic "x" { content { ... } }` too), arguments written as blocks and
//! blocks written as arguments, repeated single blocks, and missing required
//! arguments and blocks (a `dynamic` block counts as its block). Meta-
//! arguments (`count`, `for_each`, `provider`, `depends_on`, `lifecycle`,
//! `provisioner`, `connection`) are allowed at the top of a resource; the
//! values of arguments are not checked (types, enums and conflicts are the
//! provider's run-time validation, beyond what the schema records).

use hcl::{Block, Body};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

const PACKAGE: &str = "@cdktf/provider-aws";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn package_dir() -> PathBuf {
    repo().join("scripts/schema/node_modules").join(PACKAGE)
}

// ---------------------------------------------------------------------------
// The schema, from the package's .jsii
// ---------------------------------------------------------------------------

/// The parts of a jsii assembly read here (everything else is skipped).
#[derive(Deserialize)]
struct Jsii {
    types: HashMap<String, JsiiType>,
}

#[derive(Deserialize)]
struct JsiiType {
    #[serde(default)]
    base: Option<String>,
    #[serde(default)]
    datatype: bool,
    #[serde(default)]
    docs: Docs,
    #[serde(default)]
    initializer: Option<Initializer>,
    #[serde(default)]
    properties: Vec<JsiiProperty>,
}

#[derive(Deserialize, Default)]
struct Docs {
    #[serde(default)]
    summary: String,
    #[serde(default)]
    remarks: String,
}

#[derive(Deserialize)]
struct Initializer {
    #[serde(default)]
    parameters: Vec<Parameter>,
}

#[derive(Deserialize)]
struct Parameter {
    name: String,
    #[serde(rename = "type")]
    ty: serde_json::Value,
}

#[derive(Deserialize)]
struct JsiiProperty {
    name: String,
    #[serde(default)]
    optional: bool,
    #[serde(default)]
    docs: Docs,
    #[serde(rename = "type")]
    ty: serde_json::Value,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Resource,
    Data,
    Provider,
}

impl Kind {
    fn keyword(self) -> &'static str {
        match self {
            Kind::Resource => "resource",
            Kind::Data => "data",
            Kind::Provider => "provider",
        }
    }
}

#[derive(Debug)]
enum Shape {
    /// A plain argument (`x = ...`), or a nested attribute (an object or a
    /// list of objects, also `x = ...`).
    Argument { nested_attribute: bool },
    /// A nested block of the struct `fqn`; `single`: one at most.
    Block { fqn: String, single: bool },
}

#[derive(Debug)]
struct Property {
    required: bool,
    shape: Shape,
}

/// The arguments and nested blocks of one block type, by Terraform name.
type Struct = BTreeMap<String, Property>;

pub struct Schema {
    /// The npm package's version and the provider's (`6.25.0`).
    pub package_version: String,
    pub provider_version: String,
    /// `(resource|data|provider, "aws_x")` -> the fqn of its Config struct.
    roots: HashMap<(Kind, String), String>,
    structs: HashMap<String, Struct>,
}

/// The first `{@link https://registry.terraform.io/providers/hashicorp/aws/<v>/docs<path> <text>}`
/// of a doc string: `(<path>, <text>)`.
fn registry_link(doc: &str) -> Option<(&str, &str)> {
    let start = doc.find("{@link https://registry.terraform.io/providers/hashicorp/aws/")?;
    let rest = &doc[start + "{@link ".len()..];
    let end = rest.find('}')?;
    let (url, text) = rest[..end].split_once(' ')?;
    let path = &url[url.find("/docs")? + "/docs".len()..];
    Some((path, text))
}

/// A struct type the property refers to (directly, in a union with
/// `IResolvable`, or as a collection's element): `(fqn, single)`.
fn struct_ref(ty: &serde_json::Value, types: &HashMap<String, JsiiType>) -> Option<(String, bool)> {
    if let Some(fqn) = ty.get("fqn").and_then(|f| f.as_str()) {
        return types
            .get(fqn)
            .filter(|t| t.datatype)
            .map(|_| (fqn.to_owned(), true));
    }
    if let Some(union) = ty.pointer("/union/types").and_then(|u| u.as_array()) {
        return union.iter().find_map(|t| struct_ref(t, types));
    }
    if let Some(element) = ty.pointer("/collection/elementtype") {
        return struct_ref(element, types).map(|(fqn, _)| (fqn, false));
    }
    None
}

impl Schema {
    fn load() -> Result<Schema, String> {
        let dir = package_dir();
        let not_installed = |what: String| {
            format!(
                "{what}\nThe AWS provider's schema ({PACKAGE}, pinned in scripts/schema/package.json) \
                 is installed by scripts/provider-schema.sh, which scripts/test.sh and \
                 scripts/check-infra.sh run: run scripts/test.sh (or scripts/provider-schema.sh, \
                 then cargo test --test infra)."
            )
        };
        let pinned = read_json(&repo().join("scripts/schema/package.json"))?;
        let want = pinned
            .pointer(&format!("/dependencies/{}", PACKAGE.replace('/', "~1")))
            .and_then(|v| v.as_str())
            .ok_or("scripts/schema/package.json pins no @cdktf/provider-aws version")?
            .to_owned();
        let manifest = read_json(&dir.join("package.json")).map_err(not_installed)?;
        let package_version = manifest["version"].as_str().unwrap_or_default().to_owned();
        if package_version != want {
            return Err(not_installed(format!(
                "{} is version {package_version}, scripts/schema/package.json pins {want}",
                dir.display()
            )));
        }
        let provider = &manifest["cdktf"]["provider"];
        if provider["name"] != "registry.terraform.io/hashicorp/aws" {
            return Err(format!(
                "{PACKAGE}@{want} is not generated from hashicorp/aws: {provider}"
            ));
        }
        let provider_version = provider["version"].as_str().unwrap_or_default().to_owned();

        let path = dir.join(".jsii");
        let text = std::fs::read(&path)
            .map_err(|e| not_installed(format!("reading {}: {e}", path.display())))?;
        let jsii: Jsii = serde_json::from_slice(&text)
            .map_err(|e| format!("parsing {}: {e}", path.display()))?;
        drop(text);
        Schema::from_jsii(jsii, package_version, provider_version)
    }

    fn from_jsii(
        jsii: Jsii,
        package_version: String,
        provider_version: String,
    ) -> Result<Schema, String> {
        let types = &jsii.types;
        let mut roots = HashMap::new();
        for (fqn, ty) in types {
            let kind = match ty.base.as_deref() {
                Some("cdktf.TerraformResource") => Kind::Resource,
                Some("cdktf.TerraformDataSource") => Kind::Data,
                Some("cdktf.TerraformProvider") => Kind::Provider,
                _ => continue,
            };
            let name = match kind {
                Kind::Provider => "aws".to_owned(),
                _ => registry_link(&ty.docs.summary)
                    .map(|(_, text)| text.to_owned())
                    .ok_or_else(|| format!("{fqn}: no registry link naming the type"))?,
            };
            let config = ty
                .initializer
                .as_ref()
                .and_then(|i| i.parameters.iter().find(|p| p.name == "config"))
                .and_then(|p| p.ty.get("fqn"))
                .and_then(|f| f.as_str())
                .ok_or_else(|| format!("{fqn}: no config parameter"))?;
            roots.insert((kind, name), config.to_owned());
        }
        let mut structs = HashMap::new();
        for (fqn, ty) in types.iter().filter(|(_, t)| t.datatype) {
            let mut props = Struct::new();
            for p in &ty.properties {
                let doc = format!("{} {}", p.docs.summary, p.docs.remarks);
                let (path, _) = registry_link(&doc)
                    .ok_or_else(|| format!("{fqn}.{}: no registry link", p.name))?;
                let name = path
                    .rsplit_once('#')
                    .map(|(_, anchor)| anchor.to_owned())
                    .ok_or_else(|| format!("{fqn}.{}: no #argument in {path}", p.name))?;
                let shape = match struct_ref(&p.ty, types) {
                    Some((fqn, single)) if p.docs.summary.ends_with(" block.") => {
                        Shape::Block { fqn, single }
                    }
                    Some(_) => Shape::Argument {
                        nested_attribute: true,
                    },
                    None => Shape::Argument {
                        nested_attribute: false,
                    },
                };
                props.insert(
                    name,
                    Property {
                        required: !p.optional,
                        shape,
                    },
                );
            }
            structs.insert(fqn.clone(), props);
        }
        if roots.len() < 1000 {
            return Err(format!(
                "only {} resources and data sources found in {PACKAGE}: has the .jsii layout changed?",
                roots.len()
            ));
        }
        Ok(Schema {
            package_version,
            provider_version,
            roots,
            structs,
        })
    }

    fn root(&self, kind: Kind, name: &str) -> Option<&Struct> {
        self.roots
            .get(&(kind, name.to_owned()))
            .and_then(|fqn| self.structs.get(fqn))
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))
}

/// The schema, loaded once per test binary (the .jsii is 130 MB).
fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();
    match SCHEMA.get_or_init(|| {
        let started = Instant::now();
        let schema = Schema::load();
        if let Ok(s) = &schema {
            println!(
                "provider schema: {PACKAGE}@{} (hashicorp/aws {}), {} resource, data source and provider types, loaded in {:.1?}",
                s.package_version,
                s.provider_version,
                s.roots.len(),
                started.elapsed()
            );
        }
        schema
    }) {
        Ok(schema) => schema,
        Err(e) => panic!("{e}"),
    }
}

// ---------------------------------------------------------------------------
// The checker
// ---------------------------------------------------------------------------

/// Meta-arguments Terraform itself handles, by block kind.
const META_ARGUMENTS: &[&str] = &["count", "for_each", "provider", "depends_on"];
const RESOURCE_META_BLOCKS: &[&str] = &["lifecycle", "provisioner", "connection"];
const DATA_META_BLOCKS: &[&str] = &["lifecycle"];

/// Every problem of `sources` (`(file name, HCL)`) against the schema, as
/// `infra/<file>: <address>[.<block>...]: <problem>`; and how many blocks
/// were checked.
pub fn check(schema: &Schema, sources: &[(String, String)]) -> (Vec<String>, usize) {
    let mut errors = Vec::new();
    let mut checked = 0;
    for (file, text) in sources {
        let body: Body = match hcl::from_str(text) {
            Ok(body) => body,
            Err(e) => {
                errors.push(format!("infra/{file}: not valid HCL: {e}"));
                continue;
            }
        };
        for block in body.blocks() {
            let kind = match block.identifier() {
                "resource" => Kind::Resource,
                "data" => Kind::Data,
                "provider" => Kind::Provider,
                _ => continue,
            };
            let labels: Vec<&str> = block.labels().iter().map(|l| l.as_str()).collect();
            let (type_name, address) = match (kind, labels.as_slice()) {
                (Kind::Provider, [name]) => (*name, format!("provider \"{name}\"")),
                (Kind::Resource, [ty, name]) => (*ty, format!("{ty}.{name}")),
                (Kind::Data, [ty, name]) => (*ty, format!("data.{ty}.{name}")),
                _ => {
                    errors.push(format!(
                        "infra/{file}: {} block with labels {labels:?}",
                        kind.keyword()
                    ));
                    continue;
                }
            };
            // Other providers' types (none today) are not in this schema.
            let ours = match kind {
                Kind::Provider => type_name == "aws",
                _ => type_name.starts_with("aws_"),
            };
            if !ours {
                continue;
            }
            let Some(st) = schema.root(kind, type_name) else {
                errors.push(format!(
                    "infra/{file}: {address}: hashicorp/aws {} has no {} type `{type_name}`{}",
                    schema.provider_version,
                    if kind == Kind::Data {
                        "data source"
                    } else {
                        "resource"
                    },
                    suggestion(
                        type_name,
                        schema
                            .roots
                            .keys()
                            .filter(|(k, _)| *k == kind)
                            .map(|(_, n)| n.as_str())
                    )
                ));
                continue;
            };
            let (meta_args, meta_blocks): (&[&str], &[&str]) = match kind {
                Kind::Resource => (META_ARGUMENTS, RESOURCE_META_BLOCKS),
                Kind::Data => (META_ARGUMENTS, DATA_META_BLOCKS),
                Kind::Provider => (&[], &[]),
            };
            checked += 1;
            let mut ctx = Ctx {
                schema,
                errors: &mut errors,
                checked: &mut checked,
            };
            ctx.body(
                &format!("infra/{file}: {address}"),
                block.body(),
                st,
                meta_args,
                meta_blocks,
            );
        }
    }
    (errors, checked)
}

struct Ctx<'a> {
    schema: &'a Schema,
    errors: &'a mut Vec<String>,
    checked: &'a mut usize,
}

impl Ctx<'_> {
    fn body(
        &mut self,
        at: &str,
        body: &Body,
        st: &Struct,
        meta_args: &[&str],
        meta_blocks: &[&str],
    ) {
        let mut present: HashMap<&str, usize> = HashMap::new();
        for attr in body.attributes() {
            let key = attr.key();
            if meta_args.contains(&key) {
                continue;
            }
            match st.get(key) {
                None => self.errors.push(format!(
                    "{at}: unknown argument `{key}`{}",
                    suggestion(key, st.keys().map(String::as_str))
                )),
                Some(Property {
                    shape: Shape::Block { .. },
                    ..
                }) => self.errors.push(format!(
                    "{at}: `{key}` is a nested block: write `{key} {{ ... }}`, not `{key} = ...`"
                )),
                Some(_) => *present.entry(key).or_default() += 1,
            }
        }
        for block in body.blocks() {
            let id = block.identifier();
            if meta_blocks.contains(&id) {
                continue;
            }
            if id == "dynamic" {
                self.dynamic(at, block, st, &mut present);
                continue;
            }
            if let Some((fqn, _)) = self.nested(at, id, "", st) {
                *present.entry(id).or_default() += 1;
                if !block.labels().is_empty() {
                    self.errors
                        .push(format!("{at}: block `{id}` takes no labels"));
                }
                self.block(&format!("{at}.{id}"), block.body(), &fqn);
            }
        }
        self.finish(at, st, &present);
    }

    /// `dynamic "x" { for_each = ..., iterator = ..., labels = ..., content { ... } }`
    fn dynamic<'b>(
        &mut self,
        at: &str,
        block: &'b Block,
        st: &Struct,
        present: &mut HashMap<&'b str, usize>,
    ) {
        let Some(name) = block.labels().first().map(|l| l.as_str()) else {
            self.errors.push(format!(
                "{at}: `dynamic` block without the name of the block it generates"
            ));
            return;
        };
        let Some((fqn, _)) = self.nested(at, name, "dynamic ", st) else {
            return;
        };
        *present.entry(name).or_default() += 1;
        let here = format!("{at}.dynamic \"{name}\"");
        let body = block.body();
        for attr in body.attributes() {
            if !["for_each", "iterator", "labels"].contains(&attr.key()) {
                self.errors.push(format!(
                    "{here}: unknown argument `{}` (a dynamic block takes for_each, iterator, labels and content {{ ... }})",
                    attr.key()
                ));
            }
        }
        if !body.attributes().any(|a| a.key() == "for_each") {
            self.errors
                .push(format!("{here}: missing required argument `for_each`"));
        }
        let contents: Vec<&Block> = body
            .blocks()
            .filter(|b| b.identifier() == "content")
            .collect();
        for other in body.blocks().filter(|b| b.identifier() != "content") {
            self.errors.push(format!(
                "{here}: unknown block `{}` (the generated block's arguments go inside content {{ ... }})",
                other.identifier()
            ));
        }
        match contents.as_slice() {
            [content] => self.block(&format!("{here}.content"), content.body(), &fqn),
            _ => self.errors.push(format!(
                "{here}: needs exactly one content block, has {}",
                contents.len()
            )),
        }
    }

    /// The nested block `id` of `st`, or an error saying why it is not one.
    fn nested(&mut self, at: &str, id: &str, prefix: &str, st: &Struct) -> Option<(String, bool)> {
        match st.get(id) {
            Some(Property {
                shape: Shape::Block { fqn, single },
                ..
            }) => Some((fqn.clone(), *single)),
            Some(Property {
                shape: Shape::Argument { nested_attribute },
                ..
            }) => {
                let value = if *nested_attribute { "{ ... }" } else { "..." };
                self.errors.push(format!(
                    "{at}: `{id}` is an argument, not a block: write `{id} = {value}`, not `{prefix}{id} {{ ... }}`"
                ));
                None
            }
            None => {
                let blocks = st
                    .iter()
                    .filter(|(_, p)| matches!(p.shape, Shape::Block { .. }))
                    .map(|(n, _)| n.as_str());
                self.errors.push(format!(
                    "{at}: unknown nested block `{prefix}{id}`{}",
                    suggestion(id, blocks)
                ));
                None
            }
        }
    }

    fn block(&mut self, at: &str, body: &Body, fqn: &str) {
        *self.checked += 1;
        let schema = self.schema;
        match schema.structs.get(fqn) {
            Some(st) => self.body(at, body, st, &[], &[]),
            None => self
                .errors
                .push(format!("{at}: no struct {fqn} in the schema")),
        }
    }

    fn finish(&mut self, at: &str, st: &Struct, present: &HashMap<&str, usize>) {
        for (name, prop) in st {
            let count = present.get(name.as_str()).copied().unwrap_or(0);
            match &prop.shape {
                Shape::Block { single: true, .. } if count > 1 => self.errors.push(format!(
                    "{at}: {count} `{name}` blocks where the provider allows one"
                )),
                Shape::Block { .. } if prop.required && count == 0 => self
                    .errors
                    .push(format!("{at}: missing required block `{name} {{ ... }}`")),
                Shape::Argument { .. } if prop.required && count == 0 => self
                    .errors
                    .push(format!("{at}: missing required argument `{name}`")),
                _ => {}
            }
        }
    }
}

/// ", did you mean `x`?" for the closest of `candidates` (when close).
fn suggestion<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= 3.max(name.len() / 4) && *d < c.len())
        .min()
        .map(|(_, c)| format!(", did you mean `{c}`?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// `(file name, contents)` of every `infra/*.tf`, sorted by name.
fn sources() -> Vec<(String, String)> {
    let dir = repo().join("infra");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "tf"))
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

/// Every resource, data source and the provider block of `infra/` use only
/// arguments and blocks the provider has, and set every required one.
#[test]
fn infra_matches_the_aws_provider_schema() {
    let schema = schema();
    let started = Instant::now();
    let (errors, checked) = check(schema, &sources());
    println!("{checked} blocks checked in {:.1?}", started.elapsed());
    assert!(
        errors.is_empty(),
        "infra/*.tf against hashicorp/aws {} ({PACKAGE}@{}):\n  {}",
        schema.provider_version,
        schema.package_version,
        errors.join("\n  ")
    );
    assert!(
        checked > 100,
        "only {checked} blocks checked: is infra/ parsed?"
    );
}

struct Mutation {
    what: &'static str,
    file: &'static str,
    from: &'static str,
    to: &'static str,
    /// A fragment the reported problem must contain.
    expect: &'static str,
}

const MUTATIONS: &[Mutation] = &[
    Mutation {
        what: "a misspelt argument of a resource",
        file: "dynamodb.tf",
        from: "billing_mode",
        to: "biling_mode",
        expect: "aws_dynamodb_table.devices: unknown argument `biling_mode`, did you mean `billing_mode`?",
    },
    Mutation {
        what: "a misspelt argument in a nested block",
        file: "dynamodb.tf",
        from: "attribute_name",
        to: "atribute_name",
        expect: ".ttl: unknown argument `atribute_name`",
    },
    Mutation {
        what: "an unknown nested block inside a dynamic block's content",
        file: "api.tf",
        from: "    content {\n",
        to: "    content {\n      throttling {\n        rate = 1\n      }\n",
        expect: "aws_apigatewayv2_stage.default.dynamic \"route_settings\".content: unknown nested block `throttling`",
    },
    Mutation {
        what: "a misspelt argument inside a dynamic block's content",
        file: "api.tf",
        from: "route_key              = route_settings.key",
        to: "route_keys             = route_settings.key",
        expect: "content: unknown argument `route_keys`, did you mean `route_key`?",
    },
    Mutation {
        what: "a dynamic block for a block the resource does not have",
        file: "api.tf",
        from: "dynamic \"route_settings\"",
        to: "dynamic \"route_setting\"",
        expect: "unknown nested block `dynamic route_setting`, did you mean `route_settings`?",
    },
    Mutation {
        what: "a removed required argument",
        file: "api.tf",
        from: "  name        = \"$default\"\n",
        to: "",
        expect: "aws_apigatewayv2_stage.default: missing required argument `name`",
    },
    Mutation {
        what: "a removed required argument two blocks deep",
        file: "portal.tf",
        from: "restriction_type",
        to: "# restriction_type",
        expect: ".restrictions.geo_restriction: missing required argument `restriction_type`",
    },
    Mutation {
        what: "an argument written as a block",
        file: "api.tf",
        from: "  auto_deploy = true\n",
        to: "  auto_deploy {\n  }\n",
        expect: "`auto_deploy` is an argument, not a block",
    },
    Mutation {
        what: "a single block given twice",
        file: "api.tf",
        from: "  default_route_settings {\n",
        to: "  default_route_settings {\n  }\n  default_route_settings {\n",
        expect: "2 `default_route_settings` blocks where the provider allows one",
    },
    Mutation {
        what: "a misspelt resource type",
        file: "dynamodb.tf",
        from: "resource \"aws_dynamodb_table\" \"audit\"",
        to: "resource \"aws_dynamodb_tabel\" \"audit\"",
        expect: "aws_dynamodb_tabel.audit: hashicorp/aws 6.25.0 has no resource type `aws_dynamodb_tabel`, did you mean `aws_dynamodb_table`?",
    },
    Mutation {
        what: "a misspelt argument of a data source",
        file: "iam.tf",
        from: "actions",
        to: "action",
        expect: "data.aws_iam_policy_document.lambda_assume_role.statement: unknown argument `action`",
    },
];

/// The checker notices each kind of mistake, made in the real HCL.
#[test]
fn provider_schema_check_catches_mistakes() {
    let schema = schema();
    let original = sources();
    for m in MUTATIONS {
        let mut mutated = original.clone();
        let (_, text) = mutated
            .iter_mut()
            .find(|(name, _)| name == m.file)
            .unwrap_or_else(|| panic!("{}: no infra/{}", m.what, m.file));
        let at = text.find(m.from).unwrap_or_else(|| {
            panic!(
                "{}: {:?} not found in infra/{} (update the mutation after editing the HCL)",
                m.what, m.from, m.file
            )
        });
        text.replace_range(at..at + m.from.len(), m.to);
        let (errors, _) = check(schema, &mutated);
        assert!(
            errors.iter().any(|e| e.contains(m.expect)),
            "mutation `{}` not reported as {:?}; the checker said:\n  {}",
            m.what,
            m.expect,
            errors.join("\n  ")
        );
        // Visible with --nocapture: what the checker says about each mistake.
        println!("{:<58} -> {}", m.what, errors.join(" | "));
    }
}
