//! A SentencePiece (BPE-by-score) tokenizer built from a GGUF file's `tokenizer.ggml.*`
//! metadata of the `llama` family (tokens + scores + token types, no merges), as llama.cpp's
//! SPM tokenizer does it: special tokens (control, user-defined, unknown; longest first) are
//! cut out of the text whole, spaces become `▁`, each remaining piece is split into characters
//! and adjacent symbols are merged highest score first (ties: leftmost) while the merged text is
//! a vocabulary entry; a symbol outside the vocabulary falls back to its bytes (`<0xNN>`).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use candle_core::quantized::gguf_file::{Content, Value};

use super::EngineError;

/// Token types of the GGUF vocabulary (llama.cpp's `llama_token_type`).
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_BYTE: i32 = 6;

/// The tokenizer and the ids that matter to generation.
pub struct SpmTokenizer {
    pieces: Vec<String>,
    scores: Vec<f32>,
    types: Vec<i32>,
    index: HashMap<String, u32>,
    /// Control, user-defined and unknown tokens, longest text first.
    specials: Vec<u32>,
    bytes: [Option<u32>; 256],
    pub bos: u32,
    pub eos: u32,
    unk: Option<u32>,
    /// Prepend `▁` to text that follows the start or a special token (`add_space_prefix`).
    space_prefix: bool,
}

fn meta<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<&'a Value, EngineError> {
    md.get(key)
        .ok_or_else(|| EngineError::Format(format!("GGUF metadata lacks {key}")))
}

fn bad(key: &str) -> impl Fn(candle_core::Error) -> EngineError + '_ {
    move |e| EngineError::Format(format!("{key}: {e}"))
}

/// A candidate merge of two adjacent symbols.
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Higher score first; among equal scores, the leftmost first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// A symbol of the text being merged: a byte range and its neighbours (linked list).
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

