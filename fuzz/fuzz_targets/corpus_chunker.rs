//! Corpus documents (src/retrieval/corpus/markdown.rs): front-matter parsing and Markdown
//! chunking. Bytes 0–2 pick the budget, the overlap and the token counter; the rest is the
//! file. The file is parsed (named after its own `id:` line, so a valid document gets past
//! the file-name check), and its text is chunked as a body whether or not it parsed.
//!
//! Token counters: the product's `ApproxTokens` (what `serve` and the evals use), and one
//! token per character, which makes every long word exceed the budget (the character-split
//! path). The real tokenizer (a model file) is too heavy for a fuzz loop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starpillar_fuzz::corpus::{
    ApproxTokens, ChunkConfig, Document, TokenCounter, chunk_texts, parse_document,
};

struct PerChar;

impl TokenCounter for PerChar {
    fn count(&self, text: &str) -> usize {
        text.chars().count()
    }
}

fn check(doc: &Document, config: ChunkConfig, counter: &dyn TokenCounter) {
    let title = format!("# {}", doc.title);
    for chunk in chunk_texts(doc, config, counter) {
        assert!(chunk.starts_with(&title), "a chunk lost its title line");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let config = ChunkConfig {
        max_tokens: usize::from(head[0]),
        overlap_tokens: usize::from(head[1]),
    };
    let counter: &dyn TokenCounter = if head[2].is_multiple_of(2) {
        &ApproxTokens
    } else {
        &PerChar
    };
    let id = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("id:"))
        .map(|v| v.trim().trim_matches('"').trim_matches('\''))
        .unwrap_or("doc");
    match parse_document(&format!("saju/{id}.md"), text) {
        Ok(doc) => check(&doc, config, counter),
        Err(err) => assert!(err.to_string().starts_with("saju/")),
    }
    let raw = Document {
        id: "doc".to_owned(),
        title: text.lines().next().unwrap_or_default().to_owned(),
        lang: "en".to_owned(),
        topic: "saju".to_owned(),
        tags: Vec::new(),
        source: "doc.md".to_owned(),
        body: text.to_owned(),
    };
    check(&raw, config, counter);
});
