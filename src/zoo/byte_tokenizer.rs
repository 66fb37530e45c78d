//! The decoder family's tokenizer: one token per byte (GPT-2's byte-to-character table, a BPE
//! model with no merges) plus `<s>`, `</s>` and `<pad>`, written as a standard tokenizer.json so
//! that any tool reads it. Token id = byte value, so training encodes text without a tokenizer.

use std::path::Path;

use anyhow::Result;

pub const BOS: u32 = 256;
pub const EOS: u32 = 257;
pub const PAD: u32 = 258;
pub const VOCAB_SIZE: usize = 259;

pub fn encode(text: &str) -> Vec<u32> {
    text.bytes().map(u32::from).collect()
}

/// GPT-2's reversible map from bytes to printable characters.
fn byte_chars() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut extra = 0;
    (0..256u32)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).expect("latin-1")
            } else {
                extra += 1;
                char::from_u32(255 + extra).expect("latin extended")
            }
        })
        .collect()
}

pub fn write(dir: &Path, max_length: usize) -> Result<()> {
    let vocab: serde_json::Map<String, serde_json::Value> = byte_chars()
        .into_iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), i.into()))
        .collect();
    let added: Vec<serde_json::Value> = [(BOS, "<s>"), (EOS, "</s>"), (PAD, "<pad>")]
        .iter()
        .map(|(id, content)| {
            serde_json::json!({"id": id, "content": content, "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false,
        "trim_offsets": true, "use_regex": false});
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": null,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": []},
    });
    let config = serde_json::json!({
        "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "add_bos_token": true,
        "model_max_length": max_length, "tokenizer_class": "PreTrainedTokenizerFast",
    });
    std::fs::write(
        dir.join("tokenizer.json"),
        serde_json::to_string(&tokenizer)?,
    )?;
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_json_encodes_one_token_per_byte() -> Result<()> {
        let dir = tempfile::tempdir()?;
        write(dir.path(), 128)?;
        let tok = tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json"))
            .map_err(anyhow::Error::msg)?;
        let text = "add: 37+45 = 82\nÉire";
        let ids = tok.encode(text, false).map_err(anyhow::Error::msg)?;
        assert_eq!(ids.get_ids(), encode(text).as_slice());
        let back = tok
            .decode(ids.get_ids(), false)
            .map_err(anyhow::Error::msg)?;
        assert_eq!(back, text);
        Ok(())
    }
}
