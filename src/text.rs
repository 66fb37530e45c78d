//! Short forms of texts for titles and labels.

/// `text` cut to at most `max` characters, the cut marked with "…".
pub fn elide(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let kept: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{kept}…")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn elides_by_characters_not_bytes() {
        assert_eq!(super::elide("short", 5), "short");
        assert_eq!(super::elide("déjà vu, again", 6), "déjà …");
    }
}
