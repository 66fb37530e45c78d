//! A value read from a folder (a results table), kept until the folder changes or the page
//! asks to read it again.

use std::path::{Path, PathBuf};

pub struct FolderCache<T> {
    read: fn(&Path) -> T,
    held: Option<(PathBuf, T)>,
}

impl<T> FolderCache<T> {
    pub fn new(read: fn(&Path) -> T) -> Self {
        Self { read, held: None }
    }

    /// The value read from `dir` (read now if `dir` is not the folder held).
    pub fn get(&mut self, dir: PathBuf) -> &T {
        if self.held.as_ref().is_some_and(|(d, _)| *d != dir) {
            self.held = None;
        }
        let read = self.read;
        &self
            .held
            .get_or_insert_with(|| {
                let value = read(&dir);
                (dir, value)
            })
            .1
    }

    /// Reads again on the next [`get`](Self::get).
    pub fn clear(&mut self) {
        self.held = None;
    }
}
