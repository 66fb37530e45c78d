//! Text ↔ token ids, built from GGUF metadata (gpt2-style byte-level BPE, or SentencePiece
//! vocabularies with scores) or read from a Hugging Face tokenizer.json.

use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, NormalizerWrapper, SplitDelimiterBehavior, Tokenizer};

use super::error::{LmError, Result};
use super::gguf::GgufFile;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_CONTROL: u32 = 3;
const TOKEN_TYPE_USER_DEFINED: u32 = 4;

const REGEX_LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const REGEX_QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

#[derive(Clone)]
pub struct TextTokenizer {
    /// Special tokens written in the text (`<|im_start|>`) become their ids.
    with_special: Tokenizer,
    /// Special-token strings are ordinary text.
    plain: Tokenizer,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// Ids that end a turn: eos plus end-of-turn markers such as `<|im_end|>` or `<end_of_turn>`.
    pub stop_ids: Vec<u32>,
    pub add_bos: bool,
}

impl TextTokenizer {
    fn from_tokenizer(
        tokenizer: Tokenizer,
        bos: Option<u32>,
        eos: Option<u32>,
        add_bos: bool,
    ) -> Self {
        let mut plain = tokenizer.clone();
        plain.set_encode_special_tokens(true);
        let mut stop_ids: Vec<u32> = eos.into_iter().collect();
        for marker in [
            "<|im_end|>",
            "<end_of_turn>",
            "<|eot_id|>",
            "<|endoftext|>",
            "</s>",
        ] {
            if let Some(id) = tokenizer.token_to_id(marker) {
                if !stop_ids.contains(&id) {
                    stop_ids.push(id);
                }
            }
        }
        Self {
            with_special: tokenizer,
            plain,
            bos,
            eos,
            stop_ids,
            add_bos,
        }
    }

    /// The tokenizer as a Hugging Face `tokenizer.json` (special tokens included).
    pub fn to_json(&self) -> Result<String> {
        self.with_special
            .to_string(true)
            .map_err(|e| LmError::Tokenizer(e.to_string()))
    }

    pub fn vocab_size(&self) -> usize {
        self.with_special.get_vocab_size(true)
    }

    /// Token ids of `text`; `parse_special` turns written special tokens into their ids.
    /// Never adds BOS (see [`Self::encode_prompt`]).
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let t = if parse_special {
            &self.with_special
        } else {
            &self.plain
        };
        let enc = t
            .encode(text, false)
            .map_err(|e| LmError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Ids for a whole prompt: special tokens parsed, BOS prepended when the model wants one.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode(text, true)?;
        if let (true, Some(bos)) = (self.add_bos, self.bos) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.with_special
            .decode(ids, skip_special)
            .map_err(|e| LmError::Tokenizer(e.to_string()))
    }

    /// The vocabulary entry of one id, as stored (`Ġthe`, `▁the`, `<|im_end|>`).
    pub fn token_str(&self, id: u32) -> String {
        self.with_special.id_to_token(id).unwrap_or_default()
    }

    /// Looks up a piece of text that is a single token, e.g. an option letter.
    pub fn single_token(&self, text: &str) -> Option<u32> {
        match self.encode(text, false).ok()?.as_slice() {
            [id] => Some(*id),
            _ => None,
        }
    }

    pub fn is_stop(&self, id: u32) -> bool {
        self.stop_ids.contains(&id)
    }

    pub fn from_json_file(
        path: &Path,
        bos: Option<&str>,
        eos: Option<&str>,
        add_bos: bool,
    ) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| LmError::file(path, format!("cannot read tokenizer: {e}")))?;
        let bos = bos.and_then(|t| tokenizer.token_to_id(t));
        let eos = eos.and_then(|t| tokenizer.token_to_id(t));
        Ok(Self::from_tokenizer(tokenizer, bos, eos, add_bos))
    }

    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let path = gguf.path();
        let kind = gguf.string("tokenizer.ggml.model")?;
        let tokens = string_array(gguf, "tokenizer.ggml.tokens")?;
        let types = gguf
            .value("tokenizer.ggml.token_type")
            .ok()
            .map(|v| u32_array(gguf, v, "tokenizer.ggml.token_type"))
            .transpose()?
            .unwrap_or_default();
        let bos = gguf.u32("tokenizer.ggml.bos_token_id").ok();
        let eos = gguf.u32("tokenizer.ggml.eos_token_id").ok();
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let (mut tokenizer, add_bos_default) = match kind.as_str() {
            "gpt2" => {
                let merges = string_array(gguf, "tokenizer.ggml.merges")?;
                let merges = merges
                    .iter()
                    .map(|m| {
                        m.split_once(' ')
                            .map(|(a, b)| (a.to_string(), b.to_string()))
                            .ok_or_else(|| LmError::file(path, format!("bad merge `{m}`")))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let bpe = BPE::builder()
                    .vocab_and_merges(vocab, merges)
                    .ignore_merges(
                        gguf.value("tokenizer.ggml.ignore_merges")
                            .is_ok_and(|v| v.to_bool().unwrap_or(false)),
                    )
                    .build()
                    .map_err(|e| LmError::file(path, format!("tokenizer: {e}")))?;
                let mut t = Tokenizer::new(bpe);
                let pre = gguf
                    .string("tokenizer.ggml.pre")
                    .unwrap_or_else(|_| "default".into());
                byte_level_pipeline(&mut t, &pre).map_err(|e| LmError::file(path, e))?;
                (t, false)
            }
            "llama" => {
                let scores = match gguf.value("tokenizer.ggml.scores")? {
                    Value::Array(a) => a
                        .iter()
                        .map(|v| v.to_f32().unwrap_or(0.0))
                        .collect::<Vec<_>>(),
                    _ => {
                        return Err(LmError::file(
                            path,
                            "`tokenizer.ggml.scores` is not an array",
                        ))
                    }
                };
                let add_prefix = gguf
                    .value("tokenizer.ggml.add_space_prefix")
                    .map(|v| v.to_bool().unwrap_or(true))
                    .unwrap_or(true);
                let t = sentencepiece_bpe(&tokens, &scores, &types, add_prefix)
                    .map_err(|e| LmError::file(path, e))?;
                (t, true)
            }
            other => {
                return Err(LmError::file(
                    path,
                    format!("tokenizer model `{other}` is not supported (supported: gpt2, llama)"),
                ))
            }
        };
        let specials: Vec<AddedToken> = types
            .iter()
            .enumerate()
            .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
            .map(|(i, _)| AddedToken::from(tokens[i].clone(), true))
            .collect();
        tokenizer
            .add_special_tokens(specials)
            .map_err(|e| LmError::file(path, format!("special tokens: {e}")))?;
        let add_bos = gguf
            .value("tokenizer.ggml.add_bos_token")
            .map(|v| v.to_bool().unwrap_or(add_bos_default))
            .unwrap_or(add_bos_default);
        Ok(Self::from_tokenizer(tokenizer, bos, eos, add_bos))
    }
}

