//! The layering of docs/architecture.md, read off the sources: engine modules know nothing of
//! the front ends or of clap, the CLI does not draw, and engine modules import each other
//! without cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const FRONT_ENDS: [&str; 2] = ["ui", "cli"];

/// Every `.rs` file under `src/`, by top-level module (`src/x.rs` and `src/x/**` are `x`).
fn sources() -> BTreeMap<String, Vec<(PathBuf, String)>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut modules: BTreeMap<String, Vec<(PathBuf, String)>> = BTreeMap::new();
    for path in files {
        let rel = path.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        modules.entry(module).or_default().push((path, text));
    }
    modules
}

/// The top-level modules a file's code refers to as `crate::name` (comments left out).
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::named_enum!` is the macro of `names`.
            let name = if name == "named_enum" {
                "names".into()
            } else {
                name
            };
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn engine_modules_know_no_front_end_and_have_no_cycles() {
    let modules = sources();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, files) in &modules {
        for (path, text) in files {
            let used = imports(text);
            if module != "ui" && module != "main" {
                assert!(!used.contains("ui"), "{} imports ui", path.display());
            }
            if module != "cli" && module != "main" {
                assert!(!used.contains("cli"), "{} imports cli", path.display());
            }
            if !FRONT_ENDS.contains(&module.as_str()) && module != "main" {
                let code: String = text
                    .lines()
                    .map(|l| l.split("//").next().unwrap_or(""))
                    .collect();
                assert!(
                    !code.contains("clap::") && !code.contains("egui::"),
                    "{} uses clap or egui",
                    path.display()
                );
            }
            graph
                .entry(module.clone())
                .or_default()
                .extend(used.into_iter().filter(|m| m != module));
        }
    }
    // Kahn's algorithm over the engine modules: whatever cannot be ordered is on a cycle.
    graph.retain(|m, _| !FRONT_ENDS.contains(&m.as_str()) && m != "main" && m != "lib");
    let mut remaining = graph.clone();
    loop {
        let leaves: Vec<String> = remaining
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !remaining.contains_key(d)))
            .map(|(m, _)| m.clone())
            .collect();
        if leaves.is_empty() {
            break;
        }
        for m in leaves {
            remaining.remove(&m);
        }
    }
    assert!(
        remaining.is_empty(),
        "engine modules on an import cycle: {remaining:?}"
    );
    assert!(graph.len() >= 15, "found only {:?}", graph.keys());
}
