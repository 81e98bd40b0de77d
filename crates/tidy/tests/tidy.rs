//! Architecture checks (STYLE "dependencies are architecture"): crate edges point inward, the pure
//! core does no I/O and reads no clock, each outside system has one crate, every file says what it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Which ring a crate is in; dependencies may only point to the same or an inner ring.
fn ring(package: &str) -> u8 {
    match package {
        "hafen-model" | "hafen-scheduler" | "hafen-controller" => 1,
        "hafen-store" | "hafen-driver-api" => 2,
        _ => 3,
    }
}

const PURE: &[&str] = &["hafen-model", "hafen-scheduler", "hafen-controller"];
/// The only external crates the pure core may use.
const PURE_ALLOWED: &[&str] = &["serde", "serde_json", "thiserror"];
/// Edges that are forbidden although the rings would allow them.
const FORBIDDEN: &[(&str, &str)] = &[
    ("hafen-api", "hafen-daemon"),
    ("hafen-api", "hafen-cli"),
    ("hafen-client", "hafen-api"),
    ("hafen-client", "hafen-store"),
    ("hafen-store", "hafen-rpc"),
];
/// Only these crates may depend on the named outside system's crates.
const OWNERS: &[(&str, &[&str])] = &[
    ("axum", &["hafen-api"]),
    ("hyper", &["hafen-api"]),
    ("openraft", &["hafen-store", "hafen-rpc"]),
    ("redb", &["hafen-store"]),
];

struct Manifest {
    package: String,
    dir: PathBuf,
    dependencies: Vec<String>,
}

fn manifests() -> Vec<Manifest> {
    let root = workspace_root();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("Cargo.toml").exists())
        .collect();
    dirs.push(root.join("bench"));
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let text = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
            let value: toml::Value = toml::from_str(&text).unwrap();
            let package = value["package"]["name"].as_str().unwrap().to_string();
            let dependencies = value
                .get("dependencies")
                .and_then(|table| table.as_table())
                .map(|table| table.keys().cloned().collect())
                .unwrap_or_default();
            Manifest {
                package,
                dir,
                dependencies,
            }
        })
        .collect()
}

#[test]
fn crate_dependencies_point_inward_and_avoid_forbidden_edges() {
    let mut problems = Vec::new();
    for manifest in manifests() {
        for dependency in &manifest.dependencies {
            if dependency.starts_with("hafen-") && ring(dependency) > ring(&manifest.package) {
                problems.push(format!(
                    "{} (ring {}) depends on outer {dependency}",
                    manifest.package,
                    ring(&manifest.package)
                ));
            }
            if FORBIDDEN.contains(&(manifest.package.as_str(), dependency.as_str())) {
                problems.push(format!(
                    "forbidden edge {} -> {dependency}",
                    manifest.package
                ));
            }
            if PURE.contains(&manifest.package.as_str())
                && !dependency.starts_with("hafen-")
                && !PURE_ALLOWED.contains(&dependency.as_str())
            {
                problems.push(format!(
                    "pure crate {} depends on {dependency}",
                    manifest.package
                ));
            }
            for (system, owners) in OWNERS {
                if dependency == system && !owners.contains(&manifest.package.as_str()) {
                    problems.push(format!(
                        "{} uses {system}, which belongs to {owners:?}",
                        manifest.package
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "architecture violations:\n{}",
        problems.join("\n")
    );
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|name| name != "target") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Code without comments, so a forbidden word in a doc comment does not count.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(index) => &line[..index],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_pure_core_does_no_io_and_reads_no_clock() {
    const FORBIDDEN_WORDS: &[&str] = &[
        "tokio",
        "std::fs",
        "std::net",
        "std::process",
        "Instant::now",
        "SystemTime::now",
        "thread_rng",
        "rand::",
        "std::thread",
        "std::env",
    ];
    let mut problems = Vec::new();
    for manifest in manifests()
        .iter()
        .filter(|manifest| PURE.contains(&manifest.package.as_str()))
    {
        for file in rust_files(&manifest.dir.join("src")) {
            let code = code_of(&std::fs::read_to_string(&file).unwrap());
            for word in FORBIDDEN_WORDS {
                if code.contains(word) {
                    problems.push(format!("{} uses {word}", file.display()));
                }
            }
            // `use std::{fs, ...}` and friends.
            for module in ["fs", "net", "process", "time::Instant"] {
                if code.contains("use std::{") && code.contains(&format!(" {module},")) {
                    problems.push(format!("{} may import std::{module}", file.display()));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "pure-core violations:\n{}",
        problems.join("\n")
    );
}

#[test]
fn each_outside_system_is_known_to_one_crate() {
    // A marker of each protocol and the crate that owns it.
    let owners: BTreeMap<&str, &str> = [
        ("qmp_capabilities", "driver-qemu"),
        ("OCF_RESKEY_", "driver-ocf"),
        ("systemctl", "driver-systemd"),
    ]
    .into_iter()
    .collect();
    let root = workspace_root();
    let mut problems = Vec::new();
    for manifest in manifests() {
        let crate_dir = manifest
            .dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        for file in rust_files(&manifest.dir.join("src")) {
            let code = code_of(&std::fs::read_to_string(&file).unwrap());
            for (marker, owner) in &owners {
                if code.contains(marker) && crate_dir != *owner && crate_dir != "driver-api" {
                    problems.push(format!(
                        "{} speaks {marker}, which only {owner} may",
                        file.strip_prefix(&root).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_rust_file_starts_with_a_doc_line() {
    let root = workspace_root();
    let mut missing = Vec::new();
    for dir in [root.join("crates"), root.join("bench")] {
        for file in rust_files(&dir) {
            let text = std::fs::read_to_string(&file).unwrap();
            if !text.starts_with("//!") {
                missing.push(file.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files without a leading //! line:\n{}",
        missing.join("\n")
    );
}
