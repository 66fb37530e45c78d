//! Self-evaluation: the model judges a conversation with a few-shot prompt and two answer
//! options, in both orders (to cancel its bias for one letter).
//!
//! Reuse: the long few-shot part before `{{text}}` is run through the model once, and the
//! session after the last conversation judged is kept; each evaluation forks that, rewinds it
//! to what the new conversation shares with the last one (in a search: the request and the
//! answer so far) and feeds only the rest, then forks again and feeds the two option blocks.
//! Scores are cached per conversation text.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::lm::sampling::log_softmax;
use crate::lm::{LanguageModel, LmError, Session};

/// A judgement prompt: see assets/rain/README.md for the file format.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeTemplate {
    pub good: String,
    pub bad: String,
    /// The prompt before `{{text}}`.
    pub prefix: String,
    /// The prompt after `{{text}}`, with `{{A}}` and `{{B}}`.
    pub suffix: String,
}

impl JudgeTemplate {
    pub fn parse(source: &str) -> Result<Self, String> {
        let (header, body) = source
            .split_once("\n---\n")
            .ok_or("missing the `---` line that ends the header")?;
        let field = |name: &str| {
            header
                .lines()
                .find_map(|l| {
                    l.strip_prefix(&format!("{name}:"))
                        .map(|v| v.trim().to_string())
                })
                .filter(|v| !v.is_empty())
                .ok_or(format!("the header has no `{name}:` line"))
        };
        let (prefix, suffix) = body
            .split_once("{{text}}")
            .ok_or("the prompt has no {{text}}")?;
        if !suffix.contains("{{A}}") || !suffix.contains("{{B}}") {
            return Err("the prompt needs {{A}} and {{B}} after {{text}}".into());
        }
        Ok(Self {
            good: field("good")?,
            bad: field("bad")?,
            prefix: prefix.to_string(),
            // The answer letter must follow "(" directly, not a line break at the end of the file.
            suffix: suffix.trim_end_matches(['\n', '\r']).to_string(),
        })
    }

    pub fn load(path: &Path) -> Result<Self, LmError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| LmError::file(path, format!("cannot read: {e}")))?;
        Self::parse(&text).map_err(|e| LmError::file(path, e))
    }

    fn options(&self, good_first: bool) -> String {
        let (a, b) = if good_first {
            (&self.good, &self.bad)
        } else {
            (&self.bad, &self.good)
        };
        self.suffix.replace("{{A}}", a).replace("{{B}}", b)
    }
}

/// Both scores of one judgement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    /// The paper's score: per ordering 1 if the good letter is more likely, mapped to {−1, 0, 1}.
    pub binary: f32,
    /// Mean over orderings of (p_good − p_bad) / (p_good + p_bad), in [−1, 1].
    pub soft: f32,
}

/// What the model's answer to the judgement is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AnswerBy {
    /// The paper's: the option letter after "The answer is: (", both option orders.
    #[default]
    Letters,
    /// The option word itself after "The answer is:" (" harmless" vs " harmful"): immune to a
    /// model's preference for one letter.
    Words,
}

pub struct Judge {
    template: JudgeTemplate,
    /// The few-shot prefix and, after it, the last conversation judged.
    last: Session,
    /// Tokens of the few-shot prefix.
    prefix_ids: Vec<u32>,
    answer_by: AnswerBy,
    /// Letters: ids of "A" and "B". Words: first ids of " good-word" and " bad-word".
    targets: (u32, u32),
    cache: HashMap<String, Judgement>,
    /// Model positions computed for judgements (the shared prefix counted once).
    pub tokens_processed: usize,
}

