//! From generated token ids to the text deltas a client sees: incremental detokenisation that
//! never splits a UTF-8 character (a piece ending in U+FFFD, i.e. an incomplete byte sequence,
//! waits for the next token), and stop sequences that are never emitted, not even partly (text
//! that could be the start of a stop string is held back until it is decided).

/// Turns ids into text incrementally: each call decodes only a short window of recent ids
/// (the `prefix/read offset` method), so a step costs O(1) in the length of the output.
#[derive(Debug, Default)]
pub struct Detokenizer {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl Detokenizer {
    /// Add one id; returns newly completed text (possibly empty). `decode` is the tokenizer's.
    pub fn push<E>(
        &mut self,
        id: u32,
        decode: impl Fn(&[u32]) -> Result<String, E>,
    ) -> Result<String, E> {
        self.ids.push(id);
        let prefix = decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let full = decode(&self.ids[self.prefix_offset..])?;
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') && full.starts_with(&prefix) {
            let piece = full[prefix.len()..].to_owned();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(piece)
        } else {
            Ok(String::new())
        }
    }

    /// Whatever is still pending at the end; an incomplete final character is dropped.
    pub fn flush<E>(&mut self, decode: impl Fn(&[u32]) -> Result<String, E>) -> Result<String, E> {
        let prefix = decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let full = decode(&self.ids[self.prefix_offset..])?;
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        let rest = full.strip_prefix(prefix.as_str()).unwrap_or("");
        Ok(rest.trim_end_matches('\u{FFFD}').to_owned())
    }
}

/// What one piece of text did to the stream.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Text safe to send now (possibly empty).
    pub delta: String,
    /// A stop sequence was reached: the request is finished; nothing after it is sent.
    pub stopped: bool,
}

/// Accumulates text, cuts at the first stop sequence and holds back possible stop prefixes.
#[derive(Debug, Default)]
pub struct StopFilter {
    stops: Vec<String>,
    text: String,
    emitted: usize,
    longest: usize,
}

impl StopFilter {
    pub fn new(stops: &[String]) -> Self {
        let stops: Vec<String> = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        let longest = stops.iter().map(String::len).max().unwrap_or(0);
        Self {
            stops,
            text: String::new(),
            emitted: 0,
            longest,
        }
    }

    /// Everything emitted so far.
    pub fn emitted(&self) -> &str {
        &self.text[..self.emitted]
    }

    /// Add newly decoded text.
    pub fn push(&mut self, piece: &str) -> Step {
        let search_from = floor_boundary(&self.text, self.emitted.saturating_sub(self.longest));
        self.text.push_str(piece);
        let cut = self
            .stops
            .iter()
            .filter_map(|s| self.text[search_from..].find(s.as_str()))
            .min()
            .map(|i| i + search_from);
        if let Some(cut) = cut {
            self.text.truncate(cut);
            return Step {
                delta: self.take(cut),
                stopped: true,
            };
        }
        // Hold back the longest tail that is a proper prefix of some stop string.
        let mut safe = self.text.len();
        for s in &self.stops {
            for k in (1..s.len()).rev() {
                if s.is_char_boundary(k) && self.text.ends_with(&s[..k]) {
                    safe = safe.min(self.text.len() - k);
                    break;
                }
            }
        }
        Step {
            delta: self.take(safe),
            stopped: false,
        }
    }

    /// The end without a stop: release what was held back.
    pub fn finish(&mut self) -> String {
        self.take(self.text.len())
    }

    fn take(&mut self, upto: usize) -> String {
        if upto > self.emitted && self.text.is_char_boundary(upto) {
            let out = self.text[self.emitted..upto].to_owned();
            self.emitted = upto;
            out
        } else {
            String::new()
        }
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level "tokenizer": each id is one byte; invalid UTF-8 decodes lossily.
    fn bytes(ids: &[u32]) -> Result<String, ()> {
        let raw: Vec<u8> = ids.iter().map(|&i| i as u8).collect();
        Ok(String::from_utf8_lossy(&raw).into_owned())
    }

    fn run(text: &str, stops: &[&str]) -> (Vec<String>, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut detok = Detokenizer::default();
        let mut filter = StopFilter::new(&stops);
        let mut deltas = Vec::new();
        for b in text.bytes() {
            let piece = detok.push(u32::from(b), bytes).unwrap_or_default();
            let step = filter.push(&piece);
            if !step.delta.is_empty() {
                deltas.push(step.delta);
            }
            if step.stopped {
                return (deltas, true);
            }
        }
        let tail = detok.flush(bytes).unwrap_or_default();
        let step = filter.push(&tail);
        deltas.push(step.delta);
        deltas.push(filter.finish());
        deltas.retain(|d| !d.is_empty());
        (deltas, false)
    }

    #[test]
    fn korean_is_never_split_across_deltas() {
        let text = "오늘의 운세: 좋음 🌙";
        let (deltas, stopped) = run(text, &[]);
        assert!(!stopped);
        assert_eq!(deltas.concat(), text);
        // Byte-at-a-time input: every delta is whole characters (a String cannot be otherwise),
        // and no replacement character leaked.
        assert!(deltas.iter().all(|d| !d.contains('\u{FFFD}')), "{deltas:?}");
        assert_eq!(deltas.len(), text.chars().count());
    }

    #[test]
    fn stop_sequences_are_cut_and_never_partly_emitted() {
        let (deltas, stopped) = run("Hello END world", &["END"]);
        assert!(stopped);
        assert_eq!(deltas.concat(), "Hello ");
        assert!(deltas.iter().all(|d| !d.contains('E')), "{deltas:?}");

        // A prefix of the stop that turns out not to be one is released.
        let (deltas, stopped) = run("a EN b", &["END"]);
        assert!(!stopped);
        assert_eq!(deltas.concat(), "a EN b");

        // Multi-byte stop strings, and the earliest of several stops wins.
        let (deltas, stopped) = run("운세는 좋음. 끝", &["끝", "좋음"]);
        assert!(stopped);
        assert_eq!(deltas.concat(), "운세는 ");

        // A held-back prefix at the very end is released by finish().
        let (deltas, stopped) = run("tail E", &["END"]);
        assert!(!stopped);
        assert_eq!(deltas.concat(), "tail E");
    }

    #[test]
    fn an_incomplete_final_character_is_dropped() {
        let mut detok = Detokenizer::default();
        for b in "가한".bytes().take(4) {
            let _ = detok.push(u32::from(b), bytes);
        }
        assert_eq!(detok.flush(bytes), Ok(String::new()));
        let mut detok = Detokenizer::default();
        let first = "한".as_bytes()[0];
        assert_eq!(detok.push(u32::from(first), bytes), Ok(String::new()));
        assert_eq!(detok.flush(bytes), Ok(String::new()));
    }
}
