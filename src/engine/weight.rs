//! A quantised weight matrix as our CPU forwards (llama, Qwen) multiply it, and the batched,
//! row-split matrix products over the current rayon pool.
//!
//! [`Weight`] is 16-row tiles ([`TiledWeight`], AVX-512 VNNI), a row range of a tiled stack
//! shared by several matrices ([`stack_weights`]: one large buffer on huge pages), or plain
//! row-major blocks ([`QWeight`], for blocks whose scales the tiles cannot hold); all give the
//! same bits. [`matmuls`] multiplies several weights by the same activations in one parallel
//! pass.

use std::sync::Arc;

use rayon::prelude::*;

use super::qkernels::tiles::{GROUP, TiledWeight};
use super::qkernels::{BlockQ8, Blocks, QWeight};

/// Tiles where the CPU has AVX-512 VNNI, unless `STARPILLAR_TILES=0` (for A/B timings).
pub fn tiles_by_default() -> bool {
    super::qkernels::has_vnni512() && std::env::var_os("STARPILLAR_TILES").is_none_or(|v| v != "0")
}

/// A weight as the forward multiplies it: in 16-row tiles ([`TiledWeight`], for AVX-512
/// VNNI), rows of a tiled stack shared with other matrices, or plain row-major blocks
/// ([`QWeight`]). All give the same bits.
pub enum Weight {
    Tiled(TiledWeight),
    /// Rows `r0..r0 + rows` of `stack` (`r0` a multiple of [`GROUP`]).
    Part {
        stack: Arc<TiledWeight>,
        r0: usize,
        rows: usize,
    },
    Plain(QWeight),
}

impl Weight {
    pub fn new(w: QWeight, tiles: bool) -> Self {
        match tiles.then(|| TiledWeight::from_qweight(&w)).flatten() {
            Some(t) => Self::Tiled(t),
            None => Self::Plain(w),
        }
    }

    pub fn rows(&self) -> usize {
        match self {
            Self::Tiled(w) => w.rows,
            Self::Part { rows, .. } => *rows,
            Self::Plain(w) => w.rows,
        }
    }

    pub fn bytes(&self) -> usize {
        match self {
            Self::Tiled(w) => w.bytes(),
            Self::Part { stack, rows, .. } => stack.bytes() / stack.rows.max(1) * rows,
            Self::Plain(w) => w.bytes(),
        }
    }

    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        match self {
            Self::Tiled(w) => w.dequantize_row(r, out),
            Self::Part { stack, r0, .. } => stack.dequantize_row(r0 + r, out),
            Self::Plain(w) => w.dequantize_row(r, out),
        }
    }

    /// Rows `r0..r1` × `n` tokens into `out[t · ld + (r − r0)]`.
    pub fn matmul(
        &self,
        (r0, r1): (usize, usize),
        x: &[BlockQ8],
        n: usize,
        out: &mut [f32],
        ld: usize,
    ) {
        match self {
            Self::Tiled(w) => w.matmul((r0, r1), x, n, out, ld),
            Self::Part {
                stack,
                r0: s0,
                rows,
            } => stack.matmul((s0 + r0, s0 + r1.min(*rows)), x, n, out, ld),
            Self::Plain(w) => {
                let mut part = vec![0f32; (r1 - r0) * n];
                w.matmul_rows((r0, r1), x, n, &mut part);
                for (i, row) in part.chunks_exact(n).enumerate() {
                    for (t, v) in row.iter().enumerate() {
                        out[t * ld + i] = *v;
                    }
                }
            }
        }
    }
}

