//! Streaming access to safetensors checkpoints: one file or shards with an index, memory-mapped,
//! read one tensor at a time and converted to f32 on the way in; written back shard by shard.
//! Also the delta statistics between two checkpoints (`stats`).

pub mod stats;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Where one tensor lives.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    shard: usize,
    /// Byte range inside the shard's map.
    start: usize,
    end: usize,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn nbytes(&self) -> usize {
        self.end - self.start
    }

    pub fn is_float(&self) -> bool {
        matches!(self.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16)
    }
}

struct Shard {
    path: PathBuf,
    map: Mmap,
}

/// An opened checkpoint: the folder (config and tokenizer files live there too) and its tensors
/// in file order.
pub struct Checkpoint {
    pub dir: PathBuf,
    shards: Vec<Shard>,
    tensors: Vec<TensorInfo>,
    by_name: BTreeMap<String, usize>,
}

impl Checkpoint {
    /// Opens a folder with `model.safetensors` or `model.safetensors.index.json`, or one
    /// `.safetensors` file.
    pub fn open(path: &Path) -> Result<Self> {
        let (dir, files) = if path.is_file() {
            let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            (dir, vec![path.to_path_buf()])
        } else if path.join(INDEX_FILE).is_file() {
            (path.to_path_buf(), shard_files(&path.join(INDEX_FILE))?)
        } else if path.join(SINGLE_FILE).is_file() {
            (path.to_path_buf(), vec![path.join(SINGLE_FILE)])
        } else if path.is_dir() {
            bail!(
                "{}: no {SINGLE_FILE} or {INDEX_FILE} in this folder",
                path.display()
            )
        } else {
            bail!("{}: no such file or folder", path.display())
        };
        let mut ck = Self {
            dir,
            shards: Vec::new(),
            tensors: Vec::new(),
            by_name: BTreeMap::new(),
        };
        for file in files {
            ck.add_shard(file)?;
        }
        ensure!(
            !ck.tensors.is_empty(),
            "{}: holds no tensors",
            path.display()
        );
        Ok(ck)
    }

    fn add_shard(&mut self, path: PathBuf) -> Result<()> {
        let file = File::open(&path).with_context(|| format!("{}: cannot open", path.display()))?;
        // SAFETY: the map is read-only; a checkpoint rewritten under us gives wrong numbers, not UB
        // in our code (the same contract as every mmap-based safetensors reader).
        let map = unsafe { Mmap::map(&file) }
            .with_context(|| format!("{}: cannot map", path.display()))?;
        let (header_len, meta) = SafeTensors::read_metadata(&map)
            .map_err(|e| anyhow::anyhow!("{}: not a safetensors file ({e})", path.display()))?;
        let data_start = 8 + header_len;
        let shard = self.shards.len();
        let mut infos: Vec<TensorInfo> = meta
            .tensors()
            .into_iter()
            .map(|(name, t)| TensorInfo {
                name,
                dtype: t.dtype,
                shape: t.shape.clone(),
                shard,
                start: data_start + t.data_offsets.0,
                end: data_start + t.data_offsets.1,
            })
            .collect();
        infos.sort_by_key(|t| t.start);
        for t in infos {
            ensure!(
                !self.by_name.contains_key(&t.name),
                "{}: tensor {} appears in two shards",
                path.display(),
                t.name
            );
            self.by_name.insert(t.name.clone(), self.tensors.len());
            self.tensors.push(t);
        }
        self.shards.push(Shard { path, map });
        Ok(())
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    pub fn total_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.nbytes() as u64).sum()
    }

    pub fn file_of(&self, t: &TensorInfo) -> &Path {
        &self.shards[t.shard].path
    }

    pub fn raw(&self, t: &TensorInfo) -> &[u8] {
        &self.shards[t.shard].map[t.start..t.end]
    }

    /// The tensor's values as f32 (f16 and bf16 widen exactly).
    pub fn read_f32(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        decode_f32(self.raw(t), t.dtype)
            .with_context(|| format!("{}: tensor {}", self.file_of(t).display(), t.name))
    }

    /// Lets the kernel drop the pages of a tensor we are done with, so resident memory stays
    /// near the working set instead of growing to the model size.
    pub fn release(&self, t: &TensorInfo) {
        let map = &self.shards[t.shard].map;
        // SAFETY: the map is private and read-only; dropped pages are re-read from the file if
        // touched again, and no slice into this range outlives this call's callers.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, t.start, t.nbytes())
        };
    }

    /// Files other than the weights (config, tokenizer, generation config, ...).
    pub fn side_files(&self) -> Result<Vec<PathBuf>> {
        let weights: Vec<&Path> = self.shards.iter().map(|s| s.path.as_path()).collect();
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)
            .with_context(|| format!("{}: cannot list", self.dir.display()))?
        {
            let p = e?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let is_weights = weights.contains(&p.as_path())
                || name == INDEX_FILE
                || name.ends_with(".safetensors");
            if p.is_file() && !is_weights && !name.starts_with('.') {
                out.push(p);
            }
        }
        out.sort();
        Ok(out)
    }
}

fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index)
        .with_context(|| format!("{}: cannot read", index.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", index.display()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .with_context(|| format!("{}: no \"weight_map\" object", index.display()))?;
    let mut files: Vec<String> = Vec::new();
    for (name, file) in map {
        let file = file
            .as_str()
            .with_context(|| format!("{}: shard of {name} is not a string", index.display()))?;
        ensure!(
            !file.contains('/') && !file.contains('\\'),
            "{}: shard name {file:?} leaves the folder",
            index.display()
        );
        if !files.iter().any(|f| f == file) {
            files.push(file.to_string());
        }
    }
    files.sort();
    let dir = index.parent().unwrap_or(Path::new("."));
    let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
    for p in &paths {
        ensure!(
            p.is_file(),
            "{}: lists shard {} which is missing",
            index.display(),
            p.display()
        );
    }
    Ok(paths)
}