impl SpmTokenizer {
    /// Build from the GGUF metadata (`tokenizer.ggml.model` must be `llama`).
    pub fn from_content(content: &Content) -> Result<Self, EngineError> {
        let md = &content.metadata;
        let model = meta(md, "tokenizer.ggml.model")?
            .to_string()
            .map_err(bad("tokenizer.ggml.model"))?;
        if model != "llama" {
            return Err(EngineError::Format(format!(
                "tokenizer model {model:?} is not SentencePiece (llama)"
            )));
        }
        let key = "tokenizer.ggml.tokens";
        let pieces: Vec<String> = meta(md, key)?
            .to_vec()
            .map_err(bad(key))?
            .iter()
            .map(|v| v.to_string().cloned().map_err(bad(key)))
            .collect::<Result<_, _>>()?;
        let key = "tokenizer.ggml.scores";
        let scores: Vec<f32> = match md.get(key) {
            Some(v) => v
                .to_vec()
                .map_err(bad(key))?
                .iter()
                .map(|x| x.to_f32().map_err(bad(key)))
                .collect::<Result<_, _>>()?,
            None => vec![0.0; pieces.len()],
        };
        let key = "tokenizer.ggml.token_type";
        let types: Vec<i32> = match md.get(key) {
            Some(v) => v
                .to_vec()
                .map_err(bad(key))?
                .iter()
                .map(|x| x.to_i32().map_err(bad(key)))
                .collect::<Result<_, _>>()?,
            None => vec![1; pieces.len()],
        };
        if scores.len() != pieces.len() || types.len() != pieces.len() {
            return Err(EngineError::Format(
                "tokenizer tokens, scores and types differ in length".into(),
            ));
        }
        let id = |key: &str| md.get(key).and_then(|v| v.to_u32().ok());
        let flag = |key: &str| md.get(key).and_then(|v| v.to_bool().ok());
        let in_vocab = |i: u32| (i as usize) < pieces.len();
        let bos = id("tokenizer.ggml.bos_token_id").filter(|&i| in_vocab(i));
        let eos = id("tokenizer.ggml.eos_token_id").filter(|&i| in_vocab(i));
        let (Some(bos), Some(eos)) = (bos, eos) else {
            return Err(EngineError::Format(
                "GGUF metadata lacks valid bos/eos token ids".into(),
            ));
        };
        let mut tok = Self {
            index: HashMap::with_capacity(pieces.len()),
            specials: Vec::new(),
            bytes: [None; 256],
            bos,
            eos,
            unk: id("tokenizer.ggml.unknown_token_id").filter(|&i| in_vocab(i)),
            space_prefix: flag("tokenizer.ggml.add_space_prefix").unwrap_or(true),
            pieces,
            scores,
            types,
        };
        for (i, p) in tok.pieces.iter().enumerate() {
            tok.index.insert(p.clone(), i as u32);
            match tok.types[i] {
                TYPE_CONTROL | TYPE_USER_DEFINED | TYPE_UNKNOWN if !p.is_empty() => {
                    tok.specials.push(i as u32)
                }
                TYPE_BYTE => {
                    if let Some(b) = p
                        .strip_prefix("<0x")
                        .and_then(|h| h.strip_suffix('>'))
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        tok.bytes[b as usize] = Some(i as u32);
                    }
                }
                _ => {}
            }
        }
        let pieces = &tok.pieces;
        tok.specials
            .sort_by_key(|&i| std::cmp::Reverse(pieces[i as usize].len()));
        Ok(tok)
    }

    /// Number of tokens of the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.index.get(token).copied()
    }

    /// Token ids of `text`: `<bos>` first when `add_bos`; special tokens written in the text
    /// become their ids when `parse_special` (user-defined ones always do, as in llama.cpp).
    pub fn encode_with(&self, text: &str, add_bos: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if add_bos {
            out.push(self.bos);
        }
        let mut prev_special = true;
        for fragment in self.partition(text, parse_special) {
            match fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(t) => {
                    let mut s = String::with_capacity(t.len() + 3);
                    if self.space_prefix && prev_special {
                        s.push(' ');
                    }
                    s.push_str(t);
                    self.encode_piece(&s.replace(' ', "\u{2581}"), &mut out);
                    prev_special = false;
                }
            }
        }
        out
    }

    /// Cut the special tokens out of `text`, longest first.
    fn partition<'a>(&self, text: &'a str, parse_special: bool) -> Vec<Fragment<'a>> {
        let mut frags = vec![Fragment::Text(text)];
        for &id in &self.specials {
            let t = self.types[id as usize];
            if !parse_special && (t == TYPE_CONTROL || t == TYPE_UNKNOWN) {
                continue;
            }
            let piece = self.pieces[id as usize].as_str();
            if !frags
                .iter()
                .any(|f| matches!(f, Fragment::Text(s) if s.contains(piece)))
            {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                match f {
                    Fragment::Text(s) if s.contains(piece) => {
                        let mut rest = s;
                        while let Some(at) = rest.find(piece) {
                            if at > 0 {
                                next.push(Fragment::Text(&rest[..at]));
                            }
                            next.push(Fragment::Token(id));
                            rest = &rest[at + piece.len()..];
                        }
                        if !rest.is_empty() {
                            next.push(Fragment::Text(rest));
                        }
                    }
                    other => next.push(other),
                }
            }
            frags = next;
        }
        frags
    }

    /// The highest-score segmentation of one piece of text (spaces already `▁`).
    fn encode_piece(&self, text: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = text
            .char_indices()
            .map(|(start, c)| Symbol {
                start,
                len: c.len_utf8(),
                prev: None,
                next: None,
            })
            .collect();
        let n = symbols.len();
        for (i, s) in symbols.iter_mut().enumerate() {
            s.prev = i.checked_sub(1);
            s.next = (i + 1 < n).then_some(i + 1);
        }
        let mut heap = BinaryHeap::new();
        let bigram = |symbols: &[Symbol], left: Option<usize>, right: Option<usize>| {
            let (l, r) = (left?, right?);
            let (a, b) = (symbols[l], symbols[r]);
            let size = a.len + b.len;
            let id = self.token_id(&text[a.start..a.start + size])?;
            Some(Bigram {
                left: l,
                right: r,
                score: self.scores[id as usize],
                size,
            })
        };
        for i in 1..n {
            heap.extend(bigram(&symbols, Some(i - 1), Some(i)));
        }
        while let Some(b) = heap.pop() {
            let (l, r) = (symbols[b.left], symbols[b.right]);
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            symbols[b.left].len += r.len;
            symbols[b.right].len = 0;
            symbols[b.left].next = r.next;
            if let Some(nx) = r.next {
                symbols[nx].prev = Some(b.left);
            }
            heap.extend(bigram(&symbols, l.prev, Some(b.left)));
            heap.extend(bigram(&symbols, Some(b.left), r.next));
        }
        let mut at = (n > 0).then_some(0);
        while let Some(i) = at {
            let s = symbols[i];
            let piece = &text[s.start..s.start + s.len];
            match self.token_id(piece) {
                Some(id) => out.push(id),
                None => {
                    for byte in piece.bytes() {
                        out.extend(self.bytes[byte as usize].or(self.unk));
                    }
                }
            }
            at = s.next;
        }
    }

    /// The bytes of `ids` (control tokens skipped; `▁` is a space; byte tokens are bytes).
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        for &id in ids {
            let Some(piece) = self.pieces.get(id as usize) else {
                continue;
            };
            match self.types[id as usize] {
                TYPE_CONTROL | TYPE_UNKNOWN => {}
                TYPE_BYTE => out.extend(
                    self.bytes
                        .iter()
                        .position(|b| *b == Some(id))
                        .map(|b| b as u8),
                ),
                _ => out.extend_from_slice(piece.replace('\u{2581}', " ").as_bytes()),
            }
        }
        out
    }

    /// Text of `ids` (special tokens skipped; an incomplete UTF-8 tail becomes U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file::Value as V;

    fn toy() -> SpmTokenizer {
        let vocab: [(&str, f32, i32); 12] = [
            ("<unk>", 0.0, TYPE_UNKNOWN),
            ("<bos>", 0.0, TYPE_CONTROL),
            ("<eos>", 0.0, TYPE_CONTROL),
            ("<0x41>", 0.0, TYPE_BYTE),
            ("<0xEA>", 0.0, TYPE_BYTE),
            ("\n", 0.0, TYPE_USER_DEFINED),
            ("\u{2581}", -1.0, 1),
            ("a", -2.0, 1),
            ("b", -2.0, 1),
            ("ab", -1.5, 1),
            ("\u{2581}a", -0.5, 1),
            ("\u{2581}ab", -3.0, 1),
        ];
        let mut md = HashMap::new();
        md.insert("tokenizer.ggml.model".into(), V::String("llama".into()));
        let arr = |f: &dyn Fn(&(&str, f32, i32)) -> V| V::Array(vocab.iter().map(f).collect());
        md.insert(
            "tokenizer.ggml.tokens".into(),
            arr(&|t| V::String(t.0.into())),
        );
        md.insert("tokenizer.ggml.scores".into(), arr(&|t| V::F32(t.1)));
        md.insert("tokenizer.ggml.token_type".into(), arr(&|t| V::I32(t.2)));
        md.insert("tokenizer.ggml.bos_token_id".into(), V::U32(1));
        md.insert("tokenizer.ggml.eos_token_id".into(), V::U32(2));
        md.insert("tokenizer.ggml.unknown_token_id".into(), V::U32(0));
        md.insert("tokenizer.ggml.add_space_prefix".into(), V::Bool(false));
        let content = Content {
            magic: candle_core::quantized::gguf_file::VersionedMagic::GgufV3,
            metadata: md,
            tensor_infos: HashMap::new(),
            tensor_data_offset: 0,
        };
        SpmTokenizer::from_content(&content).expect("toy vocabulary")
    }

    #[test]
    fn merges_by_score_with_byte_fallback_and_specials() {
        let t = toy();
        // "▁a" (-0.5) merges before "ab" (-1.5); "▁ab" is then reachable from "▁a"+"b".
        assert_eq!(t.encode_with(" ab", false, true), vec![11]);
        assert_eq!(t.encode_with("ab", true, true), vec![1, 9]);
        // 'A' has only a byte token; 'Z' has none (→ <unk>); "\n" is user-defined.
        assert_eq!(t.encode_with("A\nZ", false, false), vec![3, 5, 0]);
        assert_eq!(t.encode_with("<eos>b", false, true), vec![2, 8]);
        assert_eq!(t.decode(&[1, 11, 5, 3, 2]), " ab\nA");
    }
}
