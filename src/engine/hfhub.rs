//! HF repo ids for `--embed-model` and `--gen-model` (online users): `owner/name` for an HF
//! BERT folder, `owner/name` or `owner/name:file.gguf` for a GGUF, fetched with the `hf-hub`
//! crate into `<model cache>/hf` (`HF_ENDPOINT` moves the hub, `HF_TOKEN` authenticates).
//! Files already cached load without the network; when the hub cannot be reached the error
//! says so and names the offline ways to pick a model.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};

use super::{EngineError, fetch};

/// A parsed repo id, with the file named after `:` if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSpec {
    pub repo: String,
    pub file: Option<String>,
}

fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `owner/name[:file]`, or `None` when `spec` is not shaped like a repo id.
pub fn parse(spec: &str) -> Option<RepoSpec> {
    let (repo, file) = match spec.split_once(':') {
        Some((repo, file)) => (repo, Some(file)),
        None => (spec, None),
    };
    let (owner, name) = repo.split_once('/')?;
    if !valid_part(owner) || !valid_part(name) {
        return None;
    }
    let file = match file {
        Some(f) if f.is_empty() || f.starts_with('/') || f.split('/').any(|p| p == "..") => {
            return None;
        }
        other => other.map(str::to_owned),
    };
    Some(RepoSpec {
        repo: repo.to_owned(),
        file,
    })
}

/// Where hub downloads are cached.
pub fn cache_dir(data_dir: &Path) -> PathBuf {
    fetch::cache_root(data_dir).join("hf")
}

fn endpoint() -> String {
    std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".to_owned())
}

fn api_repo(spec: &RepoSpec, data_dir: &Path) -> Result<ApiRepo, EngineError> {
    let api = ApiBuilder::from_cache(Cache::new(cache_dir(data_dir)))
        .with_endpoint(endpoint())
        .with_token(std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()))
        .with_progress(false)
        .build()
        .map_err(|e| hub_error(spec, &e))?;
    Ok(api.repo(Repo::new(spec.repo.clone(), RepoType::Model)))
}

/// A clear error: unreachable hub (with the offline alternatives) or an HTTP error status.
fn hub_error(spec: &RepoSpec, e: &ApiError) -> EngineError {
    let status = match e {
        ApiError::RequestError(inner) => match inner.as_ref() {
            ureq::Error::Status(code, _) => Some(*code),
            ureq::Error::Transport(_) => None,
        },
        ApiError::TooManyRetries(inner) => return hub_error(spec, inner),
        _ => None,
    };
    match status {
        Some(code) => EngineError::Fetch(format!(
            "the Hugging Face hub answered {code} for {}: check the repo id and file name (and \
             HF_TOKEN for a gated repo)",
            spec.repo
        )),
        None => EngineError::Fetch(format!(
            "the Hugging Face hub is unreachable at {} ({e}) for {}: offline, pass a local \
             path (a GGUF file, or a folder with config.json, tokenizer.json and \
             model.safetensors) or a model name from `starpillar models list`",
            endpoint(),
            spec.repo
        )),
    }
}

/// Fetch (or find cached) an HF BERT sentence encoder; the folder holding its files.
pub fn fetch_bert(spec: &RepoSpec, data_dir: &Path) -> Result<PathBuf, EngineError> {
    let repo = api_repo(spec, data_dir)?;
    let mut dir = None;
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        let path = repo.get(file).map_err(|e| hub_error(spec, &e))?;
        dir = path.parent().map(Path::to_path_buf);
    }
    // Optional: the sequence limit sentence-transformers uses.
    let _ = repo.get("sentence_bert_config.json");
    dir.ok_or_else(|| EngineError::Fetch(format!("{}: no files", spec.repo)))
}

/// Fetch (or find cached) a GGUF: the named file, or the repo's only `.gguf`.
pub fn fetch_gguf(spec: &RepoSpec, data_dir: &Path) -> Result<PathBuf, EngineError> {
    let repo = api_repo(spec, data_dir)?;
    let file = match &spec.file {
        Some(f) => f.clone(),
        None => {
            let info = repo.info().map_err(|e| hub_error(spec, &e))?;
            let ggufs: Vec<String> = info
                .siblings
                .into_iter()
                .map(|s| s.rfilename)
                .filter(|f| f.ends_with(".gguf"))
                .collect();
            match ggufs.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(EngineError::Fetch(format!(
                        "{} has no .gguf file",
                        spec.repo
                    )));
                }
                many => {
                    return Err(EngineError::InvalidInput(format!(
                        "{} has several GGUF files; name one as {}:FILE ({})",
                        spec.repo,
                        spec.repo,
                        many.join(", ")
                    )));
                }
            }
        }
    };
    repo.get(&file).map_err(|e| hub_error(spec, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_parse() {
        let s = parse("Qwen/Qwen2.5-0.5B-Instruct-GGUF:qwen2.5-0.5b-instruct-q4_k_m.gguf");
        assert_eq!(
            s,
            Some(RepoSpec {
                repo: "Qwen/Qwen2.5-0.5B-Instruct-GGUF".into(),
                file: Some("qwen2.5-0.5b-instruct-q4_k_m.gguf".into())
            })
        );
        assert_eq!(parse("a/b").map(|s| s.file), Some(None));
        for bad in [
            "plain",
            "/abs/path",
            "a/b/c",
            "./x",
            "a/",
            "a/b:",
            "a/b:../x",
            "../a/b",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
