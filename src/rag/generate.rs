//! `generate` mode: the prompt (versioned template, the facts, the numbered passages, the
//! question) for the LLM, and the citations it wrote mapped back to passages. A `[n]` that
//! names no passage given is dropped from the final text and counted.

use super::Locale;
use super::facts::Fact;
use super::prompt::{Prompts, fill};
use super::retrieve::Passage;
use crate::engine::generate::{ChatMessage, GenRequest};
use crate::engine::generator::GenParams;

/// Characters of a passage put in the prompt (small models have small contexts).
const PASSAGE_CHARS: usize = 700;

fn clip(text: &str, max: usize) -> String {
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ");
    let body = body.trim();
    if body.chars().count() <= max {
        return body.to_owned();
    }
    let cut: String = body.chars().take(max).collect();
    match cut.rfind(['.', '!', '?']) {
        Some(i) if i > max / 2 => cut[..=i].to_owned(),
        _ => format!("{cut}…"),
    }
}

/// The chat request for a reading.
pub fn request(
    prompts: &Prompts,
    locale: Locale,
    topic: &str,
    facts: &[Fact],
    passages: &[Passage],
    question: Option<&str>,
    max_tokens: usize,
) -> GenRequest {
    let facts_text = facts
        .iter()
        .filter(|f| f.id != "question")
        .map(|f| format!("- {}", f.statement(locale)))
        .collect::<Vec<_>>()
        .join("\n");
    let passages_text = passages
        .iter()
        .map(|p| format!("[{}] {}: {}", p.n, p.title, clip(&p.text, PASSAGE_CHARS)))
        .collect::<Vec<_>>()
        .join("\n\n");
    let none = match locale {
        Locale::Ko => "(없음)",
        Locale::En => "(none)",
    };
    let vars = [
        ("topic", topic),
        ("facts", facts_text.as_str()),
        ("passages", passages_text.as_str()),
        ("question", question.unwrap_or(none)),
    ];
    let system = fill(prompts.get(locale, "generate", "system"), &vars);
    let user = fill(prompts.get(locale, "generate", "user"), &vars);
    GenRequest {
        messages: vec![
            ChatMessage::new("system", system),
            ChatMessage::new("user", user),
        ],
        params: GenParams {
            max_tokens,
            temperature: 0.0,
            repeat_penalty: 1.1,
            ..GenParams::default()
        },
    }
}

/// The `[n]` markers of a text (also `[1, 2]`), in order of appearance.
pub fn cited_numbers(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('[') {
        let after = &rest[i + 1..];
        let Some(j) = after.find(']') else { break };
        let inner = &after[..j];
        if !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c == ' ')
        {
            out.extend(
                inner
                    .split(',')
                    .filter_map(|n| n.trim().parse::<usize>().ok()),
            );
        }
        rest = &after[j..];
    }
    out
}

/// Drop markers naming no passage in `1..=given`; returns the cleaned text, the valid
/// numbers cited (ascending, once each) and how many invalid ones were dropped.
pub fn validate(text: &str, given: usize) -> (String, Vec<usize>, usize) {
    let mut out = String::with_capacity(text.len());
    let mut valid = Vec::new();
    let mut invalid = 0;
    let mut rest = text;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find(']') else {
            out.push('[');
            rest = after;
            continue;
        };
        let inner = &after[..j];
        if inner.is_empty()
            || !inner
                .chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c == ' ')
        {
            out.push('[');
            rest = after;
            continue;
        }
        let nums: Vec<usize> = inner
            .split(',')
            .filter_map(|n| n.trim().parse::<usize>().ok())
            .collect();
        let keep: Vec<usize> = nums
            .iter()
            .copied()
            .filter(|n| (1..=given).contains(n))
            .collect();
        invalid += nums.len() - keep.len();
        if !keep.is_empty() {
            let list = keep
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!("[{list}]"));
        } else {
            while out.ends_with(' ') {
                out.pop();
            }
        }
        valid.extend(keep);
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    valid.sort_unstable();
    valid.dedup();
    (out, valid, invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_are_validated() {
        let (text, valid, invalid) = validate("A [1]. B [7]. C [2, 9]. D [x].", 3);
        assert_eq!(text, "A [1]. B. C [2]. D [x].");
        assert_eq!(valid, [1, 2]);
        assert_eq!(invalid, 2);
        assert_eq!(cited_numbers("a [3] b [1,2]"), [3, 1, 2]);
    }

    #[test]
    fn clip_keeps_whole_sentences() {
        let t = "# T\n## H\n\nOne sentence here. Two sentence here. Three.";
        assert_eq!(clip(t, 30), "One sentence here.");
    }
}
