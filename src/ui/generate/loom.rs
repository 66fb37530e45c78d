//! The conversation of the Generate lab as a small tree of branches (like Loom): clicking an
//! alternative token starts a new branch that shares everything before it.

use serde::{Deserialize, Serialize};

use crate::lm::generate::{Alternative, GeneratedToken};
use crate::lm::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Turn {
    pub role: Role,
    /// The user's text; for the assistant, the concatenated token texts.
    pub text: String,
    /// Assistant turns only: the generated tokens with their probabilities.
    pub tokens: Vec<GeneratedToken>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Branch {
    pub turns: Vec<Turn>,
    pub parent: Option<usize>,
    /// Where it split from its parent, e.g. "turn 2, token 7: ` Paris` → ` Lyon`".
    pub label: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Loom {
    pub branches: Vec<Branch>,
    pub active: usize,
}

impl Default for Loom {
    fn default() -> Self {
        Self {
            branches: vec![Branch {
                turns: Vec::new(),
                parent: None,
                label: "main".into(),
            }],
            active: 0,
        }
    }
}

impl Loom {
    pub fn active(&self) -> &Branch {
        &self.branches[self.active]
    }

    fn active_mut(&mut self) -> &mut Branch {
        &mut self.branches[self.active]
    }

    /// Adds a user message and an empty assistant turn to fill; returns that turn's index.
    pub fn push_user(&mut self, text: &str) -> usize {
        let turns = &mut self.active_mut().turns;
        turns.push(Turn {
            role: Role::User,
            text: text.to_string(),
            tokens: Vec::new(),
        });
        turns.push(Turn {
            role: Role::Assistant,
            text: String::new(),
            tokens: Vec::new(),
        });
        turns.len() - 1
    }

    /// Appends a generated token to assistant turn `turn` of the active branch.
    pub fn push_token(&mut self, turn: usize, token: GeneratedToken) {
        if let Some(t) = self.active_mut().turns.get_mut(turn) {
            t.text.push_str(&token.text);
            t.tokens.push(token);
        }
    }

    /// The messages before `turn`, for the chat template.
    pub fn messages_before(&self, turn: usize) -> Vec<Message> {
        self.active().turns[..turn.min(self.active().turns.len())]
            .iter()
            .map(|t| match t.role {
                Role::User => Message::new("user", t.text.clone()),
                Role::Assistant => Message::new("assistant", t.text.clone()),
            })
            .collect()
    }

    /// New active branch: the active one up to token `token` of `turn`, which becomes `alt`.
    /// Returns the assistant turn to continue.
    pub fn branch_at(&mut self, turn: usize, token: usize, alt: &Alternative) -> usize {
        let parent = self.active;
        let mut turns = self.active().turns[..=turn].to_vec();
        let t = &mut turns[turn];
        let old = t
            .tokens
            .get(token)
            .map(|x| x.text.clone())
            .unwrap_or_default();
        let alternatives = t
            .tokens
            .get(token)
            .map(|x| x.alternatives.clone())
            .unwrap_or_default();
        t.tokens.truncate(token);
        t.tokens.push(GeneratedToken {
            id: alt.id,
            text: alt.text.clone(),
            logprob: alt.logprob,
            alternatives,
        });
        t.text = t.tokens.iter().map(|x| x.text.as_str()).collect();
        self.branches.push(Branch {
            turns,
            parent: Some(parent),
            label: format!(
                "turn {}, token {}: {:?} -> {:?}",
                turn / 2 + 1,
                token + 1,
                old,
                alt.text
            ),
        });
        self.active = self.branches.len() - 1;
        turn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(id: u32, text: &str) -> GeneratedToken {
        GeneratedToken {
            id,
            text: text.into(),
            logprob: -0.5,
            alternatives: vec![],
        }
    }

    #[test]
    fn branching_keeps_the_prefix_and_the_parent() {
        let mut loom = Loom::default();
        let a = loom.push_user("capital of France?");
        for (i, t) in ["The", " capital", " is", " Paris"].iter().enumerate() {
            loom.push_token(a, tok(i as u32, t));
        }
        assert_eq!(loom.active().turns[a].text, "The capital is Paris");
        let alt = Alternative {
            id: 99,
            text: " Lyon".into(),
            logprob: -3.0,
        };
        let turn = loom.branch_at(a, 3, &alt);
        assert_eq!(turn, a);
        assert_eq!(loom.active, 1);
        assert_eq!(loom.active().turns[a].text, "The capital is Lyon");
        assert_eq!(loom.active().parent, Some(0));
        // The parent is untouched.
        assert_eq!(loom.branches[0].turns[a].text, "The capital is Paris");
        assert_eq!(
            loom.messages_before(a),
            vec![Message::new("user", "capital of France?")]
        );
    }
}
