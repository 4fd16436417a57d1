//! The pure half of the corpus: front-matter parsing and validation of one document, and
//! cutting its Markdown body into chunk texts under a token budget (see [`super`] for the
//! rules). No I/O and no `crate::` imports, so the fuzz crate in `fuzz/` compiles this file as
//! it is.

use std::collections::HashMap;

/// Languages and topics a document may declare.
pub const LANGS: [&str; 2] = ["ko", "en"];
pub const TOPICS: [&str; 2] = ["saju", "astrology"];

/// Counts tokens the way the embedder will.
pub trait TokenCounter: Send + Sync {
    fn count(&self, text: &str) -> usize;
}

/// A tokenizer-free estimate: each whitespace word costs one token per four characters
/// (rounded up), close to a SentencePiece count for English and Korean prose.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApproxTokens;

impl TokenCounter for ApproxTokens {
    fn count(&self, text: &str) -> usize {
        text.split_whitespace()
            .map(|w| w.chars().count().div_ceil(4).max(1))
            .sum()
    }
}

/// One validated document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: String,
    pub title: String,
    pub lang: String,
    pub topic: String,
    pub tags: Vec<String>,
    /// Path relative to the corpus root, `/`-separated.
    pub source: String,
    /// The Markdown after the front-matter.
    pub body: String,
}

/// Chunking budget, in the counter's tokens.
#[derive(Debug, Clone, Copy)]
pub struct ChunkConfig {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
}

impl Default for ChunkConfig {
    /// Well under E5's 512-token window, leaving room for the `passage: ` prefix.
    fn default() -> Self {
        Self {
            max_tokens: 384,
            overlap_tokens: 48,
        }
    }
}

/// A document that is not valid, and why (the loader reports it as
/// `RetrievalError::Document`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct DocumentError {
    pub path: String,
    pub problem: String,
}

fn doc_err(path: &str, problem: impl Into<String>) -> DocumentError {
    DocumentError {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// Parse one file's text; `source` is its path relative to the corpus root.
pub fn parse_document(source: &str, text: &str) -> Result<Document, DocumentError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) != Some("---") {
        return Err(doc_err(
            source,
            "missing front-matter: the file must start with `---`",
        ));
    }
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut closed = false;
    let mut consumed = 1;
    for line in lines.by_ref() {
        consumed += 1;
        let line = line.trim_end();
        if line == "---" {
            closed = true;
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(doc_err(
                source,
                format!(
                    "front-matter line {consumed} is not `key: value` (is the closing `---` \
                     missing?): {line:?}"
                ),
            ));
        };
        let key = key.trim();
        if !["id", "title", "lang", "topic", "tags"].contains(&key) {
            return Err(doc_err(source, format!("unknown front-matter key {key:?}")));
        }
        if fields
            .insert(key.to_owned(), value.trim().to_owned())
            .is_some()
        {
            return Err(doc_err(
                source,
                format!("front-matter key {key:?} appears twice"),
            ));
        }
    }
    if !closed {
        return Err(doc_err(
            source,
            "front-matter is not closed by a `---` line",
        ));
    }
    let body: String = text.lines().skip(consumed).collect::<Vec<_>>().join("\n");
    let get = |k: &str| {
        fields
            .get(k)
            .cloned()
            .ok_or_else(|| doc_err(source, format!("front-matter lacks `{k}`")))
    };
    let id = unquote(&get("id")?);
    let title = unquote(&get("title")?);
    let lang = unquote(&get("lang")?);
    let topic = unquote(&get("topic")?);
    let tags = parse_tags(source, &get("tags")?)?;
    validate_id(source, &id, &lang)?;
    if title.trim().is_empty() {
        return Err(doc_err(source, "`title` is empty"));
    }
    if !TOPICS.contains(&topic.as_str()) {
        return Err(doc_err(
            source,
            format!("`topic` is {topic:?}; expected one of {TOPICS:?}"),
        ));
    }
    let stem = source.rsplit('/').next().unwrap_or(source);
    if stem.strip_suffix(".md") != Some(id.as_str()) {
        return Err(doc_err(
            source,
            format!("the file name must be `{id}.md` (the id), not {stem:?}"),
        ));
    }
    if body.trim().is_empty() {
        return Err(doc_err(source, "the document has no body"));
    }
    Ok(Document {
        id,
        title,
        lang,
        topic,
        tags,
        source: source.to_owned(),
        body,
    })
}