fn string_array(gguf: &GgufFile, key: &str) -> Result<Vec<String>> {
    match gguf.value(key)? {
        Value::Array(a) => a
            .iter()
            .map(|v| {
                v.to_string()
                    .cloned()
                    .map_err(|e| LmError::file(gguf.path(), format!("`{key}`: {e}")))
            })
            .collect(),
        _ => Err(LmError::file(
            gguf.path(),
            format!("`{key}` is not an array"),
        )),
    }
}

fn u32_array(gguf: &GgufFile, value: &Value, key: &str) -> Result<Vec<u32>> {
    match value {
        Value::Array(a) => a
            .iter()
            .map(|v| {
                v.to_i32()
                    .map(|x| x as u32)
                    .or_else(|_| v.to_u32())
                    .map_err(|e| LmError::file(gguf.path(), format!("`{key}`: {e}")))
            })
            .collect(),
        _ => Err(LmError::file(
            gguf.path(),
            format!("`{key}` is not an array"),
        )),
    }
}

/// Pre-tokenisation for gpt2-style vocabularies, following llama.cpp's `tokenizer.ggml.pre` types.
fn byte_level_pipeline(t: &mut Tokenizer, pre: &str) -> std::result::Result<(), String> {
    let regex_split = |re: &str| -> std::result::Result<Split, String> {
        Split::new(
            SplitPattern::Regex(re.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| e.to_string())
    };
    let bytes_only = ByteLevel::new(false, false, false);
    let pre_tokenizer = match pre {
        // SmolLM: every digit on its own, then the GPT-2 pattern.
        "smollm" => PreSequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, false, true).into(),
        ]),
        "llama-bpe" | "llama3" | "smaug-bpe" => {
            PreSequence::new(vec![regex_split(REGEX_LLAMA3)?.into(), bytes_only.into()])
        }
        "qwen2" => PreSequence::new(vec![regex_split(REGEX_QWEN2)?.into(), bytes_only.into()]),
        _ => PreSequence::new(vec![ByteLevel::new(false, false, true).into()]),
    };
    t.with_pre_tokenizer(Some(pre_tokenizer));
    t.with_decoder(Some(ByteLevelDecoder::new(false, false, false)));
    Ok(())
}

/// A SentencePiece vocabulary with scores as a BPE with byte fallback. Merges are every split of
/// a vocabulary piece into two pieces, ranked by the merged piece's score — the same rule
/// llama.cpp's SPM tokenizer applies and the Hugging Face converters use.
fn sentencepiece_bpe(
    tokens: &[String],
    scores: &[f32],
    types: &[u32],
    add_prefix: bool,
) -> std::result::Result<Tokenizer, String> {
    const TOKEN_TYPE_NORMAL: u32 = 1;
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let mut ranked = Vec::new();
    for (id, piece) in tokens.iter().enumerate() {
        if types.get(id).is_some_and(|&t| t != TOKEN_TYPE_NORMAL) {
            continue;
        }
        for (cut, _) in piece.char_indices().skip(1) {
            let (a, b) = piece.split_at(cut);
            if vocab.contains_key(a) && vocab.contains_key(b) {
                ranked.push((
                    scores.get(id).copied().unwrap_or(0.0),
                    id,
                    a.to_string(),
                    b.to_string(),
                ));
            }
        }
    }
    ranked.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    let merges = ranked.into_iter().map(|(_, _, a, b)| (a, b)).collect();
    let unk = tokens
        .iter()
        .position(|t| t == "<unk>")
        .map(|i| tokens[i].clone());
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    let mut t = Tokenizer::new(builder.build().map_err(|e| e.to_string())?);
    let replace = Replace::new(" ", "▁").map_err(|e| e.to_string())?;
    let normalizer: NormalizerWrapper = if add_prefix {
        tokenizers::normalizers::Sequence::new(vec![
            Prepend::new("▁".into()).into(),
            replace.into(),
        ])
        .into()
    } else {
        replace.into()
    };
    t.with_normalizer(Some(normalizer))
        .map_err(|e| e.to_string())?;
    let mut steps = vec![
        tokenizers::decoders::DecoderWrapper::from(
            tokenizers::normalizers::Replace::new("▁", " ").map_err(|e| e.to_string())?,
        ),
        ByteFallback::default().into(),
        Fuse::default().into(),
    ];
    if add_prefix {
        steps.push(Strip::new(' ', 1, 0).into());
    }
    t.with_decoder(Some(DecoderSequence::new(steps)));
    Ok(t)
}
