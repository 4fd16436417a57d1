//! The row layout of a batched forward: every item's new tokens one after another, each with
//! its position in its own sequence. Shared by the llama and Qwen forwards.

use super::EngineError;

/// Items flattened into rows.
pub struct Rows {
    /// The first row of each item.
    pub starts: Vec<usize>,
    /// Each row's position in its sequence.
    pub positions: Vec<usize>,
    /// Each row's token id.
    pub ids: Vec<u32>,
}

impl Rows {
    /// Lay out `(tokens already in the sequence, new tokens)` items, refusing an item with no
    /// tokens, one that would overflow `context`, and token ids outside `vocab`.
    pub fn layout<'a>(
        items: impl ExactSizeIterator<Item = (usize, &'a [u32])>,
        context: usize,
        vocab: usize,
    ) -> Result<Self, EngineError> {
        let mut rows = Self {
            starts: Vec::with_capacity(items.len()),
            positions: Vec::new(),
            ids: Vec::new(),
        };
        for (done, toks) in items {
            if toks.is_empty() {
                return Err(EngineError::InvalidInput("an item has no tokens".into()));
            }
            if done + toks.len() > context {
                return Err(EngineError::InvalidInput(format!(
                    "{} tokens exceed the model's context of {context}",
                    done + toks.len(),
                )));
            }
            rows.starts.push(rows.ids.len());
            for (i, &t) in toks.iter().enumerate() {
                if t as usize >= vocab {
                    return Err(EngineError::InvalidInput(format!(
                        "token id {t} out of range"
                    )));
                }
                rows.ids.push(t);
                rows.positions.push(done + i);
            }
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_the_items_and_bad_items_are_refused() {
        let (a, b) = ([5u32, 6, 7], [9u32]);
        let rows = Rows::layout([(2, &a[..]), (0, &b[..])].into_iter(), 8, 10).expect("fits");
        assert_eq!(rows.starts, vec![0, 3]);
        assert_eq!(rows.positions, vec![2, 3, 4, 0]);
        assert_eq!(rows.ids, vec![5, 6, 7, 9]);
        assert!(Rows::layout([(0, &[][..])].into_iter(), 8, 10).is_err());
        assert!(Rows::layout([(6, &a[..])].into_iter(), 8, 10).is_err());
        assert!(Rows::layout([(0, &[10u32][..])].into_iter(), 8, 10).is_err());
    }
}
