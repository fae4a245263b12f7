//! Mini-batches with dynamic padding.
//!
//! Each batch is padded on the right to its own longest sequence (HF `DataCollatorWithPadding`
//! with `padding=True`): pad id for `input_ids`, 0 for `token_type_ids` (BERT's
//! `pad_token_type_id`), 0 in `attention_mask` (1 = attend, HF convention). Training order is a
//! seeded shuffle (PyTorch `RandomSampler` in HF `Trainer`); evaluation either visits the input
//! in order (`SequentialSampler`) or longest first, which pads less (sentence-transformers'
//! `encode` sorts by length for the same reason). The last, smaller batch is kept
//! (`drop_last=False`).

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::data::Label;
use crate::error::GlueError;
use crate::tokenize::Features;

/// The labels of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchLabels {
    /// Class ids (`i64`, as cross-entropy targets).
    Class(Vec<i64>),
    /// Regression targets (STS-B).
    Score(Vec<f32>),
}

/// A padded batch; all id vectors are row-major `[batch_size, seq_len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Token ids, padded with the pad id.
    pub input_ids: Vec<i64>,
    /// Segment ids, padded with 0.
    pub token_type_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Labels, `None` for unlabelled (test) data.
    pub labels: Option<BatchLabels>,
    /// Positions of the batch's rows in the feature slice given to [`Batches::new`] or [`Batches::with_order`]
    /// (to map predictions back to examples after shuffling).
    pub indices: Vec<usize>,
    /// Number of rows.
    pub batch_size: usize,
    /// Padded length: the longest sequence of the batch.
    pub seq_len: usize,
}

/// Order in which features are visited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Input order.
    Sequential,
    /// Longest sequence first, ties in input order: batches of similar lengths pad less
    /// (evaluation; [`Batch::indices`] maps the rows back).
    LongestFirst,
    /// A permutation drawn from `StdRng::seed_from_u64(mix(seed, epoch))` (rand 0.9), so every
    /// epoch has its own, reproducible order.
    Shuffled {
        /// Run seed.
        seed: u64,
        /// Epoch number.
        epoch: u64,
    },
}

/// Iterator over padded batches of a feature slice.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    features: &'a [Features],
    order: Vec<usize>,
    batch_size: usize,
    pad_id: i64,
    next: usize,
}

/// Combines a seed and an epoch into one RNG seed (SplitMix64 finaliser of `seed ^ golden*epoch`),
/// so nearby (seed, epoch) pairs give unrelated streams.
fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    let mut z = seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn label_kind(label: &Option<Label>) -> u8 {
    match label {
        None => 0,
        Some(Label::Class(_)) => 1,
        Some(Label::Score(_)) => 2,
    }
}