fn validate_id(source: &str, id: &str, lang: &str) -> Result<(), DocumentError> {
    if !LANGS.contains(&lang) {
        return Err(doc_err(
            source,
            format!("`lang` is {lang:?}; expected one of {LANGS:?}"),
        ));
    }
    let shape_ok = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.contains("--");
    if !shape_ok {
        return Err(doc_err(
            source,
            format!("`id` {id:?} must be lowercase ASCII words joined by `-`"),
        ));
    }
    if !id.ends_with(&format!("-{lang}")) {
        return Err(doc_err(
            source,
            format!("`id` {id:?} must end with `-{lang}` to match `lang: {lang}`"),
        ));
    }
    Ok(())
}

/// Strip one pair of matching quotes, undoing `\"` and `\\` inside double quotes.
fn unquote(value: &str) -> String {
    let v = value.trim();
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        let inner = &v[1..v.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].to_owned();
    }
    v.to_owned()
}

fn parse_tags(source: &str, value: &str) -> Result<Vec<String>, DocumentError> {
    let v = value.trim();
    let Some(inner) = v.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        return Err(doc_err(source, "`tags` must be a list like `[a, b]`"));
    };
    Ok(inner
        .split(',')
        .map(unquote)
        .filter(|t| !t.is_empty())
        .collect())
}

/// A heading section: its heading line (if any) and its paragraphs.
struct Section {
    heading: Option<String>,
    paragraphs: Vec<String>,
}

/// Split a Markdown body into heading sections of blank-line-separated paragraphs. Fenced code
/// blocks stay whole.
fn sections(body: &str) -> Vec<Section> {
    let mut out = vec![Section {
        heading: None,
        paragraphs: Vec::new(),
    }];
    let mut para: Vec<&str> = Vec::new();
    let mut in_fence = false;
    let flush = |para: &mut Vec<&str>, out: &mut Vec<Section>| {
        if !para.is_empty() {
            let text = para.join("\n");
            if let Some(last) = out.last_mut() {
                last.paragraphs.push(text);
            }
            para.clear();
        }
    };
    for line in body.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_fence = !in_fence;
            para.push(line);
            continue;
        }
        if in_fence {
            para.push(line);
            continue;
        }
        let is_heading = trimmed.starts_with('#')
            && trimmed.trim_start_matches('#').starts_with(' ')
            && trimmed.len() - trimmed.trim_start_matches('#').len() <= 6;
        if is_heading {
            flush(&mut para, &mut out);
            out.push(Section {
                heading: Some(trimmed.trim_end().to_owned()),
                paragraphs: Vec::new(),
            });
        } else if line.trim().is_empty() {
            flush(&mut para, &mut out);
        } else {
            para.push(line.trim_end());
        }
    }
    flush(&mut para, &mut out);
    out.retain(|s| s.heading.is_some() || !s.paragraphs.is_empty());
    out
}

/// Split `text` into pieces of at most `max` tokens by whitespace words (and, for a single
/// word longer than the budget, by characters).
fn split_long(text: &str, max: usize, counter: &dyn TokenCounter) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        let candidate = if cur.is_empty() {
            word.to_owned()
        } else {
            format!("{cur} {word}")
        };
        if counter.count(&candidate) <= max {
            cur = candidate;
            continue;
        }
        if !cur.is_empty() {
            pieces.push(std::mem::take(&mut cur));
        }
        if counter.count(word) <= max {
            cur = word.to_owned();
        } else {
            let mut part = String::new();
            for c in word.chars() {
                part.push(c);
                if counter.count(&part) > max {
                    part.pop();
                    pieces.push(std::mem::take(&mut part));
                    part.push(c);
                }
            }
            cur = part;
        }
    }
    if !cur.is_empty() {
        pieces.push(cur);
    }
    pieces
}

