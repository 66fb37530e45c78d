//! Decoder evaluation with the app's own runtime: greedy answers scored by exact match, and
//! perplexity. All prompts of a set run as one batch of sessions.

use std::sync::Arc;

use anyhow::Result;

use super::metrics::{argmax, exact_match, log_prob, perplexity};
use crate::data::Example;
use crate::lm::{LanguageModel, Session, SoftPrompt};

/// Sessions fed together per batch.
const BATCH: usize = 100;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Answer {
    pub prompt: String,
    pub expected: String,
    pub got: String,
}

/// A fresh session per text and the text's prompt ids (BOS first).
fn sessions_for(
    model: &Arc<LanguageModel>,
    texts: &[&str],
) -> Result<(Vec<Session>, Vec<Vec<u32>>)> {
    let ids = texts
        .iter()
        .map(|t| model.tokenizer.encode_prompt(t))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        texts.iter().map(|_| Session::new(model.clone())).collect(),
        ids,
    ))
}

/// Feeds each `(session index, tokens)` pair, all in one batch; indices ascend.
fn feed_some(sessions: &mut [Session], feeds: &[(usize, &[u32])]) -> Result<()> {
    let mut refs: Vec<&mut Session> = Vec::with_capacity(feeds.len());
    let mut wanted = feeds.iter().map(|(i, _)| *i).peekable();
    for (i, s) in sessions.iter_mut().enumerate() {
        if wanted.peek() == Some(&i) {
            refs.push(s);
            wanted.next();
        }
    }
    let toks: Vec<&[u32]> = feeds.iter().map(|(_, t)| *t).collect();
    Session::feed_batch(&mut refs, &toks)?;
    Ok(())
}

/// Greedy continuations of `prompts` (after `soft_prompt`, if any), stopping at a stop token
/// or after `max_new` tokens.
pub fn greedy_answers(
    model: &Arc<LanguageModel>,
    soft_prompt: Option<&Arc<SoftPrompt>>,
    prompts: &[&str],
    max_new: usize,
) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(BATCH) {
        let ids: Vec<Vec<u32>> = chunk
            .iter()
            .map(|p| model.tokenizer.encode_prompt(p))
            .collect::<Result<_, _>>()?;
        let mut sessions: Vec<Session> = chunk
            .iter()
            .map(|_| match soft_prompt {
                Some(p) => Session::with_soft_prompt(model.clone(), p.clone()),
                None => Ok(Session::new(model.clone())),
            })
            .collect::<Result<_, _>>()?;
        let mut refs: Vec<&mut Session> = sessions.iter_mut().collect();
        let slices: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        Session::feed_batch(&mut refs, &slices)?;
        let mut answers: Vec<Vec<u32>> = vec![Vec::new(); chunk.len()];
        let mut open: Vec<usize> = (0..chunk.len()).collect();
        for _ in 0..max_new {
            let mut next = Vec::new();
            for &i in &open {
                let tok = argmax(sessions[i].logits()?) as u32;
                if !model.tokenizer.is_stop(tok) {
                    answers[i].push(tok);
                    next.push((i, [tok]));
                }
            }
            if next.is_empty() {
                break;
            }
            open = next.iter().map(|(i, _)| *i).collect();
            let mut refs: Vec<&mut Session> = sessions
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| open.contains(i))
                .map(|(_, s)| s)
                .collect();
            let toks: Vec<&[u32]> = next.iter().map(|(_, t)| t.as_slice()).collect();
            Session::feed_batch(&mut refs, &toks)?;
        }
        for a in answers {
            out.push(model.tokenizer.decode(&a, true)?);
        }
    }
    Ok(out)
}

/// Exact match of greedy answers on `examples`, and every answer.
pub fn exact_match_eval(
    model: &Arc<LanguageModel>,
    examples: &[Example],
    max_new: usize,
) -> Result<(f64, Vec<Answer>)> {
    let prompts: Vec<&str> = examples.iter().map(|e| e.prompt.as_str()).collect();
    let got = greedy_answers(model, None, &prompts, max_new)?;
    let gold: Vec<&str> = examples.iter().map(|e| e.answer.as_str()).collect();
    let score = exact_match(&got, &gold);
    let answers = examples
        .iter()
        .zip(got)
        .map(|(e, got)| Answer {
            prompt: e.prompt.clone(),
            expected: e.answer.clone(),
            got,
        })
        .collect();
    Ok((score, answers))
}

/// Perplexity of the model on `texts` (each encoded as a prompt, BOS first), over every
/// predicted token.
pub fn perplexity_eval(model: &Arc<LanguageModel>, texts: &[String]) -> Result<f64> {
    let (mut nll, mut count) = (0f64, 0usize);
    for chunk in texts.chunks(BATCH) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let (mut sessions, ids) = sessions_for(model, &chunk)?;
        let longest = ids.iter().map(Vec::len).max().unwrap_or(0);
        for pos in 0..longest {
            let live: Vec<usize> = (0..ids.len()).filter(|&i| pos < ids[i].len()).collect();
            if pos > 0 {
                for &i in &live {
                    nll -= log_prob(sessions[i].logits()?, ids[i][pos] as usize);
                    count += 1;
                }
            }
            let feeds: Vec<(usize, &[u32])> =
                live.iter().map(|&i| (i, &ids[i][pos..pos + 1])).collect();
            feed_some(&mut sessions, &feeds)?;
        }
    }
    Ok(perplexity(nll, count))
}
