//! Embeds the web console's built assets (`src/api/console/dist`, made by
//! `npm --prefix src/api/console ci && npm --prefix src/api/console run build`) into the binary.
//! Without them proctor still builds, and `/` says how to build the console.
//!
//! The generated `$OUT_DIR/console_assets.rs` holds `ASSETS: &[(path, bytes, etag)]`, each file
//! by `include_bytes!`, so no run-time file access and no extra crate is needed.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push((format!("/{}", rel.join("/")), path));
        }
    }
}

/// FNV-1a, enough for an ETag (the hashed asset names already change with their content).
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let console = root.join("src/api/console");
    let dist = console.join("dist");
    let mut files = Vec::new();
    if dist.join("index.html").is_file() {
        collect(&dist, &dist, &mut files);
        println!("cargo:rerun-if-changed={}", dist.display());
    } else {
        // Watching a path that does not exist would rerun this script (and rebuild proctor)
        // on every build; the console directory exists and changes when dist/ appears in it.
        println!("cargo:rerun-if-changed={}", console.display());
    }
    let mut src = String::from("/// Built console assets: (URL path, contents, ETag).\n");
    src.push_str("pub static ASSETS: &[(&str, &[u8], &str)] = &[\n");
    for (url, path) in &files {
        let etag = fs::read(path).map(|d| fnv1a(&d)).unwrap_or_default();
        let _ = writeln!(
            src,
            "    ({url:?}, include_bytes!({:?}), \"\\\"{etag:016x}\\\"\"),",
            path.display().to_string()
        );
    }
    src.push_str("];\n");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("console_assets.rs");
    fs::write(&out, src).expect("write console_assets.rs");
}
