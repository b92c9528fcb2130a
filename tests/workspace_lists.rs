//! Hand-kept lists held together: the Cargo features rag-server and rag-cli forward against the
//! facade's, the environment variables against docs/configuration.md, and every configuration
//! in the repository (TOML files, TOML blocks in the docs) against the configuration type, so
//! nothing a user configures changes meaning unnoticed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rag::RagConfig;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifest(path: &str) -> toml::Table {
    toml::from_str(&std::fs::read_to_string(root().join(path)).unwrap()).unwrap()
}

fn strings(v: &toml::Value) -> BTreeSet<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

/// The facade's backend features: everything but the internal `python` and the test mocks.
fn backend_features() -> (BTreeSet<String>, BTreeSet<String>) {
    let facade = manifest("Cargo.toml");
    let features = facade["features"].as_table().unwrap();
    let backends = features.keys().filter(|k| !["default", "python", "test-utils"].contains(&k.as_str())).cloned().collect();
    (backends, strings(&features["default"]))
}

#[test]
fn the_server_and_the_cli_forward_every_backend_feature() {
    let (backends, default) = backend_features();
    assert!(backends.contains("chroma") && backends.contains("qdrant"), "{backends:?}");
    let server = manifest("crates/rag-server/Cargo.toml");
    let features = server["features"].as_table().unwrap();
    for b in &backends {
        let forwarded = features.get(b).map(strings);
        assert_eq!(forwarded, Some(BTreeSet::from([format!("rag/{b}")])), "rag-server must forward feature `{b}` to rag");
    }
    let extra: Vec<&String> = features.keys().filter(|k| *k != "default" && !backends.contains(*k)).collect();
    assert!(extra.is_empty(), "rag-server has features the facade lacks: {extra:?}");
    assert_eq!(strings(&features["default"]), default, "rag-server's default features differ from the facade's");
    // The shipped binary compiles every backend in, through both of its dependencies.
    let cli = manifest("crates/rag-cli/Cargo.toml");
    for dep in ["rag", "rag-server"] {
        assert_eq!(strings(&cli["dependencies"][dep]["features"]), backends, "rag-cli's `{dep}` features are not every backend");
    }
}

#[test]
fn every_environment_variable_is_documented_and_every_documented_one_is_read() {
    let docs = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let paragraph = docs.split("Environment variables:").nth(1).expect("docs/configuration.md lists the environment variables");
    let paragraph = paragraph.split("\n\n").next().unwrap();
    let documented: BTreeSet<String> = paragraph
        .split('`')
        .filter(|w| w.starts_with("RAG_") && w.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .map(str::to_owned)
        .collect();
    let mut read: BTreeSet<String> = rag::config::ENV_VARS.iter().map(|(v, _)| (*v).to_owned()).collect();
    read.insert("RAG_API_KEY".into()); // read by the server's key loader, not a configuration key
    assert_eq!(documented, read, "docs/configuration.md's list and config::ENV_VARS differ");
    // Each variable sets a key that exists: setting it to its own default value works.
    for (var, key) in rag::config::ENV_VARS {
        let mut cfg = RagConfig::default();
        let value = toml::Value::try_from(&cfg).unwrap();
        let current = key.split('.').try_fold(&value, |v, k| v.get(k));
        let as_text = match current {
            Some(toml::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => continue, // an optional key that is unset by default
        };
        cfg.apply_env(|k| (k == *var).then(|| as_text.clone())).unwrap_or_else(|e| panic!("{var} -> {key}: {e}"));
    }
}

/// Every TOML block in a Markdown file that looks like a configuration (not Cargo's).
fn toml_blocks(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```toml") => current = Some((i + 1, String::new())),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            _ => {}
        }
    }
    blocks.retain(|(_, b)| !b.contains("[package]") && !b.contains("[dependencies]") && !b.contains("[dev-dependencies]"));
    blocks
}

#[test]
fn every_configuration_in_the_repository_loads() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("deploy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.iter().any(|f| f.ends_with("cluster.toml")), "{files:?}");
    for f in &files {
        let cfg = RagConfig::from_file(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        cfg.validate().unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
    let mut docs: Vec<PathBuf> = vec![root().join("README.md"), root().join("ARCHITECTURE.md")];
    docs.extend(
        std::fs::read_dir(root().join("docs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    let mut checked = 0;
    for d in &docs {
        for (line, block) in toml_blocks(d) {
            let cfg: RagConfig = toml::from_str(&block).unwrap_or_else(|e| panic!("{}:{line}: {e}", d.display()));
            cfg.validate().unwrap_or_else(|e| panic!("{}:{line}: {e}", d.display()));
            checked += 1;
        }
    }
    assert!(checked >= 2, "the docs' configuration examples were not found ({checked})");
}
