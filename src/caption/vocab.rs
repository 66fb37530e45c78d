//! The caption lab's word vocabulary: every word a description or reference caption can use,
//! plus padding, begin and end. Closed by construction, so encoding an unknown word is an
//! error that names it.

use std::sync::OnceLock;

use anyhow::{bail, Result};

use super::scenes::{BACKGROUNDS, COLOURS, COUNTS, SHAPES, TEXTURES};

pub const PAD: u32 = 0;
pub const BOS: u32 = 1;
pub const EOS: u32 = 2;

const GLUE: [&str; 24] = [
    "a",
    "and",
    "on",
    "at",
    "in",
    "the",
    "background",
    "large",
    "small",
    "top",
    "middle",
    "bottom",
    "left",
    "centre",
    "right",
    "picture",
    "of",
    "there",
    "is",
    "next",
    "to",
    "shapes",
    "with",
    "some",
];
const MORE: [&str; 4] = ["stripes", "dots", "them", "other"];

/// Words by id: `<pad>`, `<s>`, `</s>`, then the vocabulary.
pub fn words() -> &'static [String] {
    static WORDS: OnceLock<Vec<String>> = OnceLock::new();
    WORDS.get_or_init(|| {
        let mut w: Vec<String> = ["<pad>", "<s>", "</s>"].map(String::from).to_vec();
        let all = GLUE
            .iter()
            .chain(MORE.iter())
            .chain(SHAPES.iter())
            .chain(COLOURS.iter().map(|(n, _)| n))
            .chain(TEXTURES.iter())
            .chain(BACKGROUNDS.iter().map(|(n, _)| n))
            .chain(COUNTS.iter());
        for word in all {
            if !w.iter().any(|x| x == word) {
                w.push(word.to_string());
            }
        }
        w
    })
}

pub fn size() -> usize {
    words().len()
}

/// `<s> words… </s>`.
pub fn encode(text: &str) -> Result<Vec<u32>> {
    let mut ids = vec![BOS];
    for word in text.split_whitespace() {
        match words().iter().position(|w| w == word) {
            Some(i) => ids.push(i as u32),
            None => bail!("the word {word:?} is not in the caption vocabulary"),
        }
    }
    ids.push(EOS);
    Ok(ids)
}

/// Words of `ids`, without specials, up to the first end.
pub fn decode(ids: &[u32]) -> String {
    ids.iter()
        .take_while(|&&i| i != EOS)
        .filter(|&&i| i > EOS)
        .filter_map(|&i| words().get(i as usize).map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::super::scenes::{scene, Domain, Split};
    use super::*;

    #[test]
    fn every_description_and_reference_encodes_and_round_trips() {
        for &domain in Domain::ALL {
            for i in 0..50 {
                let s = scene(domain, Split::Train, i);
                let mut rng = rand::SeedableRng::seed_from_u64(i);
                let texts = [s.description(), s.partial_description(&mut rng)];
                for t in texts.iter().chain(s.references(i).iter()) {
                    let ids = encode(t).unwrap();
                    assert_eq!(decode(&ids[1..]), *t);
                }
            }
        }
        assert!(encode("a zebra").unwrap_err().to_string().contains("zebra"));
    }
}
