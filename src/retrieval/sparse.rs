//! Keyword search: text analysis and BM25 sparse vectors.
//!
//! Korean is agglutinative (particles and endings glue onto words), so whitespace words match
//! badly. Hangul runs are analysed as character bigrams ([`KoreanMode::Bigram`]), as the word
//! with a trailing particle or ending stripped ([`KoreanMode::Morph`]), or both; `starpillar
//! eval --korean` measures which ranks better. Hanja (甲, 子 …) give unigrams and bigrams.
//! English is lower-cased, stop words dropped, and lightly stemmed.
//!
//! A document's sparse vector carries the BM25 term-frequency part with a fixed average length
//! (so a chunk's vector never depends on other chunks, and re-indexing stays idempotent); the
//! query vector carries 1 per term; the store multiplies in the IDF over its whole collection,
//! like Qdrant's `Modifier::Idf` on a sparse vector — the form Qdrant's sparse vectors accept.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A sparse vector: sorted, distinct indices and their weights.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseVector {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseVector {
    /// Build from (index, weight) pairs, summing repeated indices.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u32, f32)>) -> Self {
        let mut map: BTreeMap<u32, f32> = BTreeMap::new();
        for (i, w) in pairs {
            *map.entry(i).or_default() += w;
        }
        let (indices, values) = map.into_iter().unzip();
        Self { indices, values }
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Σ self[i] · other[i] · weight(i) over shared indices (both sorted).
    pub fn dot_with(&self, other: &SparseVector, weight: impl Fn(u32) -> f32) -> f32 {
        let (mut a, mut b, mut sum) = (0, 0, 0.0);
        while a < self.indices.len() && b < other.indices.len() {
            match self.indices[a].cmp(&other.indices[b]) {
                std::cmp::Ordering::Less => a += 1,
                std::cmp::Ordering::Greater => b += 1,
                std::cmp::Ordering::Equal => {
                    let i = self.indices[a];
                    sum += self.values[a] * other.values[b] * weight(i);
                    a += 1;
                    b += 1;
                }
            }
        }
        sum
    }
}

/// How Hangul runs are turned into terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KoreanMode {
    /// Overlapping character bigrams of each Hangul run.
    Bigram,
    /// The word with a trailing particle or verb ending stripped.
    Morph,
    /// Both sets of terms.
    #[default]
    Both,
}

/// BM25 parameters and the Korean mode.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SparseConfig {
    pub korean: KoreanMode,
    pub k1: f32,
    pub b: f32,
    /// The average document length (in terms) the length normalisation assumes.
    pub avg_len: f32,
}

impl Default for SparseConfig {
    fn default() -> Self {
        Self {
            korean: KoreanMode::default(),
            k1: 1.2,
            b: 0.75,
            avg_len: 200.0,
        }
    }
}

const EN_STOP: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "do", "does", "for", "from",
    "has", "have", "how", "i", "if", "in", "is", "it", "its", "me", "my", "of", "on", "or", "so",
    "that", "the", "their", "them", "they", "this", "to", "was", "we", "what", "when", "which",
    "who", "why", "will", "with", "you", "your", "am", "about", "there", "these", "those",
];

/// Particles and endings stripped from a Hangul word, longest first.
const KO_SUFFIXES: &[&str] = &[
    "이었어요",
    "였어요",
    "인가요",
    "인데요",
    "입니다",
    "합니다",
    "됩니다",
    "습니다",
    "에서는",
    "에서도",
    "에게는",
    "으로는",
    "으로도",
    "까지는",
    "부터는",
    "이라는",
    "이라고",
    "이에요",
    "해야",
    "하는",
    "하면",
    "해서",
    "해요",
    "하나요",
    "나요",
    "어요",
    "아요",
    "에요",
    "예요",
    "인가",
    "인데",
    "이라",
    "에서",
    "에게",
    "한테",
    "으로",
    "까지",
    "부터",
    "처럼",
    "보다",
    "이나",
    "이랑",
    "하고",
    "라는",
    "라고",
    "이란",
    "이고",
    "은",
    "는",
    "이",
    "가",
    "을",
    "를",
    "의",
    "에",
    "로",
    "와",
    "과",
    "도",
    "만",
    "란",
    "요",
    "할",
    "한",
    "된",
    "인",
];

fn is_hangul(c: char) -> bool {
    matches!(c, '\u{AC00}'..='\u{D7A3}' | '\u{1100}'..='\u{11FF}' | '\u{3130}'..='\u{318F}')
}

fn is_han(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}')
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Class {
    Hangul,
    Han,
    Word,
    Other,
}

fn class(c: char) -> Class {
    if is_hangul(c) {
        Class::Hangul
    } else if is_han(c) {
        Class::Han
    } else if c.is_alphanumeric() {
        Class::Word
    } else {
        Class::Other
    }
}

/// Strip an English word to a rough stem: (suffix, shortest word it applies to, replacement),
/// first match wins.
const EN_RULES: &[(&str, usize, &str)] = &[
    ("ies", 5, "y"),
    ("sses", 4, "ss"),
    ("ches", 5, "ch"),
    ("shes", 5, "sh"),
    ("xes", 5, "x"),
    ("zes", 5, "z"),
    ("ss", 2, "ss"),
    ("us", 2, "us"),
    ("is", 2, "is"),
    ("s", 4, ""),
    ("ing", 6, ""),
    ("ed", 5, ""),
    ("ly", 5, ""),
];

