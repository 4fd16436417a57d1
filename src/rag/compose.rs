//! `compose` mode: a reading assembled without a language model. An opening names the core of
//! the chart in plain words (the day master; the Sun, Moon and ascendant), then one paragraph
//! per important fact — a templated transition, the fact's statement and the two or three
//! sentences of its passages most relevant to the fact (never a whole chunk, never a sentence
//! twice) — and a closing that addresses the question. Every sentence is traced to a template,
//! a fact id or a passage number; passage sentences carry `[n]` markers.

use std::collections::HashSet;

use serde::Serialize;

use super::Locale;
use super::facts::Fact;
use super::prompt::{Prompts, fill};
use super::retrieve::Passage;
use super::text::{is_list_item, normalize, sentences, terms};

/// Where one sentence of a reading came from.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TraceItem {
    pub sentence: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fact: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passage: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// A composed reading.
#[derive(Debug, Clone, Default)]
pub struct Composed {
    /// Paragraphs, each a list of sentences (markers included).
    pub paragraphs: Vec<Vec<String>>,
    pub trace: Vec<TraceItem>,
    /// Passage numbers cited, ascending.
    pub cited: Vec<usize>,
}

impl Composed {
    pub fn text(&self) -> String {
        self.paragraphs
            .iter()
            .map(|p| p.join(" "))
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

/// What the reading is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Saju,
    Astrology,
    Question,
}

/// At most this many fact paragraphs.
const MAX_SECTIONS: usize = 7;
const META_WORDS: &[&str] = &[
    "document",
    "section",
    "see \"",
    "see '",
    "guide",
    "문서",
    "참고하",
    "아래",
    "below",
    "가이드",
];

struct Builder<'a> {
    prompts: &'a Prompts,
    locale: Locale,
    out: Composed,
    seen: HashSet<String>,
    cur: Vec<String>,
}

impl Builder<'_> {
    fn push(
        &mut self,
        sentence: String,
        fact: Option<&str>,
        passage: Option<usize>,
        template: Option<&str>,
    ) {
        if sentence.trim().is_empty() {
            return;
        }
        self.seen.insert(normalize(&sentence));
        self.out.trace.push(TraceItem {
            sentence: sentence.clone(),
            fact: fact.map(str::to_owned),
            passage,
            template: template.map(str::to_owned),
        });
        self.cur.push(sentence);
    }

    fn template(&mut self, key: &str, vars: &[(&str, &str)]) {
        let t = fill(self.prompts.get(self.locale, "compose", key), vars);
        for s in sentences(&t) {
            self.push(s, None, None, Some(key));
        }
    }

    fn end_paragraph(&mut self) {
        if !self.cur.is_empty() {
            self.out.paragraphs.push(std::mem::take(&mut self.cur));
        }
    }

    /// Add the best sentences of `passages` for `wanted` terms; returns how many were added.
    fn passage_sentences(
        &mut self,
        passages: &[&Passage],
        wanted: &HashSet<String>,
        k: usize,
        fact: &str,
        min_overlap: f32,
    ) -> usize {
        let mut cands: Vec<(f32, usize, usize, String)> = Vec::new();
        for p in passages {
            for (i, s) in sentences(&p.text).into_iter().enumerate() {
                let chars = s.chars().count();
                let lower = s.to_lowercase();
                if !(25..=420).contains(&chars)
                    || is_list_item(&s)
                    || s.ends_with(':')
                    || META_WORDS.iter().any(|m| lower.contains(m))
                    || self.seen.contains(&normalize(&s))
                {
                    continue;
                }
                let st = terms(&s);
                let overlap = st.intersection(wanted).count() as f32;
                if overlap < min_overlap {
                    continue;
                }
                let reader = if lower.contains("you") || s.contains("당신") {
                    0.3
                } else {
                    0.0
                };
                let position = 0.8 / (1.0 + i as f32);
                let score = overlap / (1.0 + (st.len() as f32).sqrt() * 0.15) + reader + position;
                cands.push((score, p.n, i, s));
            }
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut chosen: Vec<(usize, usize, String)> = Vec::new();
        let mut norms = HashSet::new();
        for (_, n, i, s) in cands {
            if chosen.len() >= k {
                break;
            }
            if norms.insert(normalize(&s)) {
                chosen.push((n, i, s));
            }
        }
        chosen.sort_by_key(|(n, i, _)| (*n, *i));
        let count = chosen.len();
        for idx in 0..count {
            let (n, _, s) = &chosen[idx];
            let last_of_passage = chosen.get(idx + 1).is_none_or(|next| next.0 != *n);
            let sentence = if last_of_passage {
                if !self.out.cited.contains(n) {
                    self.out.cited.push(*n);
                }
                format!("{s} [{n}]")
            } else {
                s.clone()
            };
            self.push(sentence, Some(fact), Some(*n), None);
        }
        count
    }
}

