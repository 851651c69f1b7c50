//! The shape of the code (docs/architecture.md): dependencies between the top-level modules of
//! `src/` point one way. Each file's `crate::…` paths are read and checked against the order
//! below; a module may use only modules before it, so no module imports one to its right and
//! no two modules import each other.

use std::collections::BTreeSet;
use std::path::Path;

/// The modules in import order. The leaves come first and use nothing but leaves before them.
const ORDER: &[&str] = &[
    "config",
    "clock",
    "body",
    "error",
    "metrics",
    "outbound", // leaves
    "store",
    "federation",
    "auth",
    "oauth",
    "apps",
    "ui",
    "proxy",
    "server",
    "demo",
    "init",
    "cli",
];

/// The top-level modules that `source` names through `crate::`, including inside
/// `use crate::{a, b::c}` groups.
fn crate_paths(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = source;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // A group: every top-level item's first segment, up to the matching brace.
            let mut depth = 1;
            let mut item_start = true;
            let mut name = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => item_start = true,
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                if item_start {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        name.push(c);
                    } else if !name.is_empty() {
                        found.insert(std::mem::take(&mut name));
                        item_start = c == ',';
                    }
                }
            }
            if !name.is_empty() {
                found.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// Every `module -> dependency` that goes against [`ORDER`], for a file of `module`.
fn violations(module: &str, source: &str) -> Vec<String> {
    let Some(rank) = ORDER.iter().position(|m| *m == module) else {
        return Vec::new();
    };
    crate_paths(source)
        .into_iter()
        .filter(|dep| dep != module)
        .filter_map(|dep| {
            let theirs = ORDER.iter().position(|m| *m == dep)?;
            (theirs > rank).then(|| format!("{module} -> {dep}"))
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn dependencies_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    let mut modules = BTreeSet::new();
    for path in &files {
        let relative = path.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_str().unwrap().trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        assert!(
            ORDER.contains(&module.as_str()),
            "src/{}: module {module} has no place in the import order",
            relative.display()
        );
        modules.insert(module.clone());
        let source = std::fs::read_to_string(path).unwrap();
        for v in violations(&module, &source) {
            broken.push(format!("src/{}: {v}", relative.display()));
        }
    }
    assert!(modules.len() >= 10, "read too few modules: {modules:?}");
    assert!(
        broken.is_empty(),
        "imports against the order:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_checker_sees_every_form_of_import() {
    assert_eq!(
        violations("auth", "use crate::proxy::headers::X;"),
        ["auth -> proxy"]
    );
    assert_eq!(
        violations(
            "oauth",
            "use crate::{store::Store, ui::page};\nfn f() { crate::server::x(); }"
        ),
        ["oauth -> server", "oauth -> ui"]
    );
    assert_eq!(
        violations(
            "store",
            "use crate::{\n    clock::Clock,\n    auth::{a, b},\n};"
        ),
        ["store -> auth"]
    );
    assert!(violations("server", "use crate::{proxy, oauth::x, auth};").is_empty());
    assert!(violations("error", "use crate::body::Body;").is_empty());
    assert_eq!(
        violations("body", "use crate::error::E;"),
        ["body -> error"]
    );
}
