//! infra/README.md's variable table is generated from infra/variables.tf:
//! name, default and description of every variable, in file order. The
//! test fails when the committed table differs; regenerate it with
//! `UPDATE_README=1 cargo test --test infra readme`.

use hcl::{Body, Expression};
use std::path::Path;

const BEGIN: &str = "<!-- BEGIN variables: generated from variables.tf (UPDATE_README=1 cargo test --test infra readme) -->\n";
const END: &str = "<!-- END variables -->\n";

/// The markdown table of the variables declared in `variables_tf`.
fn variable_table(variables_tf: &str) -> String {
    let body: Body = hcl::from_str(variables_tf).expect("variables.tf parses");
    let mut out = String::from("| Variable | Default | Meaning |\n| --- | --- | --- |\n");
    for block in body.blocks().filter(|b| b.identifier() == "variable") {
        let attr = |key: &str| {
            block
                .body()
                .attributes()
                .find(|a| a.key() == key)
                .map(|a| a.expr().clone())
        };
        let name = block.labels()[0].as_str();
        let default = match attr("default") {
            None => "(required)".to_owned(),
            Some(e) => format!("`{}`", one_line(&e.to_string())),
        };
        let description = match attr("description") {
            Some(Expression::String(s)) => s,
            other => panic!("variable {name}: description must be a string, found {other:?}"),
        };
        out.push_str(&format!(
            "| `{name}` | {default} | {} |\n",
            one_line(&description)
                .replace('|', "\\|")
                .replace('<', "&lt;")
        ));
    }
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `readme` with the text between the markers replaced by `table`.
fn with_table(readme: &str, table: &str) -> String {
    let start = readme
        .find(BEGIN)
        .expect("infra/README.md has the BEGIN marker")
        + BEGIN.len();
    let end = readme
        .find(END)
        .expect("infra/README.md has the END marker");
    format!("{}{table}{}", &readme[..start], &readme[end..])
}

#[test]
fn readme_variable_table_is_generated_from_variables_tf() {
    let infra = Path::new(env!("CARGO_MANIFEST_DIR")).join("infra");
    let variables = std::fs::read_to_string(infra.join("variables.tf")).unwrap();
    let readme_path = infra.join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let expected = with_table(&readme, &variable_table(&variables));
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(&readme_path, &expected).unwrap();
        return;
    }
    assert!(
        readme == expected,
        "infra/README.md's variable table is not what variables.tf gives: run UPDATE_README=1 cargo test --test infra readme"
    );
}

#[test]
fn the_table_follows_the_variables() {
    let tf = r#"
variable "b" {
  description = "Second | with a bar, <prefix>"
  type        = number
  default     = -1
}
variable "a" {
  description = "First,
    on two lines"
  type = string
}
"#;
    let table = variable_table(tf);
    assert_eq!(
        table,
        "| Variable | Default | Meaning |\n| --- | --- | --- |\n\
         | `b` | `-1` | Second \\| with a bar, &lt;prefix> |\n\
         | `a` | (required) | First, on two lines |\n"
    );
    let readme = format!("intro\n{BEGIN}old\n{END}outro\n");
    assert_eq!(
        with_table(&readme, "new\n"),
        format!("intro\n{BEGIN}new\n{END}outro\n")
    );
}
