//! The page's copy of the patching sites (`www/sites.js`: each site's axes
//! and the bundles) against the engine's (`report::sites`): a change to
//! either side alone fails here.

use std::collections::BTreeMap;
use std::path::Path;

use patchlab::report::sites::{PatchSite, BUNDLES};

type Entries = Vec<(String, Vec<String>)>;

fn sites_js() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/sites.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A quoted string of the object literal: `"resid_pre"` → `resid_pre`.
fn unquote(s: &str, line: &str) -> String {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_else(|| panic!("www/sites.js: {s:?} is not a \"string\" in `{line}`"))
        .to_string()
}

/// The entries of `export const NAME = {` … `};` in www/sites.js, written
/// one `key: ["a", "b"],` a line, in their order.
fn js_object(text: &str, name: &str) -> Entries {
    let start = format!("export const {name} = {{");
    let (_, rest) = text
        .split_once(&start)
        .unwrap_or_else(|| panic!("www/sites.js has no line `{start}`"));
    let (body, _) = rest
        .split_once("\n};")
        .unwrap_or_else(|| panic!("www/sites.js: `{start}` is not closed by a line `}};`"));
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(|line| {
            let (key, list) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("www/sites.js: `{line}` is not `key: [...],`"));
            let items = list
                .trim()
                .trim_end_matches(',')
                .strip_prefix('[')
                .and_then(|l| l.strip_suffix(']'))
                .unwrap_or_else(|| panic!("www/sites.js: `{line}` is not `key: [...],`"));
            let items = items
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| unquote(s, line))
                .collect();
            (key.trim().to_string(), items)
        })
        .collect()
}

#[test]
fn the_pages_site_axes_are_the_engines() {
    let js = js_object(&sites_js(), "SITE_AXES");
    let js_map: BTreeMap<String, Vec<String>> = js.iter().cloned().collect();
    assert_eq!(
        js_map.len(),
        js.len(),
        "www/sites.js: a site is in SITE_AXES twice"
    );
    let rust: BTreeMap<String, Vec<String>> = PatchSite::ALL
        .iter()
        .map(|s| {
            let axes = s.axes().iter().map(|a| a.to_string()).collect();
            (s.name().to_string(), axes)
        })
        .collect();
    assert_eq!(
        js_map, rust,
        "www/sites.js's SITE_AXES (left) and the engine's sites and PatchSite::axes (right) differ: change both"
    );
}

#[test]
fn the_pages_bundles_are_the_engines() {
    let js = js_object(&sites_js(), "BUNDLES");
    let rust: Entries = BUNDLES
        .iter()
        .map(|(name, sites)| {
            let names = sites.iter().map(|s| s.name().to_string()).collect();
            (name.to_string(), names)
        })
        .collect();
    assert_eq!(
        js, rust,
        "www/sites.js's BUNDLES (left) and report::sites::BUNDLES (right) differ: change both"
    );
}