pub fn stem_en(word: &str) -> String {
    let w = word.strip_suffix("'s").unwrap_or(word);
    for (suffix, min_len, replacement) in EN_RULES {
        if w.len() >= *min_len
            && let Some(stem) = w.strip_suffix(suffix)
        {
            return format!("{stem}{replacement}");
        }
    }
    w.to_owned()
}

/// Strip one trailing particle or ending, keeping at least two syllables of stem.
pub fn strip_korean(word: &str) -> &str {
    let len = word.chars().count();
    for suffix in KO_SUFFIXES {
        if let Some(stem) = word.strip_suffix(suffix)
            && stem.chars().count() >= 2
            && len > stem.chars().count()
        {
            return stem;
        }
    }
    word
}

/// The terms of `text` under `mode`.
pub fn analyze(text: &str, mode: KoreanMode) -> Vec<String> {
    let mut terms = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let cls = class(chars[i]);
        let mut j = i + 1;
        while j < chars.len() && class(chars[j]) == cls {
            j += 1;
        }
        let run = &chars[i..j];
        match cls {
            Class::Hangul => {
                if matches!(mode, KoreanMode::Bigram | KoreanMode::Both) {
                    if run.len() == 1 {
                        terms.push(run[0].to_string());
                    }
                    for w in run.windows(2) {
                        terms.push(w.iter().collect());
                    }
                }
                if matches!(mode, KoreanMode::Morph | KoreanMode::Both) {
                    let word: String = run.iter().collect();
                    terms.push(format!("w:{}", strip_korean(&word)));
                }
            }
            Class::Han => {
                for c in run {
                    terms.push(c.to_string());
                }
                for w in run.windows(2) {
                    terms.push(w.iter().collect());
                }
            }
            Class::Word => {
                let word: String = run.iter().collect::<String>().to_lowercase();
                if !EN_STOP.contains(&word.as_str()) {
                    terms.push(stem_en(&word));
                }
            }
            Class::Other => {}
        }
        i = j;
    }
    terms
}

/// A term's index: FNV-1a, 32 bits.
pub fn term_index(term: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in term.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// A document's BM25 term-frequency vector.
pub fn doc_vector(text: &str, config: &SparseConfig) -> SparseVector {
    let terms = analyze(text, config.korean);
    let len = terms.len() as f32;
    let mut tf: BTreeMap<u32, f32> = BTreeMap::new();
    for t in &terms {
        *tf.entry(term_index(t)).or_default() += 1.0;
    }
    let norm = config.k1 * (1.0 - config.b + config.b * len / config.avg_len.max(1.0));
    SparseVector::from_pairs(
        tf.into_iter()
            .map(|(i, f)| (i, f * (config.k1 + 1.0) / (f + norm))),
    )
}

/// A query's vector: 1 per distinct term.
pub fn query_vector(text: &str, config: &SparseConfig) -> SparseVector {
    let mut v = SparseVector::from_pairs(
        analyze(text, config.korean)
            .iter()
            .map(|t| (term_index(t), 1.0)),
    );
    for w in &mut v.values {
        *w = 1.0;
    }
    v
}

/// BM25's IDF with `n` documents of which `df` hold the term (never negative).
pub fn idf(n: usize, df: usize) -> f32 {
    let (n, df) = (n as f32, df as f32);
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn korean_bigrams_and_particles() {
        let t = analyze("병오일주는", KoreanMode::Bigram);
        assert_eq!(t, ["병오", "오일", "일주", "주는"]);
        let t = analyze("병오일주는 배우자운을", KoreanMode::Morph);
        assert_eq!(t, ["w:병오일주", "w:배우자운"]);
        // A two-syllable word is not stripped to one syllable.
        assert_eq!(strip_korean("사주"), "사주");
        assert_eq!(strip_korean("대운이"), "대운");
        assert_eq!(strip_korean("일간에서는"), "일간");
    }

    #[test]
    fn english_and_hanja() {
        let t = analyze(
            "The Houses of Mars, retrograde planets: 甲子!",
            KoreanMode::Both,
        );
        assert_eq!(
            t,
            ["house", "mar", "retrograde", "planet", "甲", "子", "甲子"]
        );
        assert_eq!(stem_en("stories"), "story");
        assert_eq!(stem_en("reading"), "read");
    }

    #[test]
    fn bm25_weights_saturate_and_normalise() {
        let cfg = SparseConfig::default();
        let one = doc_vector("saturn", &cfg);
        let many = doc_vector("saturn saturn saturn saturn", &cfg);
        assert!(many.values[0] > one.values[0]);
        assert!(many.values[0] < cfg.k1 + 1.0);
        let q = query_vector("saturn saturn", &cfg);
        assert_eq!(q.values, [1.0]);
        assert!(q.dot_with(&one, |_| 1.0) > 0.0);
        assert_eq!(q.dot_with(&doc_vector("venus", &cfg), |_| 1.0), 0.0);
        assert!(idf(100, 1) > idf(100, 50));
        assert!(idf(10, 10) > 0.0);
    }

    #[test]
    fn sparse_vectors_are_sorted_and_distinct() {
        let v = SparseVector::from_pairs([(5, 1.0), (2, 1.0), (5, 2.0)]);
        assert_eq!(v.indices, [2, 5]);
        assert_eq!(v.values, [1.0, 3.0]);
    }
}
