//! Where the shipped files live: `ALIGNSCOPE_ASSETS`, else `assets/` in the working directory,
//! else the `assets/` folder of the source tree the binary was built from.

use std::path::PathBuf;

pub fn dir() -> PathBuf {
    if let Ok(dir) = std::env::var("ALIGNSCOPE_ASSETS") {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("assets");
    if local.join("models").is_dir() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

/// The default language model: SmolLM2-135M-Instruct, Q4_1 GGUF.
pub fn default_model() -> PathBuf {
    dir().join("models").join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The sentence-embedding model: all-MiniLM-L6-v2 (safetensors folder).
pub fn embedding_model() -> PathBuf {
    dir().join("models").join("all-MiniLM-L6-v2")
}
