//! Writing files and folders so that readers see the old version or the new one, never half:
//! everything goes to a temporary sibling first and is renamed into place when complete.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};

/// Copies those of `names` that exist in folder `from` into folder `to`.
pub fn copy_present(from: &Path, to: &Path, names: &[&str]) -> Result<()> {
    for name in names {
        let src = from.join(name);
        if src.exists() {
            std::fs::copy(&src, to.join(name))
                .with_context(|| format!("{}: cannot copy", src.display()))?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` via `<path>.tmp` and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = StagedFile::create(path)?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", file.tmp.display()))?;
    file.commit()
}

/// Reads a JSON file as `T`; the error names the file and says it is not `what`.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not {what}", path.display()))
}

/// Every `*.json` file of `dir` read as `T`, in file-name order, and the errors of those that
/// could not be read (a missing folder gives neither).
pub fn read_json_folder<T: serde::de::DeserializeOwned>(
    dir: &Path,
    what: &str,
) -> (Vec<T>, Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (Vec::new(), Vec::new());
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for p in paths {
        match read_json(&p, what) {
            Ok(r) => ok.push(r),
            Err(e) => bad.push(format!("{e:#}")),
        }
    }
    (ok, bad)
}

/// Writes `value` as pretty JSON, atomically (a run's record: its request and outcome).
/// RGB bytes (`width × height × 3`, row-major) written as a PNG, atomically.
pub fn write_png(path: &Path, width: usize, height: usize, rgb: Vec<u8>) -> Result<()> {
    let image = image::RgbImage::from_raw(width as u32, height as u32, rgb).with_context(|| {
        format!(
            "{}: wrong buffer size for a {width}×{height} image",
            path.display()
        )
    })?;
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .with_context(|| format!("{}: cannot encode the PNG", path.display()))?;
    write_atomic(path, &bytes)
}

pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    write_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())
}

/// A file written through a temporary sibling: [`StagedFile::commit`] renames it into place;
/// dropped without a commit, the temporary file is removed and `path` is left as it was.
pub struct StagedFile {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
}

impl StagedFile {
    pub fn create(path: &Path) -> Result<Self> {
        let mut name = path
            .file_name()
            .with_context(|| format!("{}: not a file name", path.display()))?
            .to_os_string();
        name.push(".tmp");
        let tmp = path.with_file_name(name);
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            out: Some(std::io::BufWriter::new(file)),
        })
    }

    /// Flushes and renames the temporary file to its final name.
    pub fn commit(mut self) -> Result<()> {
        if let Some(out) = self.out.as_mut() {
            out.flush()
                .with_context(|| format!("cannot write {}", self.tmp.display()))?;
        }
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("cannot rename to {}", self.path.display()))?;
        // Renamed: nothing left for `drop` to remove.
        self.out = None;
        Ok(())
    }
}

impl Write for StagedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.out.as_mut() {
            Some(out) => out.write(buf),
            None => Err(std::io::Error::other("the file was already committed")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.as_mut().map_or(Ok(()), |out| out.flush())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes a folder through a hidden sibling (`.NAME.partial`) that `fill` populates, then
/// renames it into place, so a failed or cancelled write leaves the previous folder whole.
pub fn write_folder(out: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = out
        .file_name()
        .with_context(|| format!("{}: not a folder name", out.display()))?
        .to_string_lossy();
    let tmp = out.with_file_name(format!(".{name}.partial"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // The old folder moves aside until the new one is in place, so an interruption between
    // the two renames still leaves a whole folder on disk.
    let old = out.with_file_name(format!(".{name}.old"));
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    let replacing = out.exists();
    if replacing {
        std::fs::rename(out, &old).with_context(|| format!("{}: cannot replace", out.display()))?;
    }
    std::fs::rename(&tmp, out).with_context(|| format!("{}: cannot write", out.display()))?;
    if replacing {
        std::fs::remove_dir_all(&old)
            .with_context(|| format!("{}: cannot remove", old.display()))?;
    }
    Ok(())
}

/// A scratch folder under the system's temporary directory, removed when dropped.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new() -> Result<Self> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "alignscope-scratch-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        Ok(Self(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_file_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        std::fs::write(&path, "old").unwrap();
        let mut f = StagedFile::create(&path).unwrap();
        f.write_all(b"new").unwrap();
        drop(f);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let mut f = StagedFile::create(&path).unwrap();
        f.write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        write_atomic(&path, b"again").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "again");
    }

    #[test]
    fn failed_folder_write_keeps_the_old_folder() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("model");
        write_folder(&out, |d| Ok(std::fs::write(d.join("a"), "1")?)).unwrap();
        let failed = write_folder(&out, |d| {
            std::fs::write(d.join("a"), "2")?;
            anyhow::bail!("stopped")
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(out.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
