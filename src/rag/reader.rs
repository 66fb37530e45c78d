//! The reader: SmolLM2 answers a question with the top-k passages in its prompt (one user turn
//! in the model's chat template), greedily, all questions of a set batched together.

use std::sync::Arc;

use anyhow::Result;

use crate::lm::chat::Message;
use crate::lm::LanguageModel;

/// Tokens generated per answer: answers are a few words.
pub const MAX_NEW: usize = 16;

/// The user turn: the instruction, the passages (if any), the question.
pub fn user_turn(question: &str, passages: &[&str]) -> String {
    if passages.is_empty() {
        return format!(
            "Answer the question. Reply with the answer only, in a few words.\n\n\
             Question: {question}"
        );
    }
    let context: String = passages
        .iter()
        .enumerate()
        .map(|(i, p)| format!("Passage {}: {p}\n", i + 1))
        .collect();
    format!(
        "Answer the question using the passages. Reply with the answer only, in a few words.\n\n\
         {context}\nQuestion: {question}"
    )
}

/// A question and the passages to read with it.
pub struct Reading<'a> {
    pub question: &'a str,
    pub passages: Vec<&'a str>,
}

/// The reader's replies, one per reading.
pub fn read(model: &Arc<LanguageModel>, readings: &[Reading]) -> Result<Vec<String>> {
    let prompts = readings
        .iter()
        .map(|r| model.chat_prompt(&[Message::new("user", user_turn(r.question, &r.passages))]))
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    crate::eval::decoder::greedy_answers(model, None, &refs, MAX_NEW)
}