pub fn decode_f32(bytes: &[u8], dtype: Dtype) -> Result<Vec<f32>> {
    let pairs = || {
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
    };
    Ok(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => pairs().map(|b| f16::from_bits(b).to_f32()).collect(),
        Dtype::BF16 => pairs().map(|b| bf16::from_bits(b).to_f32()).collect(),
        other => bail!("dtype {other:?} is not a float type this tool prunes (f32, f16, bf16)"),
    })
}

/// Rounds f32 values to `dtype` (round to nearest even, as torch does).
pub fn encode(values: &[f32], dtype: Dtype) -> Result<Vec<u8>> {
    Ok(match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_bits().to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_bits().to_le_bytes())
            .collect(),
        other => bail!("cannot write dtype {other:?}"),
    })
}

pub fn dtype_size(dtype: Dtype) -> usize {
    dtype.bitsize() / 8
}

/// One output tensor's header entry.
#[derive(Debug, Clone)]
pub struct OutTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

impl OutTensor {
    pub fn nbytes(&self) -> usize {
        self.shape.iter().product::<usize>() * dtype_size(self.dtype)
    }
}

/// Writes a checkpoint whose tensor list is known up front: headers are computed first, then
/// tensor bytes are streamed in order, so nothing but the tensor being written is held.
/// Shards go to `dir` (a staging folder the caller renames into place when everything is done).
pub struct CheckpointWriter {
    dir: PathBuf,
    plan: Vec<(String, Vec<OutTensor>)>,
    shard: usize,
    in_shard: usize,
    file: Option<BufWriter<File>>,
    written: u64,
}

impl CheckpointWriter {
    pub fn new(dir: &Path, tensors: Vec<OutTensor>, max_shard_bytes: u64) -> Result<Self> {
        let mut groups: Vec<Vec<OutTensor>> = vec![Vec::new()];
        let mut size = 0u64;
        for t in tensors {
            let n = t.nbytes() as u64;
            if size > 0 && size + n > max_shard_bytes {
                groups.push(Vec::new());
                size = 0;
            }
            size += n;
            groups.last_mut().expect("one group").push(t);
        }
        let count = groups.len();
        let plan = groups
            .into_iter()
            .enumerate()
            .map(|(i, g)| {
                let name = if count == 1 {
                    SINGLE_FILE.to_string()
                } else {
                    format!("model-{:05}-of-{count:05}.safetensors", i + 1)
                };
                (name, g)
            })
            .collect();
        let w = Self {
            dir: dir.to_path_buf(),
            plan,
            shard: 0,
            in_shard: 0,
            file: None,
            written: 0,
        };
        w.write_index()?;
        Ok(w)
    }

    fn write_index(&self) -> Result<()> {
        if self.plan.len() < 2 {
            return Ok(());
        }
        let mut map = serde_json::Map::new();
        let mut total = 0u64;
        for (file, group) in &self.plan {
            for t in group {
                map.insert(t.name.clone(), file.clone().into());
                total += t.nbytes() as u64;
            }
        }
        let json = serde_json::json!({"metadata": {"total_size": total}, "weight_map": map});
        let path = self.dir.join(INDEX_FILE);
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("{}: cannot write", path.display()))
    }

    /// The next tensor expected, in plan order.
    pub fn next_name(&self) -> Option<&str> {
        self.plan
            .get(self.shard)
            .and_then(|(_, g)| g.get(self.in_shard))
            .map(|t| t.name.as_str())
    }

    /// Appends the bytes of the next tensor of the plan.
    pub fn write(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let (file_name, group) = &self.plan[self.shard];
        let t = &group[self.in_shard];
        ensure!(
            t.name == name,
            "writer expected tensor {} but got {name}",
            t.name
        );
        ensure!(
            bytes.len() == t.nbytes(),
            "tensor {name}: {} bytes for shape {:?} {:?}",
            bytes.len(),
            t.shape,
            t.dtype
        );
        let path = self.dir.join(file_name);
        if self.file.is_none() {
            let f = File::create(&path)
                .with_context(|| format!("{}: cannot create", path.display()))?;
            let mut f = BufWriter::with_capacity(1 << 20, f);
            f.write_all(&header(group)?)?;
            self.file = Some(f);
        }
        let f = self.file.as_mut().expect("opened above");
        f.write_all(bytes)
            .with_context(|| format!("{}: write failed", path.display()))?;
        self.written += bytes.len() as u64;
        self.in_shard += 1;
        if self.in_shard == group.len() {
            let mut f = self.file.take().expect("open shard");
            f.flush()
                .with_context(|| format!("{}: write failed", path.display()))?;
            self.shard += 1;
            self.in_shard = 0;
        }
        Ok(())
    }

    pub fn finish(self) -> Result<u64> {
        ensure!(
            self.next_name().is_none(),
            "checkpoint incomplete: tensor {} was never written",
            self.next_name().unwrap_or_default()
        );
        Ok(self.written)
    }
}

/// The safetensors header of one shard: JSON padded with spaces to a multiple of 8 bytes.
fn header(group: &[OutTensor]) -> Result<Vec<u8>> {
    let mut map = serde_json::Map::new();
    map.insert(
        "__metadata__".into(),
        serde_json::json!({"format": "pt", "writer": "alignscope"}),
    );
    let mut offset = 0usize;
    for t in group {
        let n = t.nbytes();
        map.insert(
            t.name.clone(),
            serde_json::json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, offset + n]}),
        );
        offset += n;
    }
    let mut json = serde_json::to_vec(&map)?;
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend(json);
    Ok(out)
}
