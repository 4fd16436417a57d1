//! The versioned templates of `prompts/` (see its README): embedded in the binary, or loaded
//! from `STARPILLAR_PROMPTS_DIR` at first use. The version is `prompts/VERSION` plus a short
//! hash of every template, so any edit changes the response-cache key.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use super::Locale;

const EMBEDDED: [(&str, &str); 4] = [
    (
        "en/compose.txt",
        include_str!("../../prompts/en/compose.txt"),
    ),
    (
        "ko/compose.txt",
        include_str!("../../prompts/ko/compose.txt"),
    ),
    (
        "en/generate.txt",
        include_str!("../../prompts/en/generate.txt"),
    ),
    (
        "ko/generate.txt",
        include_str!("../../prompts/ko/generate.txt"),
    ),
];
const EMBEDDED_VERSION: &str = include_str!("../../prompts/VERSION");

/// A loaded template set.
#[derive(Debug, Clone)]
pub struct Prompts {
    /// `<VERSION>+<hash8>`.
    pub version: String,
    /// (file, key) → template.
    sections: HashMap<(String, String), String>,
}

/// Why a template folder could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: no `## key` sections")]
    Empty(String),
}

fn parse(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut key: Option<String> = None;
    let mut body = String::new();
    for line in text.lines() {
        if let Some(k) = line.strip_prefix("## ") {
            if let Some(prev) = key.take() {
                out.insert(prev, body.trim().to_owned());
            }
            key = Some(k.trim().to_owned());
            body.clear();
        } else if key.is_some() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some(prev) = key {
        out.insert(prev, body.trim().to_owned());
    }
    out
}

impl Prompts {
    fn build(version: &str, files: &[(String, String)]) -> Result<Self, PromptError> {
        let mut h = Sha256::new();
        let mut sections = HashMap::new();
        for (name, text) in files {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(text.as_bytes());
            let parsed = parse(text);
            if parsed.is_empty() {
                return Err(PromptError::Empty(name.clone()));
            }
            for (k, v) in parsed {
                sections.insert((name.clone(), k), v);
            }
        }
        let hash: String = h.finalize()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            version: format!("{}+{hash}", version.trim()),
            sections,
        })
    }

    /// The templates compiled into the binary.
    pub fn embedded() -> Self {
        let files: Vec<(String, String)> = EMBEDDED
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect();
        // The embedded set is checked by the unit tests; an empty one cannot happen.
        Self::build(EMBEDDED_VERSION, &files).unwrap_or(Self {
            version: EMBEDDED_VERSION.trim().to_owned(),
            sections: HashMap::new(),
        })
    }

    /// Load a `prompts/` folder.
    pub fn load(dir: &Path) -> Result<Self, PromptError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| PromptError::Io {
                path: path.display().to_string(),
                source,
            })
        };
        let version = read("VERSION")?;
        let files = EMBEDDED
            .iter()
            .map(|(n, _)| Ok(((*n).to_owned(), read(n)?)))
            .collect::<Result<Vec<_>, PromptError>>()?;
        Self::build(&version, &files)
    }

    /// A template; an empty string when missing (a reading still reads without a transition).
    pub fn get(&self, locale: Locale, file: &str, key: &str) -> &str {
        self.sections
            .get(&(format!("{}/{file}.txt", locale.code()), key.to_owned()))
            .map_or("", String::as_str)
    }
}

/// The process-wide templates: `STARPILLAR_PROMPTS_DIR` if set and valid, else embedded.
pub fn global() -> &'static Prompts {
    static PROMPTS: OnceLock<Prompts> = OnceLock::new();
    PROMPTS.get_or_init(|| match std::env::var_os("STARPILLAR_PROMPTS_DIR") {
        Some(dir) => Prompts::load(Path::new(&dir)).unwrap_or_else(|err| {
            tracing::warn!(error = %err, "prompt templates: using the embedded set");
            Prompts::embedded()
        }),
        None => Prompts::embedded(),
    })
}

/// Fill `{name}` placeholders.
pub fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_set_is_complete_and_versioned() {
        let p = Prompts::embedded();
        assert!(p.version.starts_with("readings-") && p.version.contains('+'));
        for locale in [Locale::Ko, Locale::En] {
            for key in [
                "intro.saju",
                "lead.day_master",
                "lead.sun_sign",
                "closing.question",
            ] {
                assert!(!p.get(locale, "compose", key).is_empty(), "{key}");
            }
            assert!(p.get(locale, "generate", "user").contains("{passages}"));
        }
    }

    #[test]
    fn loading_the_folder_matches_the_embedded_set() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
        let loaded = Prompts::load(&dir).map(|p| p.version);
        assert_eq!(loaded.ok(), Some(Prompts::embedded().version));
    }
}