/// The weights in load order, as [`Weight`]s: with `tiles`, matrices of the same block type
/// and width whose row counts are multiples of [`GROUP`] are tiled into one shared stack each,
/// in load order (so a decode step streams them nearly in address order), which is large
/// enough to sit on 2 MiB pages ([`super::hugemem`]): a step touches every weight once, and on
/// 4 KiB pages that costs a TLB miss per 4 KiB.
pub fn stack_weights(ws: Vec<QWeight>, tiles: bool) -> Vec<Weight> {
    let key = |w: &QWeight| {
        let q4 = matches!(w.blocks, Blocks::Q4_1(_));
        (tiles && w.rows.is_multiple_of(GROUP)).then_some((q4, w.cols))
    };
    let mut keys: Vec<(bool, usize)> = ws.iter().filter_map(key).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut out: Vec<Option<Weight>> = ws.iter().map(|_| None).collect();
    let mut ws: Vec<Option<QWeight>> = ws.into_iter().map(Some).collect();
    for k in keys {
        let idx: Vec<usize> = (0..ws.len())
            .filter(|&i| ws[i].as_ref().and_then(key) == Some(k))
            .collect();
        let mut all = QWeight {
            rows: 0,
            cols: k.1,
            blocks: if k.0 {
                Blocks::Q4_1(Vec::new())
            } else {
                Blocks::Q8_0(Vec::new())
            },
        };
        let mut spans = Vec::with_capacity(idx.len());
        for &i in &idx {
            let Some(w) = ws[i].as_ref() else { continue };
            match (&mut all.blocks, &w.blocks) {
                (Blocks::Q4_1(a), Blocks::Q4_1(b)) => a.extend_from_slice(b),
                (Blocks::Q8_0(a), Blocks::Q8_0(b)) => a.extend_from_slice(b),
                _ => continue,
            }
            spans.push((i, all.rows, w.rows));
            all.rows += w.rows;
        }
        // Scales a tile cannot hold: leave these matrices to `Weight::new` below.
        let Some(stack) = TiledWeight::from_qweight(&all) else {
            continue;
        };
        let stack = Arc::new(stack);
        for (i, r0, rows) in spans {
            ws[i] = None;
            out[i] = Some(Weight::Part {
                stack: Arc::clone(&stack),
                r0,
                rows,
            });
        }
    }
    out.into_iter()
        .zip(ws)
        .filter_map(|(o, w)| o.or_else(|| w.map(|w| Weight::new(w, tiles))))
        .collect()
}

/// `x` (`n` rows of quantised activations) times each weight; one `n × rows` output per
/// weight. Rows are split into tasks over the current rayon pool (one thread: inline).
pub fn matmuls(ws: &[&Weight], x: &[BlockQ8], n: usize) -> Vec<Vec<f32>> {
    let threads = rayon::current_num_threads();
    let mut outs: Vec<Vec<f32>> = ws.iter().map(|w| vec![0f32; n * w.rows()]).collect();
    if threads <= 1 {
        for (w, o) in ws.iter().zip(outs.iter_mut()) {
            w.matmul((0, w.rows()), x, n, o, w.rows());
        }
        return outs;
    }
    let mut tasks = Vec::new();
    for (wi, w) in ws.iter().enumerate() {
        let rows = w.rows();
        let chunk = (rows / (threads * 4))
            .clamp(16, 256)
            .next_multiple_of(GROUP);
        let mut r = 0;
        while r < rows {
            tasks.push((wi, r, (r + chunk).min(rows)));
            r += chunk;
        }
    }
    let run = |&(wi, r0, r1): &(usize, usize, usize)| -> Vec<f32> {
        let mut v = vec![0f32; (r1 - r0) * n];
        ws[wi].matmul((r0, r1), x, n, &mut v, r1 - r0);
        v
    };
    let parts: Vec<Vec<f32>> = if tasks.len() > 1 {
        tasks.par_iter().map(run).collect()
    } else {
        tasks.iter().map(run).collect()
    };
    for (&(wi, r0, r1), part) in tasks.iter().zip(&parts) {
        let rows = ws[wi].rows();
        let o = &mut outs[wi];
        for (t, p) in part.chunks_exact(r1 - r0).enumerate() {
            o[t * rows + r0..t * rows + r1].copy_from_slice(p);
        }
    }
    outs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::qkernels::{QK, quantize_row};

    /// Tiled and plain layouts, inline and over a 2-thread pool, give the same bits.
    #[test]
    fn layouts_and_pools_agree() {
        let (rows, cols, n) = (50, 3 * QK, 3);
        let mut s = 7u64;
        let mut rnd = || {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let w: Vec<f32> = (0..rows * cols).map(|_| rnd()).collect();
        let xs: Vec<f32> = (0..n * cols).map(|_| rnd()).collect();
        let mut x = vec![BlockQ8::default(); n * cols / QK];
        quantize_row(&xs, &mut x);
        let q = QWeight::quantize_q8_0(&w, rows, cols).expect("shape");
        let tiled = Weight::new(q.clone(), true);
        let plain = Weight::new(q, false);
        assert!(matches!(plain, Weight::Plain(_)));
        let a = matmuls(&[&tiled, &plain], &x, n);
        assert_eq!(a[0].len(), n * rows);
        assert_eq!(a[0], a[1]);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool");
        let b = pool.install(|| matmuls(&[&tiled, &plain], &x, n));
        assert_eq!(a, b);
        // Row 0, token 1 is the dot product of that row with that token.
        let mut wr = vec![0f32; cols];
        tiled.dequantize_row(0, &mut wr);
        let exact: f32 = wr.iter().zip(&xs[cols..2 * cols]).map(|(p, q)| p * q).sum();
        assert!((a[0][rows] - exact).abs() < 0.05 * (1.0 + exact.abs()));
    }
}
