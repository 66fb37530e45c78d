//! A binary mask γ over the eligible tensors of a model: one bit per parameter, saved as
//! safetensors with one bit-packed `U8` tensor per masked tensor (the tensor's own shape in the
//! file's metadata), and compared with other masks by overlap `|γi ∩ γj| / |γj|`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::Serialize;

/// Metadata key holding the shape of tensor `name`.
fn shape_key(name: &str) -> String {
    format!("shape:{name}")
}

/// The mask of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskTensor {
    pub name: String,
    pub shape: Vec<usize>,
    /// Bit `i % 8` of byte `i / 8` is parameter `i` (row-major).
    bits: Vec<u8>,
}

impl MaskTensor {
    pub fn zeros(name: &str, shape: &[usize]) -> Self {
        let n: usize = shape.iter().product();
        Self {
            name: name.to_string(),
            shape: shape.to_vec(),
            bits: vec![0; n.div_ceil(8)],
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn get(&self, i: usize) -> bool {
        self.bits[i / 8] & (1 << (i % 8)) != 0
    }

    pub fn set(&mut self, i: usize, on: bool) {
        if on {
            self.bits[i / 8] |= 1 << (i % 8);
        } else {
            self.bits[i / 8] &= !(1 << (i % 8));
        }
    }

    pub fn count(&self) -> usize {
        self.bits.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// 0/1 per parameter.
    pub fn to_f32(&self) -> Vec<f32> {
        (0..self.numel())
            .map(|i| f32::from(u8::from(self.get(i))))
            .collect()
    }
}

/// Where in a model a masked parameter sits, for the density heatmap.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Density {
    pub layer: String,
    pub module: String,
    pub kept: usize,
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mask {
    pub tensors: Vec<MaskTensor>,
    /// Free-form provenance written into the file (model names, sparsity, method).
    pub meta: BTreeMap<String, String>,
}

impl Mask {
    pub fn count(&self) -> usize {
        self.tensors.iter().map(MaskTensor::count).sum()
    }

    pub fn numel(&self) -> usize {
        self.tensors.iter().map(MaskTensor::numel).sum()
    }

    /// Kept fraction of the masked parameters.
    pub fn density(&self) -> f64 {
        self.count() as f64 / self.numel().max(1) as f64
    }

    /// `|self ∩ other| / |other|`, over tensors of the same name and shape; an error when the
    /// two masks do not cover the same tensors.
    pub fn overlap(&self, other: &Mask) -> Result<f64> {
        self.check_same_tensors(other)?;
        let common: usize = self
            .tensors
            .iter()
            .zip(&other.tensors)
            .map(|(a, b)| {
                a.bits
                    .iter()
                    .zip(&b.bits)
                    .map(|(x, y)| (x & y).count_ones() as usize)
                    .sum::<usize>()
            })
            .sum();
        Ok(common as f64 / other.count().max(1) as f64)
    }

    fn check_same_tensors(&self, other: &Mask) -> Result<()> {
        ensure!(
            self.tensors.len() == other.tensors.len(),
            "the masks cover different tensors ({} and {})",
            self.tensors.len(),
            other.tensors.len()
        );
        for (a, b) in self.tensors.iter().zip(&other.tensors) {
            ensure!(
                a.name == b.name && a.shape == b.shape,
                "the masks differ at {} {:?} / {} {:?}: they are over different models",
                a.name,
                a.shape,
                b.name,
                b.shape
            );
        }
        Ok(())
    }

    /// An error naming the first tensor whose name or shape differs from `shapes` (a mask
    /// learned on another model).
    pub fn check_shapes(&self, shapes: &[(String, Vec<usize>)], source: &Path) -> Result<()> {
        let want: HashMap<&str, &Vec<usize>> =
            shapes.iter().map(|(n, s)| (n.as_str(), s)).collect();
        ensure!(
            self.tensors.len() == shapes.len(),
            "{}: the mask covers {} tensors, this model has {} eligible ones: it was made for \
             another model",
            source.display(),
            self.tensors.len(),
            shapes.len()
        );
        for t in &self.tensors {
            match want.get(t.name.as_str()) {
                None => bail!(
                    "{}: the mask has {} that this model lacks: it was made for another model",
                    source.display(),
                    t.name
                ),
                Some(s) if **s != t.shape => bail!(
                    "{}: {} is {:?} in the mask but {:?} in this model",
                    source.display(),
                    t.name,
                    t.shape,
                    s
                ),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Kept and total parameters per (layer, module), with `place(name)` naming both.
    pub fn densities(&self, place: impl Fn(&str) -> (String, String)) -> Vec<Density> {
        let mut out: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
        for t in &self.tensors {
            let e = out.entry(place(&t.name)).or_default();
            e.0 += t.count();
            e.1 += t.numel();
        }
        out.into_iter()
            .map(|((layer, module), (kept, total))| Density {
                layer,
                module,
                kept,
                total,
            })
            .collect()
    }

    /// Writes the mask atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut meta: HashMap<String, String> = self.meta.clone().into_iter().collect();
        for t in &self.tensors {
            meta.insert(shape_key(&t.name), serde_json::to_string(&t.shape)?);
        }
        let views: Vec<(String, TensorView)> = self
            .tensors
            .iter()
            .map(|t| {
                Ok((
                    t.name.clone(),
                    TensorView::new(Dtype::U8, vec![t.bits.len()], &t.bits)?,
                ))
            })
            .collect::<Result<_>>()?;
        let bytes = safetensors::serialize(views, Some(meta))?;
        crate::fs::write_atomic(path, &bytes)
    }

    /// Reads a mask written by [`Mask::save`]; errors name the file and what is wrong.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .with_context(|| format!("{}: not a safetensors file", path.display()))?;
        let st = SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{}: not a safetensors file", path.display()))?;
        let mut meta: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
        names.sort();
        ensure!(
            !names.is_empty(),
            "{}: the mask holds no tensors",
            path.display()
        );
        let mut tensors = Vec::with_capacity(names.len());
        for name in names {
            let view = st.tensor(&name)?;
            let shape: Vec<usize> = meta
                .remove(&shape_key(&name))
                .and_then(|s| serde_json::from_str(&s).ok())
                .with_context(|| {
                    format!(
                        "{}: no shape for {name}: not a mask written by alignscope",
                        path.display()
                    )
                })?;
            let n: usize = shape.iter().product();
            ensure!(
                view.dtype() == Dtype::U8 && view.data().len() == n.div_ceil(8),
                "{}: {name} holds {} {:?} values, a bit-packed mask of {shape:?} needs {} bytes",
                path.display(),
                view.data().len(),
                view.dtype(),
                n.div_ceil(8)
            );
            tensors.push(MaskTensor {
                name,
                shape,
                bits: view.data().to_vec(),
            });
        }
        Ok(Self { tensors, meta })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(bits: &[&[usize]]) -> Mask {
        let tensors = bits
            .iter()
            .enumerate()
            .map(|(i, on)| {
                let mut t = MaskTensor::zeros(&format!("t{i}"), &[3, 4]);
                for &j in *on {
                    t.set(j, true);
                }
                t
            })
            .collect();
        Mask {
            tensors,
            meta: BTreeMap::new(),
        }
    }

    #[test]
    fn overlap_counts_common_bits_over_the_second_mask() {
        let a = mask(&[&[0, 1, 2], &[11]]);
        let b = mask(&[&[1, 2], &[10, 11]]);
        assert_eq!(a.count(), 4);
        assert_eq!(a.numel(), 24);
        // Common: 1, 2 and 11 → 3 of b's 4.
        assert!((a.overlap(&b).unwrap() - 0.75).abs() < 1e-12);
        assert!((b.overlap(&a).unwrap() - 0.75).abs() < 1e-12);
        let other = Mask {
            tensors: vec![MaskTensor::zeros("t0", &[12])],
            meta: BTreeMap::new(),
        };
        assert!(a.overlap(&other).is_err());
    }

    #[test]
    fn a_saved_mask_loads_back_and_rejects_other_models() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mask.safetensors");
        let mut a = mask(&[&[0, 5, 9], &[3]]);
        a.meta.insert("sparsity".into(), "0.1".into());
        a.save(&path).unwrap();
        let b = Mask::load(&path).unwrap();
        assert_eq!(a, b);
        let shapes = vec![
            ("t0".to_string(), vec![3, 4]),
            ("t1".to_string(), vec![4, 3]),
        ];
        let err = b.check_shapes(&shapes, &path).unwrap_err().to_string();
        assert!(err.contains("t1 is [3, 4] in the mask but [4, 3]"), "{err}");
        std::fs::write(&path, b"not a mask").unwrap();
        let err = format!("{:#}", Mask::load(&path).unwrap_err());
        assert!(err.contains("not a safetensors file"), "{err}");
    }
}