fn wanted_terms(fact: &Fact, locale: Locale, question: Option<&str>) -> HashSet<String> {
    let mut text = fact.queries(locale).join(" ");
    for s in &fact.search.sections {
        text.push(' ');
        text.push_str(s);
    }
    if matches!(fact.kind(), "area" | "question")
        && let Some(q) = question
    {
        text.push(' ');
        text.push_str(q);
    }
    terms(&text)
}

/// Compose a reading from the facts (best first) and the passages retrieved for them.
pub fn compose(
    prompts: &Prompts,
    locale: Locale,
    subject: Subject,
    facts: &[Fact],
    passages: &[Passage],
    question: Option<&str>,
) -> Composed {
    let mut b = Builder {
        prompts,
        locale,
        out: Composed::default(),
        seen: HashSet::new(),
        cur: Vec::new(),
    };
    let (intro, core): (&str, &[&str]) = match subject {
        Subject::Saju => ("intro.saju", &["day_master"]),
        Subject::Astrology => (
            "intro.astrology",
            &["sun_sign", "moon_sign", "ascendant_sign"],
        ),
        Subject::Question => ("intro.ask", &[]),
    };
    b.template(intro, &[]);
    let mut opened = HashSet::new();
    for id in core {
        if let Some(f) = facts.iter().find(|f| f.id == *id) {
            b.push(f.statement(locale).to_owned(), Some(&f.id), None, None);
            opened.insert(f.id.clone());
        }
    }
    b.end_paragraph();

    let mut sections = 0;
    let mut led: HashSet<String> = HashSet::new();
    for fact in facts.iter().filter(|f| f.id != "question") {
        if sections >= MAX_SECTIONS {
            break;
        }
        let own: Vec<&Passage> = passages.iter().filter(|p| p.fact == fact.id).collect();
        if own.is_empty() && opened.contains(&fact.id) {
            continue;
        }
        if led.insert(fact.kind().to_owned()) {
            b.template(&format!("lead.{}", fact.kind()), &[]);
        }
        if !opened.contains(&fact.id) {
            b.push(
                fact.statement(locale).to_owned(),
                Some(&fact.id),
                None,
                None,
            );
        }
        let k = if fact.weight >= 0.85 { 3 } else { 2 };
        let wanted = wanted_terms(fact, locale, question);
        b.passage_sentences(&own, &wanted, k, &fact.id, 0.0);
        b.end_paragraph();
        sections += 1;
    }

    let q_passages: Vec<&Passage> = passages.iter().filter(|p| p.fact == "question").collect();
    if let Some(q) = question.map(str::trim).filter(|q| !q.is_empty()) {
        if !q_passages.is_empty() {
            if subject != Subject::Question {
                b.template("lead.question", &[]);
            }
            let wanted = terms(q);
            let (k, min) = if subject == Subject::Question {
                (5, 1.0)
            } else {
                (2, 2.0)
            };
            if b.passage_sentences(&q_passages, &wanted, k, "question", min) == 0 {
                // Nothing on point: take back the transition.
                if subject != Subject::Question {
                    b.cur.clear();
                    b.out.trace.pop();
                }
            }
            b.end_paragraph();
        }
        b.template("closing.question", &[("question", q)]);
    } else {
        b.template("closing.general", &[]);
    }
    b.end_paragraph();
    b.out.cited.sort_unstable();
    b.out
}
