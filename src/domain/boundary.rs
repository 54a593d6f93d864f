//! The domain imports nothing outside itself (ARCHITECTURE.md, "The domain
//! does not know its adapters"): every `crate::` path under `src/domain`
//! continues with `domain`.

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_domain_imports_only_the_domain() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/domain");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() > 20, "read {} files", files.len());
    let mut outside = Vec::new();
    // This file names the paths it looks for.
    for file in files.iter().filter(|f| !f.ends_with(file!())) {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            // `crate::domain…` only; `crate::{…}` could name anything.
            let rest = line.split("crate::").skip(1);
            if rest.into_iter().any(|r| !r.starts_with("domain")) {
                outside.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        outside.is_empty(),
        "outside the domain:\n{}",
        outside.join("\n")
    );
}
