//! Small text utilities the reading stages share: sentence splitting (English and Korean
//! prose), normalisation for duplicate detection, the Hangul ratio (language check), and the
//! term sets used to rank sentences against a fact.

use std::collections::HashSet;

/// Split prose into sentences at `.`, `!`, `?` (and their full-width forms) followed by
/// whitespace or the end. Markdown heading lines are skipped; whitespace is collapsed.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let mut units: Vec<String> = Vec::new();
        for line in para.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match units.last_mut() {
                Some(last) if !is_item(line) => {
                    last.push(' ');
                    last.push_str(line);
                }
                _ => units.push(line.to_owned()),
            }
        }
        for unit in units {
            split_unit(&unit, &mut out);
        }
    }
    out
}

/// A list item line (`- `, `* `, `1. `): its own unit, never joined to the text before it.
fn is_item(line: &str) -> bool {
    line.starts_with("- ")
        || line.starts_with("* ")
        || line
            .split_once(". ")
            .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// Whether a sentence is a list item.
pub fn is_list_item(s: &str) -> bool {
    is_item(s)
}

fn split_unit(joined: &str, out: &mut Vec<String>) {
    {
        let chars: Vec<char> = joined.chars().collect();
        let mut cur = String::new();
        for (i, &c) in chars.iter().enumerate() {
            cur.push(c);
            let end = matches!(c, '.' | '!' | '?' | '。' | '！' | '？');
            let next_space = chars.get(i + 1).is_none_or(|n| n.is_whitespace());
            let closing = chars
                .get(i + 1)
                .is_some_and(|n| matches!(n, '"' | '”' | ')'));
            if end && next_space && !closing {
                push_sentence(out, &cur);
                cur.clear();
            }
        }
        push_sentence(out, &cur);
    }
}

fn push_sentence(out: &mut Vec<String>, s: &str) {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if !s.is_empty() {
        out.push(s);
    }
}

/// Lowercase letters and digits only: two sentences equal under this are repeats.
pub fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn is_hangul(c: char) -> bool {
    matches!(c, '\u{AC00}'..='\u{D7A3}' | '\u{1100}'..='\u{11FF}' | '\u{3130}'..='\u{318F}')
}

/// Hangul syllables / (Hangul + Latin letters); 0 when there are neither.
pub fn hangul_ratio(s: &str) -> f64 {
    let (mut h, mut l) = (0usize, 0usize);
    for c in s.chars() {
        if is_hangul(c) {
            h += 1;
        } else if c.is_ascii_alphabetic() {
            l += 1;
        }
    }
    if h + l == 0 {
        0.0
    } else {
        h as f64 / (h + l) as f64
    }
}

/// Whether `s` reads as the language `lang` (`ko`: mostly Hangul; `en`: almost none).
pub fn in_language(s: &str, lang: &str) -> bool {
    let r = hangul_ratio(s);
    match lang {
        "ko" => r >= 0.6,
        _ => r <= 0.05,
    }
}

const EN_STOP: &[&str] = &[
    "the", "and", "for", "with", "that", "this", "are", "was", "you", "your", "its", "his", "her",
    "has", "have", "not", "but", "from", "into", "what", "when", "how", "who", "which", "will",
    "can", "does", "about", "their", "they", "them", "one", "all", "more", "most", "chart",
    "reading",
];

/// Terms to match a sentence against: English words of three letters or more (minus stop
/// words, crudely stemmed), Hangul character bigrams, and single Han characters.
pub fn terms(s: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    for word in s.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        let chars: Vec<char> = word.chars().collect();
        if chars.iter().any(|c| is_hangul(*c)) {
            let hangul: Vec<char> = chars.into_iter().filter(|c| is_hangul(*c)).collect();
            if hangul.len() == 1 {
                out.insert(hangul[0].to_string());
            }
            for w in hangul.windows(2) {
                out.insert(w.iter().collect());
            }
        } else if chars.iter().any(|c| ('\u{4E00}'..='\u{9FFF}').contains(c)) {
            for c in chars {
                out.insert(c.to_string());
            }
        } else {
            let lower = word.to_lowercase();
            if lower.len() >= 3 && !EN_STOP.contains(&lower.as_str()) {
                out.insert(stem(&lower));
            }
        }
    }
    out
}

fn stem(w: &str) -> String {
    for suffix in ["ing", "es", "s"] {
        if let Some(base) = w.strip_suffix(suffix)
            && base.len() >= 3
        {
            return base.to_owned();
        }
    }
    w.to_owned()
}

/// How many repeated sentences a text has, over how many sentences.
pub fn repeats(text: &str) -> (usize, usize) {
    let mut seen = HashSet::new();
    let mut rep = 0;
    let all = sentences(text);
    for s in &all {
        let n = normalize(&strip_markers(s));
        if n.len() < 8 {
            continue;
        }
        if !seen.insert(n) {
            rep += 1;
        }
    }
    (rep, all.len())
}

/// Remove `[n]` citation markers.
pub fn strip_markers(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find(']') {
            Some(j)
                if j > 0
                    && after[..j]
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == ',' || c == ' ') =>
            {
                rest = &after[j + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_english_and_korean() {
        let s =
            sentences("# Title\n## Head\n\nOne. Two is \"here.\" Three?\n\n갑목입니다. 좋아요!");
        assert_eq!(
            s,
            ["One.", "Two is \"here.\" Three?", "갑목입니다.", "좋아요!"]
        );
    }

    #[test]
    fn hangul_ratio_and_language() {
        assert!(in_language("일간은 갑목(甲木)입니다. Gap", "ko"));
        assert!(in_language("Your day master is Gap (甲).", "en"));
        assert!(!in_language("일간은 갑목입니다.", "en"));
    }

    #[test]
    fn repeats_and_markers() {
        assert_eq!(strip_markers("Yes [1]. No [2, 3] [x]"), "Yes . No  [x]");
        assert_eq!(
            repeats("A long sentence here. Another one. A long sentence here [2]."),
            (1, 3)
        );
    }

    #[test]
    fn terms_cover_scripts() {
        let t = terms("The Sun in Aries 갑목 甲");
        // English words are stemmed ("aries" → "arie"), Hangul split into bigrams, hanja kept.
        assert!(t.contains("sun") && t.contains(&stem("aries")) && t.contains("갑목"));
        assert!(t.contains("甲") && !t.contains("the"));
    }
}