impl<'a> Batches<'a> {
    /// Batches `features` in `order`, `batch_size` rows each (the last may be smaller).
    /// Fails on a zero batch size, or when the features mix labelled and unlabelled examples
    /// or class ids and scores.
    pub fn new(
        features: &'a [Features],
        batch_size: usize,
        pad_id: i64,
        order: Order,
    ) -> Result<Batches<'a>, GlueError> {
        let mut idx: Vec<usize> = (0..features.len()).collect();
        match order {
            Order::Sequential => {}
            Order::LongestFirst => {
                idx.sort_by_key(|&i| std::cmp::Reverse(features[i].input_ids.len()));
            }
            Order::Shuffled { seed, epoch } => {
                idx.shuffle(&mut StdRng::seed_from_u64(epoch_seed(seed, epoch)));
            }
        }
        Self::with_order(features, batch_size, pad_id, idx)
    }

    /// Batches `features` visiting them in `order`, a permutation of `0..features.len()` drawn
    /// elsewhere (PyTorch's `randperm`, for one). Fails as [`new`](Self::new) does, and when
    /// `order` is not a permutation.
    pub fn with_order(
        features: &'a [Features],
        batch_size: usize,
        pad_id: i64,
        order: Vec<usize>,
    ) -> Result<Batches<'a>, GlueError> {
        if batch_size == 0 {
            return Err(GlueError::ZeroBatchSize);
        }
        if let Some(first) = features.first() {
            let kind = label_kind(&first.label);
            if let Some(index) = features.iter().position(|f| label_kind(&f.label) != kind) {
                return Err(GlueError::MixedLabels { index });
            }
        }
        let n = features.len();
        let bad = |problem: String| GlueError::NotAPermutation {
            features: n,
            problem,
        };
        if order.len() != n {
            return Err(bad(format!("it has {} entries", order.len())));
        }
        let mut seen = vec![false; n];
        for &i in &order {
            match seen.get_mut(i) {
                None => return Err(bad(format!("index {i} is out of range"))),
                Some(true) => return Err(bad(format!("index {i} appears twice"))),
                Some(s) => *s = true,
            }
        }
        Ok(Batches {
            features,
            order,
            batch_size,
            pad_id,
            next: 0,
        })
    }
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.order.len() {
            return None;
        }
        let end = (self.next + self.batch_size).min(self.order.len());
        let indices = self.order[self.next..end].to_vec();
        self.next = end;
        let rows: Vec<&Features> = indices.iter().map(|&i| &self.features[i]).collect();
        let batch_size = rows.len();
        let seq_len = rows.iter().map(|f| f.input_ids.len()).max().unwrap_or(0);
        let mut input_ids = vec![self.pad_id; batch_size * seq_len];
        let mut token_type_ids = vec![0; batch_size * seq_len];
        let mut attention_mask = vec![0; batch_size * seq_len];
        for (r, f) in rows.iter().enumerate() {
            let n = f.input_ids.len();
            let row = r * seq_len;
            input_ids[row..row + n].copy_from_slice(&f.input_ids);
            token_type_ids[row..row + n].copy_from_slice(&f.token_type_ids);
            attention_mask[row..row + n].fill(1);
        }
        let labels = match rows.first().and_then(|f| f.label) {
            None => None,
            Some(Label::Class(_)) => Some(BatchLabels::Class(
                rows.iter()
                    .filter_map(|f| match f.label {
                        Some(Label::Class(c)) => Some(c as i64),
                        _ => None,
                    })
                    .collect(),
            )),
            Some(Label::Score(_)) => Some(BatchLabels::Score(
                rows.iter()
                    .filter_map(|f| match f.label {
                        Some(Label::Score(s)) => Some(s),
                        _ => None,
                    })
                    .collect(),
            )),
        };
        Some(Batch {
            input_ids,
            token_type_ids,
            attention_mask,
            labels,
            indices,
            batch_size,
            seq_len,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.order.len() - self.next).div_ceil(self.batch_size);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Batches<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn feat(len: usize, label: Option<Label>) -> Features {
        Features {
            input_ids: (1..=len as i64).collect(),
            token_type_ids: (0..len).map(|i| i64::from(i >= len / 2)).collect(),
            label,
        }
    }

    #[test]
    fn pads_to_batch_max_and_keeps_last() {
        let fs: Vec<_> = [3, 5, 2, 4, 1]
            .iter()
            .enumerate()
            .map(|(i, &n)| feat(n, Some(Label::Class(i % 2))))
            .collect();
        let batches: Vec<_> = Batches::new(&fs, 2, 99, Order::Sequential)
            .unwrap()
            .collect();
        assert_eq!(batches.len(), 3);
        let b = &batches[0];
        assert_eq!((b.batch_size, b.seq_len), (2, 5));
        assert_eq!(b.input_ids, [1, 2, 3, 99, 99, 1, 2, 3, 4, 5]);
        assert_eq!(b.attention_mask, [1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
        assert_eq!(b.token_type_ids, [0, 1, 1, 0, 0, 0, 0, 1, 1, 1]);
        assert_eq!(b.labels, Some(BatchLabels::Class(vec![0, 1])));
        assert_eq!(b.indices, [0, 1]);
        let last = &batches[2];
        assert_eq!((last.batch_size, last.seq_len), (1, 1));
        assert_eq!(last.indices, [4]);
    }

    #[test]
    fn shuffle_is_seeded_and_epoch_dependent() {
        let fs: Vec<_> = (0..50)
            .map(|i| feat(1 + i % 7, Some(Label::Score(i as f32))))
            .collect();
        let order = |seed, epoch| -> Vec<usize> {
            Batches::new(&fs, 8, 0, Order::Shuffled { seed, epoch })
                .unwrap()
                .flat_map(|b| b.indices)
                .collect()
        };
        let a = order(42, 0);
        assert_eq!(a, order(42, 0));
        assert_ne!(a, order(42, 1));
        assert_ne!(a, order(43, 0));
        assert_ne!(a, (0..50).collect::<Vec<_>>());
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        let b = Batches::new(&fs, 8, 0, Order::Shuffled { seed: 42, epoch: 0 })
            .unwrap()
            .next()
            .unwrap();
        let want: Vec<f32> = b.indices.iter().map(|&i| i as f32).collect();
        assert_eq!(b.labels, Some(BatchLabels::Score(want)));
    }

    #[test]
    fn longest_first_is_stable_and_pads_less() {
        let lens = [3, 7, 2, 7, 5, 1, 3];
        let fs: Vec<_> = lens.iter().map(|&n| feat(n, None)).collect();
        let padded = |order| -> (Vec<usize>, usize) {
            let bs: Vec<_> = Batches::new(&fs, 2, 0, order).unwrap().collect();
            let pad = bs.iter().map(|b| b.batch_size * b.seq_len).sum();
            (bs.into_iter().flat_map(|b| b.indices).collect(), pad)
        };
        let (visited, pad) = padded(Order::LongestFirst);
        assert_eq!(visited, [1, 3, 4, 0, 6, 2, 5]);
        assert_eq!(pad, 7 * 2 + 5 * 2 + 3 * 2 + 1);
        assert_eq!(padded(Order::Sequential).1, 7 * 2 + 7 * 2 + 5 * 2 + 3);
    }

    #[test]
    fn rejects_zero_batch_and_mixed_labels() {
        let fs = vec![feat(2, Some(Label::Class(0))), feat(2, None)];
        assert!(matches!(
            Batches::new(&fs, 0, 0, Order::Sequential),
            Err(GlueError::ZeroBatchSize)
        ));
        assert!(matches!(
            Batches::new(&fs, 2, 0, Order::Sequential),
            Err(GlueError::MixedLabels { index: 1 })
        ));
        let unlabelled = vec![feat(2, None)];
        let b = Batches::new(&unlabelled, 4, 0, Order::Sequential).unwrap();
        assert_eq!(b.len(), 1);
        assert!(b.map(|b| b.labels).all(|l| l.is_none()));
    }

    #[test]
    fn given_order_is_visited_and_must_be_a_permutation() {
        let fs: Vec<_> = (0..5).map(|i| feat(1 + i, Some(Label::Class(0)))).collect();
        let visited: Vec<usize> = Batches::with_order(&fs, 2, 0, vec![3, 0, 4, 1, 2])
            .unwrap()
            .flat_map(|b| b.indices)
            .collect();
        assert_eq!(visited, [3, 0, 4, 1, 2]);
        for (order, problem) in [
            (vec![0, 1, 2, 3], "it has 4 entries"),
            (vec![0, 1, 2, 3, 5], "index 5 is out of range"),
            (vec![0, 1, 2, 2, 4], "index 2 appears twice"),
        ] {
            let err = Batches::with_order(&fs, 2, 0, order).unwrap_err();
            assert!(
                matches!(&err, GlueError::NotAPermutation { features: 5, problem: p } if p == problem),
                "{err}"
            );
        }
    }
}
