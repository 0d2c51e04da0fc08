//! What `cargo package` would ship (Cargo.toml's `include`): the sources, the
//! docs the README links to and both licence files; no tests, fixtures, www
//! build outputs, scripts or fuzzer, and nothing large. `cargo package
//! --list` reads only the manifest (a tenth of a second), so this runs with
//! every `cargo test`; the full `cargo package --locked` (a verify build)
//! is left to a release.

use std::path::Path;
use std::process::Command;

/// Every file `cargo package` would ship, as the archive names it.
fn package_list() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "package",
            "--list",
            "--locked",
            "--offline",
            "--allow-dirty",
        ])
        .current_dir(root)
        .output()
        .expect("cargo package --list runs");
    assert!(
        out.status.success(),
        "cargo package --list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_crate_package_holds_the_sources_and_licences_and_nothing_large() {
    let list = package_list();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "src/lib.rs",
        "src/bin/patchlab/main.rs",
        "docs/cli.md",
    ] {
        assert!(list.iter().any(|f| f == needed), "{needed} is not packaged");
    }
    // every shader the GPU backend include_str!s is under src/
    assert!(list.iter().any(|f| f.ends_with(".wgsl")));
    let forbidden = [
        "tests/",
        "www/",
        "fuzz/",
        "scripts/",
        "target/",
        "node_modules/",
        "dist/",
        ".ci/",
    ];
    let mut total = 0u64;
    for f in &list {
        assert!(
            !forbidden.iter().any(|p| f.starts_with(p)),
            "{f} should not be in the crate package"
        );
        // the two files cargo writes itself are not on disk under these names
        if f == "Cargo.toml.orig" || f == ".cargo_vcs_info.json" {
            continue;
        }
        let size = std::fs::metadata(root.join(f))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(
            size < 256 * 1024,
            "{f} is {size} bytes: too large for the crate package"
        );
        total += size;
    }
    // 1.0 MiB unpacked when this test was written (290 KiB compressed)
    assert!(
        total < 3 * 1024 * 1024,
        "the crate package is {total} bytes unpacked"
    );
}