/// Cut one document's body into chunk texts. Every chunk begins with the document title and,
/// for a sub-section, its heading, so it reads on its own.
pub fn chunk_texts(doc: &Document, config: ChunkConfig, counter: &dyn TokenCounter) -> Vec<String> {
    let max = config.max_tokens.max(16);
    let overlap = config.overlap_tokens.min(max / 2);
    let mut out = Vec::new();
    for section in sections(&doc.body) {
        let title_line = format!("# {}", doc.title);
        let header = match &section.heading {
            Some(h) if h.trim_start_matches('#').trim() == doc.title.trim() => title_line,
            Some(h) => format!("{title_line}\n{h}"),
            None => title_line,
        };
        let budget = max.saturating_sub(counter.count(&header)).max(8);
        // Paragraphs longer than the budget are split first.
        let mut paras: Vec<String> = Vec::new();
        for p in &section.paragraphs {
            if counter.count(p) > budget {
                paras.extend(split_long(p, budget, counter));
            } else {
                paras.push(p.clone());
            }
        }
        if paras.is_empty() {
            continue;
        }
        let mut start = 0;
        while start < paras.len() {
            let mut end = start + 1;
            let mut used = counter.count(&paras[start]);
            while end < paras.len() {
                let next = counter.count(&paras[end]);
                if used + next > budget {
                    break;
                }
                used += next;
                end += 1;
            }
            out.push(format!("{header}\n\n{}", paras[start..end].join("\n\n")));
            if end >= paras.len() {
                break;
            }
            // Carry trailing paragraphs (within the overlap budget) into the next chunk.
            let mut next_start = end;
            let mut carried = 0;
            while next_start > start + 1 {
                let c = counter.count(&paras[next_start - 1]);
                if carried + c > overlap {
                    break;
                }
                carried += c;
                next_start -= 1;
            }
            start = next_start;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "---\nid: saju-stem-yang-wood-en\ntitle: \"Gap (甲), yang wood\"\nlang: en\ntopic: saju\ntags: [stem:甲, element:wood, day_master]\n---\n\n# Gap (甲), yang wood\n\nOpening.\n\n## At work\n\nWork text.\n";

    fn doc() -> Document {
        parse_document("saju/en/saju-stem-yang-wood-en.md", GOOD).unwrap()
    }

    #[test]
    fn parses_front_matter() {
        let d = doc();
        assert_eq!(d.id, "saju-stem-yang-wood-en");
        assert_eq!(d.title, "Gap (甲), yang wood");
        assert_eq!(d.tags, ["stem:甲", "element:wood", "day_master"]);
        assert!(d.body.contains("## At work"));
    }

    #[test]
    fn rejects_bad_documents_naming_the_problem() {
        let cases = [
            (GOOD.replace("lang: en", "lang: fr"), "`lang`"),
            (GOOD.replace("topic: saju", "topic: tarot"), "`topic`"),
            (
                GOOD.replace("id: saju-stem-yang-wood-en", "id: Saju_X-en"),
                "`id`",
            ),
            (GOOD.replace("lang: en", "lang: ko"), "must end with `-ko`"),
            (GOOD.replace("tags: [", "tags: ("), "`tags`"),
            (
                GOOD.replace("title: \"Gap (甲), yang wood\"\n", ""),
                "lacks `title`",
            ),
            (GOOD.replacen("---\n", "", 1), "missing front-matter"),
            (GOOD.replace("\n---\n\n#", "\n\n#"), "closing `---`"),
            (
                GOOD.split("\n---\n").next().unwrap().to_owned(),
                "not closed",
            ),
            (
                GOOD.replace("topic: saju", "topic: saju\ncolour: red"),
                "unknown",
            ),
        ];
        for (text, want) in cases {
            let err = parse_document("saju/en/saju-stem-yang-wood-en.md", &text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
            assert!(
                err.starts_with("saju/en/saju-stem-yang-wood-en.md"),
                "{err}"
            );
        }
        let err = parse_document("saju/en/other.md", GOOD)
            .unwrap_err()
            .to_string();
        assert!(err.contains("file name"), "{err}");
    }

    #[test]
    fn small_sections_become_one_chunk_each_with_context() {
        let texts = chunk_texts(&doc(), ChunkConfig::default(), &ApproxTokens);
        assert_eq!(texts.len(), 2);
        assert!(texts[0].starts_with("# Gap (甲), yang wood\n\nOpening."));
        assert!(texts[1].starts_with("# Gap (甲), yang wood\n## At work\n\nWork text."));
    }

    #[test]
    fn long_sections_respect_the_budget_and_overlap() {
        let mut d = doc();
        let paras: Vec<String> = (0..12)
            .map(|i| format!("p{i}{}", " word".repeat(20)))
            .collect();
        d.body = format!("## Long\n\n{}", paras.join("\n\n"));
        let cfg = ChunkConfig {
            max_tokens: 70,
            overlap_tokens: 25,
        };
        let texts = chunk_texts(&d, cfg, &ApproxTokens);
        assert!(texts.len() > 3);
        for t in &texts {
            assert!(
                ApproxTokens.count(t) <= 70,
                "{} tokens",
                ApproxTokens.count(t)
            );
        }
        // Every paragraph appears, and consecutive chunks share a paragraph.
        for p in &paras {
            assert!(texts.iter().any(|t| t.contains(p.as_str())));
        }
        for w in texts.windows(2) {
            let last = w[0].rsplit("\n\n").next().unwrap();
            assert!(w[1].contains(last), "no overlap between chunks");
        }
        // A single huge word is split by characters.
        d.body = format!("## Huge\n\n{}", "가".repeat(1000));
        for t in chunk_texts(&d, cfg, &ApproxTokens) {
            assert!(ApproxTokens.count(&t) <= 70);
        }
    }
}
