//! Matching a fine-tune's tensors with its base's: same name (or the same name under one extra
//! leading component, as `bert.` in a classifier over a bare encoder), same shape, and the
//! same dtype or two float dtypes.

use anyhow::{bail, Result};

use crate::checkpoint::{Checkpoint, TensorInfo};

pub struct TensorPair<'a> {
    pub finetuned: &'a TensorInfo,
    /// None: the base has no such tensor (a task head); it is carried over unchanged.
    pub base: Option<&'a TensorInfo>,
}

pub struct Pairing<'a> {
    pub pairs: Vec<TensorPair<'a>>,
    by_name: std::collections::HashMap<&'a str, usize>,
}

impl<'a> Pairing<'a> {
    pub fn new(base: &'a Checkpoint, finetuned: &'a Checkpoint) -> Result<Self> {
        let mut pairs = Vec::new();
        let mut clashes = Vec::new();
        for ft in finetuned.tensors() {
            let b = base
                .get(&ft.name)
                .or_else(|| ft.name.split_once('.').and_then(|(_, rest)| base.get(rest)));
            if let Some(b) = b {
                // Float dtypes may differ (an f16 base fine-tuned in f32): δ is taken in f32,
                // where f16 and bf16 widen exactly. Anything else must match.
                let dtypes_ok = b.dtype == ft.dtype || (b.is_float() && ft.is_float());
                if b.shape != ft.shape || !dtypes_ok {
                    clashes.push(format!(
                        "{} is {:?} {:?} in the fine-tune but {:?} {:?} in the base",
                        ft.name, ft.dtype, ft.shape, b.dtype, b.shape
                    ));
                }
            }
            pairs.push(TensorPair {
                finetuned: ft,
                base: b,
            });
        }
        if !clashes.is_empty() {
            let more = clashes.len().saturating_sub(6);
            clashes.truncate(6);
            bail!(
                "{} and {} do not match: {}{}",
                finetuned.dir.display(),
                base.dir.display(),
                clashes.join("; "),
                if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                }
            );
        }
        if pairs.iter().all(|p| p.base.is_none()) {
            bail!(
                "{} and {} share no tensor names: is the base really the model this was fine-tuned from?",
                finetuned.dir.display(),
                base.dir.display()
            );
        }
        let by_name = pairs
            .iter()
            .enumerate()
            .map(|(i, p)| (p.finetuned.name.as_str(), i))
            .collect();
        Ok(Self { pairs, by_name })
    }

    pub fn get(&self, finetuned_name: &str) -> Option<&TensorPair<'a>> {
        self.by_name.get(finetuned_name).map(|&i| &self.pairs[i])
    }

    /// Pairs every fine-tune with the base; all fine-tunes must hold the same tensors.
    pub fn many(base: &'a Checkpoint, finetuned: &'a [Checkpoint]) -> Result<Vec<Self>> {
        let all: Vec<Self> = finetuned
            .iter()
            .map(|f| Self::new(base, f))
            .collect::<Result<_>>()?;
        if let Some((first, rest)) = all.split_first() {
            for (other, ck) in rest.iter().zip(&finetuned[1..]) {
                let same = first.pairs.len() == other.pairs.len()
                    && first.pairs.iter().all(|a| {
                        other
                            .get(&a.finetuned.name)
                            .is_some_and(|b| a.finetuned.shape == b.finetuned.shape)
                    });
                if !same {
                    bail!(
                        "{} and {} hold different tensors (names or shapes); merges need fine-tunes of one architecture",
                        finetuned[0].dir.display(),
                        ck.dir.display()
                    );
                }
            }
        }
        Ok(all)
    }
}