/// The model that judges under `config`: the generator itself, a model file or folder, or a
/// shipped judge by name (see [`super::judges`]; built on first use, `on_stage` told). A
/// shipped judge's template becomes the config's unless it names one.
pub fn prepare_judge(
    config: &mut super::RainConfig,
    generator: &Arc<LanguageModel>,
    on_stage: &mut dyn FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<Arc<LanguageModel>> {
    let Some(named) = config.judge.clone() else {
        return Ok(generator.clone());
    };
    let (path, template) = super::judges::resolve(&named, on_stage)?;
    if config.template.is_none() {
        config.template = template;
    }
    if path == generator.info.path {
        return Ok(generator.clone());
    }
    on_stage(&format!("loading the judge {}", path.display()))?;
    let mut judge = LanguageModel::load(&path)?;
    if !named.exists() {
        // A shipped judge goes by its name (traces, the page), not its merged file's.
        judge.info.name = named.display().to_string();
    }
    Ok(Arc::new(judge))
}

impl Judge {
    /// The judge of a RAIN run: `model` reading the config's template (or its setting's).
    pub fn for_config(
        model: Arc<LanguageModel>,
        config: &super::RainConfig,
    ) -> Result<Self, LmError> {
        let path = config
            .template
            .clone()
            .unwrap_or_else(|| config.setting.template_path());
        Self::new(model, JudgeTemplate::load(&path)?, config.answer_by)
    }

    pub fn new(
        model: Arc<LanguageModel>,
        template: JudgeTemplate,
        answer_by: AnswerBy,
    ) -> Result<Self, LmError> {
        let targets = match answer_by {
            // The letters as the model would write them right after "(".
            AnswerBy::Letters => {
                let letter = |l: &str| {
                    model.tokenizer.single_token(l).ok_or_else(|| {
                        LmError::Tokenizer(format!("option letter {l:?} is not a single token"))
                    })
                };
                (letter("A")?, letter("B")?)
            }
            AnswerBy::Words => {
                let first = |w: &str| -> Result<u32, LmError> {
                    model
                        .tokenizer
                        .encode(&format!(" {w}"), false)?
                        .first()
                        .copied()
                        .ok_or_else(|| {
                            LmError::Tokenizer(format!("option word {w:?} has no tokens"))
                        })
                };
                let (g, b) = (first(&template.good)?, first(&template.bad)?);
                if g == b {
                    return Err(LmError::Tokenizer(format!(
                        "option words {:?} and {:?} start with the same token",
                        template.good, template.bad
                    )));
                }
                (g, b)
            }
        };
        let mut prefix = Session::new(model.clone());
        let ids = model.tokenizer.encode_prompt(&template.prefix)?;
        prefix.feed(&ids)?;
        let tokens_processed = prefix.tokens_processed();
        Ok(Self {
            template,
            last: prefix,
            prefix_ids: ids,
            answer_by,
            targets,
            cache: HashMap::new(),
            tokens_processed,
        })
    }

    pub fn template(&self) -> &JudgeTemplate {
        &self.template
    }

    /// Judges `conversation` (`User: …\nAssistant: …`).
    pub fn judge(&mut self, conversation: &str) -> Result<Judgement, LmError> {
        Ok(self.judge_batch(&[conversation])?[0])
    }

    /// Judges several conversations in one batch through the model (RAIN's parallel
    /// simulations): every conversation, then every conversation's two option orders.
    pub fn judge_batch(&mut self, conversations: &[&str]) -> Result<Vec<Judgement>, LmError> {
        let mut new: Vec<&str> = Vec::new();
        for &c in conversations {
            if !self.cache.contains_key(c) && !new.contains(&c) {
                new.push(c);
            }
        }
        if !new.is_empty() {
            for (c, j) in new.iter().zip(self.judge_new(&new)?) {
                self.cache.insert(c.to_string(), j);
            }
        }
        Ok(conversations.iter().map(|c| self.cache[*c]).collect())
    }

    fn judge_new(&mut self, conversations: &[&str]) -> Result<Vec<Judgement>, LmError> {
        let model = self.last.model().clone();
        let tokenizer = &model.tokenizer;
        let targets = conversations
            .iter()
            .map(|c| Ok([self.prefix_ids.as_slice(), &tokenizer.encode(c, false)?].concat()))
            .collect::<Result<Vec<_>, LmError>>()?;
        let mut with_text: Vec<Session> = targets.iter().map(|_| self.last.fork()).collect();
        let start = self.last.tokens_processed();
        let targets: Vec<&[u32]> = targets.iter().map(Vec::as_slice).collect();
        Session::sync_batch(&mut with_text.iter_mut().collect::<Vec<_>>(), &targets)?;
        // Both option orders continue each conversation: two forks of each, one batch.
        let options = [true, false]
            .map(|good_first| {
                let options = self.template.options(good_first);
                let options = match self.answer_by {
                    AnswerBy::Letters => options.as_str(),
                    AnswerBy::Words => options.trim_end_matches('('),
                };
                tokenizer.encode(options, false)
            })
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let mut orders: Vec<(bool, Session)> = with_text
            .iter()
            .flat_map(|s| [(true, s.fork()), (false, s.fork())])
            .collect();
        let feeds: Vec<&[u32]> = orders
            .iter()
            .map(|(good_first, _)| options[usize::from(!good_first)].as_slice())
            .collect();
        Session::feed_batch(
            &mut orders.iter_mut().map(|(_, s)| s).collect::<Vec<_>>(),
            &feeds,
        )?;
        for s in &with_text {
            self.tokens_processed += s.tokens_processed() - start;
        }
        if let Some(s) = with_text.last() {
            self.last = s.clone();
        }
        let mut out = Vec::with_capacity(conversations.len());
        for (pair, text) in orders.chunks_exact_mut(2).zip(&with_text) {
            let (mut binary, mut soft) = (0.0, 0.0);
            for (good_first, s) in pair {
                let lp = log_softmax(s.logits()?);
                let (a, b) = (
                    lp[self.targets.0 as usize].exp(),
                    lp[self.targets.1 as usize].exp(),
                );
                let (good, bad) = match (self.answer_by, *good_first) {
                    (AnswerBy::Words, _) | (AnswerBy::Letters, true) => (a, b),
                    (AnswerBy::Letters, false) => (b, a),
                };
                binary += if good > bad { 1.0 } else { 0.0 };
                soft += (good - bad) / (good + bad).max(f32::MIN_POSITIVE);
                self.tokens_processed += s.tokens_processed() - text.tokens_processed();
            }
            out.push(Judgement {
                binary: (binary / 2.0 - 0.5) * 2.0,
                soft: soft / 2.0,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_shipped_templates_and_rejects_broken_ones() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/rain");
        for name in ["harmlessness", "sentiment", "truthfulness", "custom"] {
            let t = JudgeTemplate::load(&dir.join(format!("{name}.txt"))).unwrap();
            assert!(t.prefix.len() > 200 && t.suffix.ends_with("The answer is: ("));
            assert!(t.options(true).contains(&format!("(A) {}", t.good)));
            assert!(t.options(false).contains(&format!("(A) {}", t.bad)));
        }
        assert!(JudgeTemplate::parse("no header")
            .unwrap_err()
            .contains("---"));
        assert!(JudgeTemplate::parse("good: x\nbad: y\n---\nno text here")
            .unwrap_err()
            .contains("{{text}}"));
        assert!(JudgeTemplate::parse("bad: y\n---\n{{text}} {{A}} {{B}}")
            .unwrap_err()
            .contains("good"));
    }
}
