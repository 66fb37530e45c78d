//! The RAIN search loop: select, (add nodes), roll out, self-evaluate, expand, back up,
//! similarity update; after enough simulations commit the most visited child and re-root.
//! Follows the official code's behaviour; deviations are listed in docs/rain.md.
//!
//! Reuse: one working session holds the prompt, the committed answer and the current path.
//! Each simulation *rewinds* it to the longest common prefix with the new path (`sync_to`), so
//! neither the prompt nor the committed answer is ever recomputed; rollouts and chunk samples
//! run on O(1) forks of it.

use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::config::{RainConfig, ScoreKind, Setting};
use super::events::{Event, NodeStats};
use super::judge::Judge;
use super::tree::{NewChild, NodeId, Origin, Tree};
use crate::embed::{cosine, SentenceEmbedder};
use crate::lm::sampling::log_softmax;
use crate::lm::{LanguageModel, Session, TextTokenizer};

/// Characters that end a clause: a rollout stops after one of them.
const CLAUSE_END: [char; 6] = [',', '.', '?', ':', ';', '\n'];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RainOutcome {
    pub answer: String,
    pub answer_tokens: Vec<u32>,
    pub simulations: usize,
    pub rewinds: usize,
    pub commits: usize,
    /// Model positions computed: generation, rollouts and self-evaluation.
    pub tokens_processed: usize,
    pub seconds: f64,
    pub cancelled: bool,
    /// The final search tree (the root is the last committed node).
    pub tree: Tree,
}

/// Returns `false` to stop the search (cancellation).
pub type OnEvent<'a> = dyn FnMut(&Event) -> bool + 'a;

struct Search<'a> {
    model: Arc<LanguageModel>,
    config: &'a RainConfig,
    judge: Judge,
    embedder: Option<&'a SentenceEmbedder>,
    tree: Tree,
    /// Prompt + committed answer + the current simulation's path.
    work: Session,
    prompt_ids: Vec<u32>,
    prompt_text: String,
    answer: Vec<u32>,
    rng: StdRng,
    sim: usize,
    rewinds: usize,
    /// Positions computed by forks (rollouts, chunk samples), which `work` does not count.
    fork_tokens: usize,
}

/// RAIN with `model` generating and `judge` evaluating (the same model for self-evaluation;
/// see [`super::judge::prepare_judge`]).
pub fn run_rain(
    model: Arc<LanguageModel>,
    judge: Arc<LanguageModel>,
    embedder: Option<&SentenceEmbedder>,
    config: &RainConfig,
    prompt: &str,
    on_event: &mut OnEvent,
) -> anyhow::Result<RainOutcome> {
    let started = Instant::now();
    let judge_name = if Arc::ptr_eq(&model, &judge) {
        "self".to_string()
    } else {
        judge.info.name.clone()
    };
    let mut s = Search::new(model, judge, embedder, config, prompt)?;
    let mut go = on_event(&Event::Started {
        prompt: prompt.to_string(),
        setting: config.setting.name().to_string(),
        prompt_tokens: s.prompt_ids.len(),
        judge: judge_name,
    });
    let mut commits = 0;
    while go && s.answer.len() < config.max_tokens {
        let budget = config
            .t_max
            .saturating_sub(s.tree.node(s.tree.root).fn_)
            .max(config.min_new_simulations);
        let mut done = 0;
        while done < budget {
            let k = config.parallel.clamp(1, (budget - done) as usize);
            let (ran, more) = s.simulate_batch(k, on_event)?;
            (done, go) = (done + ran as u32, more);
            if !go || s.ready_to_commit() {
                break;
            }
        }
        if !go {
            break;
        }
        let Some(child) = s.best_child() else { break };
        commits += 1;
        let terminal = s.commit(child, on_event, &mut go)?;
        if terminal {
            break;
        }
    }
    let answer = s.model.tokenizer.decode(&s.answer, true)?;
    let outcome = RainOutcome {
        answer: answer.trim().to_string(),
        answer_tokens: s.answer.clone(),
        simulations: s.sim,
        rewinds: s.rewinds,
        commits,
        tokens_processed: s.work.tokens_processed() + s.fork_tokens + s.judge.tokens_processed,
        seconds: started.elapsed().as_secs_f64(),
        cancelled: !go,
        tree: s.tree.clone(),
    };
    on_event(&Event::Finished {
        answer: outcome.answer.clone(),
        simulations: outcome.simulations,
        rewinds: outcome.rewinds,
        tokens_processed: outcome.tokens_processed,
        seconds: outcome.seconds,
    });
    Ok(outcome)
}

impl<'a> Search<'a> {
    fn new(
        model: Arc<LanguageModel>,
        judge: Arc<LanguageModel>,
        embedder: Option<&'a SentenceEmbedder>,
        config: &'a RainConfig,
        prompt: &str,
    ) -> anyhow::Result<Self> {
        let judge = Judge::for_config(judge, config)?;
        let prompt_ids = model.chat_ids(prompt)?;
        let mut work = Session::new(model.clone());
        work.feed(&prompt_ids)?;
        Ok(Search {
            model,
            config,
            judge,
            // Node embeddings serve both the similarity update and dynamic addition.
            embedder: embedder.filter(|_| config.similarity_update || config.dynamic_addition),
            tree: Tree::new(),
            work,
            prompt_ids,
            prompt_text: prompt.to_string(),
            answer: Vec::new(),
            rng: StdRng::seed_from_u64(config.seed),
            sim: 0,
            rewinds: 0,
            fork_tokens: 0,
        })
    }

    /// The child with the most visits (ties: higher value, then earlier).
    fn best_child(&self) -> Option<NodeId> {
        let root = self.tree.node(self.tree.root);
        let mut best: Option<NodeId> = None;
        for &c in &root.children {
            let node = self.tree.node(c);
            best = match best {
                Some(b) => {
                    let bn = self.tree.node(b);
                    if node.n > bn.n || (node.n == bn.n && node.q > bn.q) {
                        Some(c)
                    } else {
                        Some(b)
                    }
                }
                None => Some(c),
            };
        }
        best
    }

    fn ready_to_commit(&self) -> bool {
        self.best_child().is_some_and(|c| {
            let n = self.tree.node(c);
            n.fn_ > self.config.t_min && n.q > self.config.v_t
        })
    }

    /// The child with the best value plus exploration bonus. Leaves that a simulation of the
    /// current batch is already evaluating are passed over; `None` if nothing else is left.
    fn select_child(&self, parent: NodeId) -> Option<NodeId> {
        let p = self.tree.node(parent);
        let sqrt_n = self.tree.visits(parent).max(0.0).sqrt();
        let mut best: Option<(f32, NodeId)> = None;
        for &c in &p.children {
            let node = self.tree.node(c);
            if node.pending > 0.0 && node.children.is_empty() {
                continue;
            }
            let u = self.config.exploration * node.prior * sqrt_n / (1.0 + self.tree.visits(c));
            let score = self.tree.normalised_q(c) + u;
            if best.is_none_or(|b| score > b.0) {
                best = Some((score, c));
            }
        }
        best.map(|b| b.1)
    }

    fn tokens_before(&self, path_tokens: &[u32]) -> Vec<u32> {
        [
            self.prompt_ids.as_slice(),
            self.answer.as_slice(),
            path_tokens,
        ]
        .concat()
    }

    /// Selection from the root down to a leaf, adding children where dynamic addition asks;
    /// `None` when every way down ends at a leaf already in flight.
    fn select_path(&mut self, on_event: &mut OnEvent) -> anyhow::Result<Option<Vec<NodeId>>> {
        let mut node = self.tree.root;
        let mut path = vec![node];
        while !self.tree.node(node).children.is_empty() {
            if self.config.dynamic_addition {
                if let Some(added) = self.maybe_add_child(node)? {
                    on_event(&self.node_added_event(added));
                }
            }
            let Some(next) = self.select_child(node) else {
                return Ok(None);
            };
            node = next;
            path.push(node);
        }
        if self.tree.node(node).pending > 0.0 {
            return Ok(None);
        }
        Ok(Some(path))
    }

    /// Up to `k` simulations at once (`k` = 1: the paper's one at a time). Each selection marks
    /// its path as in flight (virtual loss) so the next one is steered elsewhere; the batch
    /// ends early when only leaves already chosen are left. Sessions, rollouts, judgements and
    /// expansions of the batch then each go through the model as one batch, and the results
    /// are backed up in selection order. Returns the simulations run and `false` when the
    /// caller asked to stop.
    fn simulate_batch(
        &mut self,
        k: usize,
        on_event: &mut OnEvent,
    ) -> anyhow::Result<(usize, bool)> {
        let mut paths: Vec<Vec<NodeId>> = Vec::new();
        let mut go = true;
        while go && paths.len() < k.max(1) {
            self.sim += 1;
            let Some(path) = self.select_path(on_event)? else {
                self.sim -= 1;
                break;
            };
            self.tree.add_pending(&path, 1.0);
            go = on_event(&Event::Selected {
                sim: self.sim,
                path: path.clone(),
            });
            paths.push(path);
        }
        for p in &paths {
            self.tree.add_pending(p, -1.0);
        }
        if !go {
            return Ok((paths.len(), false));
        }
        let first_sim = self.sim + 1 - paths.len();
        let leaves: Vec<NodeId> = paths.iter().map(|p| p[p.len() - 1]).collect();
        let path_tokens: Vec<Vec<u32>> = leaves.iter().map(|&l| self.tree.tokens_to(l)).collect();

        // Forks of the working session, each rewound to what its path shares with it.
        let mut sessions: Vec<Session> = leaves.iter().map(|_| self.work.fork()).collect();
        let before: usize = sessions.iter().map(Session::tokens_processed).sum();
        let targets: Vec<Vec<u32>> = path_tokens.iter().map(|t| self.tokens_before(t)).collect();
        let targets: Vec<&[u32]> = targets.iter().map(Vec::as_slice).collect();
        Session::sync_batch(&mut sessions.iter_mut().collect::<Vec<_>>(), &targets)?;
        self.fork_tokens += sessions
            .iter()
            .map(Session::tokens_processed)
            .sum::<usize>()
            - before;

        let rollouts = self.rollouts(&mut sessions)?;
        let mut conversations = Vec::new();
        for (tokens, rollout) in path_tokens.iter().zip(&rollouts) {
            let answer_so_far = self
                .model
                .tokenizer
                .decode(&[self.answer.as_slice(), tokens, rollout].concat(), true)?;
            conversations.push(format!(
                "User: {}\nAssistant: {}",
                self.prompt_text,
                answer_so_far.trim_start()
            ));
        }
        let refs: Vec<&str> = conversations.iter().map(String::as_str).collect();
        let judgements = self.judge.judge_batch(&refs)?;

        // Leaves to expand: not terminal and short of the answer limit.
        let expand: Vec<usize> = (0..leaves.len())
            .filter(|&i| {
                let at_limit = self.answer.len() + path_tokens[i].len() >= self.config.max_tokens;
                !self.tree.node(leaves[i]).terminal && !at_limit
            })
            .collect();
        let lens: Vec<usize> = expand
            .iter()
            .map(|&i| self.chunk_len_after(leaves[i]))
            .collect();
        let mut at: Vec<&mut Session> = sessions
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| expand.contains(i))
            .map(|(_, s)| s)
            .collect();
        let width = self.config.expansion_width;
        let mut candidates = self
            .candidates(&mut at, &lens, width, self.config.chunk_tries)?
            .into_iter();

        for (i, path) in paths.iter().enumerate() {
            let (sim, node, j) = (first_sim + i, leaves[i], judgements[i]);
            let value = match self.config.score {
                ScoreKind::Binary => j.binary,
                ScoreKind::Soft => j.soft,
            };
            on_event(&Event::Evaluated {
                sim,
                id: node,
                rollout: self.model.tokenizer.decode(&rollouts[i], true)?,
                binary: j.binary,
                soft: j.soft,
                value,
            });
            if expand.contains(&i) {
                let cands = candidates
                    .next()
                    .expect("candidates for every expanded leaf");
                let children = self.expand(node, cands, sim)?;
                for &c in &children {
                    on_event(&self.node_added_event(c));
                }
                on_event(&Event::Expanded {
                    sim,
                    id: node,
                    children,
                });
            }
            self.tree.backup(path, value);
            let stats = path.iter().map(|&id| self.stats(id)).collect();
            on_event(&Event::BackedUp { sim, value, stats });
            // Embeddings are written in every backup (as the official code does), so dynamic
            // addition works without the similarity update too.
            if self.embedder.is_some() {
                let updated = self.embed_path(path, &rollouts[i], value)?;
                if !updated.is_empty() {
                    on_event(&Event::SimilarityUpdated {
                        sim,
                        stats: updated,
                    });
                }
            }
            self.rewinds += 1;
            go = on_event(&Event::Rewound {
                sim,
                rewinds: self.rewinds,
            });
            if !go {
                break;
            }
        }
        Ok((paths.len(), go))
    }

    fn stats(&self, id: NodeId) -> NodeStats {
        let n = self.tree.node(id);
        NodeStats {
            id,
            n: n.n,
            fn_: n.fn_,
            q: n.q,
        }
    }

    fn node_added_event(&self, id: NodeId) -> Event {
        let n = self.tree.node(id);
        Event::NodeAdded {
            sim: n.added_at,
            id,
            parent: n.parent.unwrap_or(0),
            tokens: n.tokens.clone(),
            text: n.text.clone(),
            prior: n.prior,
            origin: n.origin,
        }
    }

    /// Samples after each session until the text ends a clause, the turn ends or the rollout
    /// limit is reached; nothing after a path that already ended its turn. All rollouts grow
    /// in lockstep, one batch per token. Rollouts are not added to the tree.
    fn rollouts(&mut self, sessions: &mut [Session]) -> anyhow::Result<Vec<Vec<u32>>> {
        let model = self.model.clone();
        let tokenizer = &model.tokenizer;
        // Truthfulness judges whole sentences: the official code rolls out to the end of the
        // turn and cuts after the last period; the other settings stop at a clause end.
        let whole_sentences = self.config.setting == Setting::Truthfulness;
        let mut ids: Vec<Vec<u32>> = vec![Vec::new(); sessions.len()];
        let mut forks: Vec<Option<Session>> = Vec::new();
        for s in sessions.iter() {
            let path = &s.tokens()[self.prompt_ids.len()..];
            let current = tokenizer.decode(path, true)?;
            let ended = path.last().is_some_and(|&t| tokenizer.is_stop(t));
            let done = ended || current.is_empty() || current.ends_with(CLAUSE_END);
            forks.push((!done).then(|| s.fork()));
        }
        let before: usize = forks.iter().flatten().map(Session::tokens_processed).sum();
        let mut processed = 0;
        for step in 0..self.config.rollout_max_tokens {
            let mut next = Vec::new();
            for (i, slot) in forks.iter_mut().enumerate() {
                let Some(s) = slot else { continue };
                let lp = log_softmax(s.logits()?);
                let id = sample_from(&lp, None, 1.0, &mut self.rng);
                if tokenizer.is_stop(id) {
                    processed += s.tokens_processed();
                    *slot = None;
                    continue;
                }
                ids[i].push(id);
                let clause =
                    !whole_sentences && tokenizer.decode(&ids[i], true)?.ends_with(CLAUSE_END);
                if clause || step + 1 == self.config.rollout_max_tokens {
                    processed += s.tokens_processed();
                    *slot = None;
                } else {
                    next.push((i, [id]));
                }
            }
            if next.is_empty() {
                break;
            }
            let feeds: Vec<&[u32]> = next.iter().map(|(_, id)| id.as_slice()).collect();
            let mut growing: Vec<&mut Session> = forks
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| next.iter().any(|n| n.0 == *i))
                .filter_map(|(_, f)| f.as_mut())
                .collect();
            Session::feed_batch(&mut growing, &feeds)?;
        }
        processed += forks
            .iter()
            .flatten()
            .map(Session::tokens_processed)
            .sum::<usize>();
        self.fork_tokens += processed - before;
        if whole_sentences {
            for ids in &mut ids {
                let mut keep = ids.len();
                while keep > 0 && !tokenizer.decode(&ids[..keep], true)?.ends_with('.') {
                    keep -= 1;
                }
                if keep > 0 {
                    ids.truncate(keep);
                }
            }
        }
        Ok(ids)
    }

    /// Candidate chunks after each session, `lens[i]` tokens long: the top tokens for 1-token
    /// chunks, otherwise a greedy chunk plus distinct ones from `tries` samples. Returns per
    /// session `(chunk, raw prior, ends_turn)`, best first; raw priors of one session are on
    /// one scale. All sampled chunks grow in lockstep, one batch per token.
    fn candidates(
        &mut self,
        at: &mut [&mut Session],
        lens: &[usize],
        width: usize,
        tries: usize,
    ) -> anyhow::Result<Vec<Vec<Candidate>>> {
        let model = self.model.clone();
        let tokenizer = &model.tokenizer;
        let t = self.config.chunk_temperature;
        let k = self.config.chunk_top_k;
        let tries = 1 + tries;
        let mut out: Vec<Vec<Candidate>> = Vec::with_capacity(at.len());
        // Per session with longer chunks: the greedy chunk and `tries − 1` sampled ones, all
        // forks of it: (session, fork, tokens, log-probability, ends the turn).
        let mut growing: Vec<(usize, Session, Vec<u32>, f32, bool)> = Vec::new();
        // A sampler per session with longer chunks, seeded in session order.
        let mut rngs: Vec<Option<StdRng>> = Vec::with_capacity(at.len());
        for (g, (s, &len)) in at.iter_mut().zip(lens).enumerate() {
            if len == 1 {
                let n = width.max(self.config.dynamic_max_children);
                out.push(top_tokens(&log_softmax(s.logits()?), n, t, tokenizer));
                rngs.push(None);
                continue;
            }
            out.push(Vec::new());
            rngs.push(Some(StdRng::seed_from_u64(self.rng.random())));
            growing.extend((0..tries).map(|_| (g, s.fork(), Vec::new(), 0.0, false)));
        }
        let before: usize = growing.iter().map(|c| c.1.tokens_processed()).sum();
        let longest = lens.iter().copied().max().unwrap_or(0);
        for step in 0..longest {
            let mut next = Vec::new();
            let mut previous = None;
            for (i, (g, fork, chunk, logp, ends)) in growing.iter_mut().enumerate() {
                let greedy = previous != Some(*g);
                previous = Some(*g);
                if *ends || chunk.len() >= lens[*g] {
                    continue;
                }
                let dist = top_k_distribution(&log_softmax(fork.logits()?), k, t);
                let id = if greedy {
                    dist[0].0
                } else {
                    let rng = rngs[*g].as_mut().expect("a sampler for longer chunks");
                    sample_pairs(&dist, rng)
                };
                *logp += dist
                    .iter()
                    .find(|d| d.0 == id)
                    .map(|d| d.1.ln())
                    .unwrap_or(f32::NEG_INFINITY);
                chunk.push(id);
                if tokenizer.is_stop(id) {
                    *ends = true;
                } else if step + 1 < lens[*g] {
                    next.push((i, [id]));
                }
            }
            if next.is_empty() {
                break;
            }
            let feeds: Vec<&[u32]> = next.iter().map(|(_, id)| id.as_slice()).collect();
            let mut forks: Vec<&mut Session> = growing
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| next.iter().any(|n| n.0 == *i))
                .map(|(_, c)| &mut c.1)
                .collect();
            Session::feed_batch(&mut forks, &feeds)?;
        }
        self.fork_tokens += growing
            .iter()
            .map(|c| c.1.tokens_processed())
            .sum::<usize>()
            - before;
        let mut sampled: Vec<Vec<Candidate>> = vec![Vec::new(); out.len()];
        for (g, _, ids, logp, ends) in growing {
            sampled[g].push((ids, logp.exp(), ends));
        }
        for (g, chunks) in sampled.into_iter().enumerate() {
            if !chunks.is_empty() {
                out[g] = distinct_chunks(chunks, width);
            }
        }
        Ok(out)
    }

    /// Token length of the chunks after `node`, by the schedule.
    fn chunk_len_after(&self, node: NodeId) -> usize {
        let n = self.tree.node(node);
        let step = chunk_step(n.depth_tokens + n.tokens.len(), &self.config.chunk_lengths);
        self.config.chunk_length(step)
    }

    /// Expands a leaf with its candidates (see [`Search::candidates`]).
    fn expand(
        &mut self,
        node: NodeId,
        mut cands: Vec<Candidate>,
        sim: usize,
    ) -> anyhow::Result<Vec<NodeId>> {
        let width = self.config.expansion_width;
        let spare = if cands.len() > width {
            cands.split_off(width)
        } else {
            Vec::new()
        };
        let mut priors: Vec<f32> = cands.iter().map(|c| c.1).collect();
        normalise(&mut priors);
        if node == self.tree.root {
            mix_uniform(&mut priors, self.config.root_uniform_mix);
        }
        let mut ids = Vec::new();
        for ((tokens, raw_prior, ends), prior) in cands.into_iter().zip(priors) {
            let text = self.model.tokenizer.decode(&tokens, true)?;
            let child = NewChild {
                tokens,
                text,
                prior,
                raw_prior,
                origin: Origin::Expansion,
                sim,
                terminal: ends,
            };
            ids.push(self.tree.add_child(node, child));
        }
        self.tree.node_mut(node).spare = spare.into_iter().map(|(t, p, _)| (t, p)).collect();
        Ok(ids)
    }

    /// Dynamic node addition: when all children are visited, their texts are alike and none is
    /// good, add one more candidate.
    fn maybe_add_child(&mut self, node: NodeId) -> anyhow::Result<Option<NodeId>> {
        let n = self.tree.node(node);
        if n.children.len() >= self.config.dynamic_max_children || n.children.len() < 2 {
            return Ok(None);
        }
        let children: Vec<_> = n.children.iter().map(|&c| self.tree.node(c)).collect();
        let Some(embeddings) = children
            .iter()
            .map(|c| c.embedding.clone())
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        let best_q = children.iter().map(|c| c.q).fold(f32::MIN, f32::max);
        // The spread threshold scales with the first child's length, as in the official code.
        let first_len = children[0].tokens.len().max(1);
        if best_q >= 0.0
            || variance_norm(&embeddings) >= self.config.dynamic_variance * first_len as f32
        {
            return Ok(None);
        }
        let existing: Vec<Vec<u32>> = children.iter().map(|c| c.tokens.clone()).collect();
        let raw_siblings: Vec<f32> = children.iter().map(|c| c.raw_prior).collect();
        // The new chunk has the schedule's length (a first child cut short by the end of turn
        // must not shorten it).
        let chunk_len = self.chunk_len_after(node);
        let candidate = if chunk_len == 1 {
            let spare = &mut self.tree.node_mut(node).spare;
            if spare.is_empty() {
                return Ok(None);
            }
            let (t, p) = spare.remove(0);
            (t, p, false)
        } else {
            let path_tokens = self.tree.tokens_to(node);
            self.work.sync_to(&self.tokens_before(&path_tokens))?;
            let mut at = self.work.fork();
            let tries = self.config.addition_tries;
            let cands = self.candidates(&mut [&mut at], &[chunk_len], 2, tries)?;
            let Some(c) = cands.into_iter().flatten().nth(1) else {
                return Ok(None);
            };
            c
        };
        if existing.contains(&candidate.0) {
            return Ok(None);
        }
        let prior = addition_prior(
            candidate.1,
            &raw_siblings,
            (node == self.tree.root).then_some(self.config.root_uniform_mix),
        );
        let text = self.model.tokenizer.decode(&candidate.0, true)?;
        let ends = candidate.2
            || candidate
                .0
                .last()
                .is_some_and(|&t| self.model.tokenizer.is_stop(t));
        let child = NewChild {
            tokens: candidate.0,
            text,
            prior,
            raw_prior: candidate.1,
            origin: Origin::DynamicAddition,
            sim: self.sim,
            terminal: ends,
        };
        Ok(Some(self.tree.add_child(node, child)))
    }

    /// Embeds each path node's continuation text and folds it into the node's running mean;
    /// with the similarity update on, lends visits (γ·sim) and the value to siblings at least
    /// `threshold` similar. Returns the siblings updated.
    fn embed_path(
        &mut self,
        path: &[NodeId],
        rollout: &[u32],
        g: f32,
    ) -> anyhow::Result<Vec<NodeStats>> {
        let Some(embedder) = self.embedder else {
            return Ok(Vec::new());
        };
        let mut updated = Vec::new();
        let mut tail: Vec<u32> = rollout.to_vec();
        let mut texts = Vec::new();
        for &id in path.iter().skip(1).rev() {
            tail = [self.tree.node(id).tokens.as_slice(), &tail].concat();
            texts.push((id, self.model.tokenizer.decode(&tail, true)?));
        }
        let refs: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
        let embeddings = embedder.embed(&refs)?;
        for ((id, _), e) in texts.iter().zip(embeddings) {
            let node = self.tree.node_mut(*id);
            let mean = match node.embedding.take() {
                None => e,
                Some(mut m) => {
                    let k = node.fn_.max(1) as f32;
                    m.iter_mut().zip(&e).for_each(|(a, b)| *a += (b - *a) / k);
                    m
                }
            };
            node.embedding = Some(mean.clone());
            node.embedding_count += 1;
            let Some(parent) = node.parent.filter(|_| self.config.similarity_update) else {
                continue;
            };
            let siblings = self.tree.node(parent).children.clone();
            for s in siblings.into_iter().filter(|s| s != id) {
                let Some(se) = self.tree.node(s).embedding.clone() else {
                    continue;
                };
                let sim = cosine(&mean, &se);
                if sim >= self.config.similarity_threshold {
                    let w = self.config.similarity_gamma * sim;
                    let sn = self.tree.node_mut(s);
                    let n_old = sn.n;
                    sn.n += w;
                    sn.q = (sn.q * n_old + w * g) / sn.n;
                    updated.push(self.stats(s));
                }
            }
        }
        Ok(updated)
    }

    /// Commits `child`: its tokens join the answer and it becomes the root. Returns whether the
    /// answer is finished.
    fn commit(
        &mut self,
        child: NodeId,
        on_event: &mut OnEvent,
        go: &mut bool,
    ) -> anyhow::Result<bool> {
        let node = self.tree.node(child).clone();
        let ends = node.terminal;
        let tokens: Vec<u32> = node
            .tokens
            .iter()
            .copied()
            .filter(|t| !self.model.tokenizer.is_stop(*t))
            .collect();
        self.answer.extend_from_slice(&tokens);
        self.tree.root = child;
        let mut priors: Vec<f32> = node
            .children
            .iter()
            .map(|&c| self.tree.node(c).prior)
            .collect();
        mix_uniform(&mut priors, self.config.root_uniform_mix);
        for (&c, &p) in node.children.iter().zip(&priors) {
            self.tree.node_mut(c).prior = p;
        }
        let answer = self.model.tokenizer.decode(&self.answer, true)?;
        *go = on_event(&Event::Committed {
            sim: self.sim,
            id: child,
            text: node.text.clone(),
            answer,
            priors: node.children.iter().copied().zip(priors).collect(),
        });
        Ok(ends)
    }
}

/// A candidate chunk: tokens, raw prior, ends the turn.
type Candidate = (Vec<u32>, f32, bool);

/// The `n` most likely next tokens as 1-token chunks, with probabilities at temperature `t`
/// relative to the best token's.
fn top_tokens(lp: &[f32], n: usize, t: f32, tokenizer: &TextTokenizer) -> Vec<Candidate> {
    let mut order: Vec<u32> = (0..lp.len() as u32).collect();
    order.sort_by(|a, b| lp[*b as usize].total_cmp(&lp[*a as usize]));
    order.truncate(n);
    let max = lp[order[0] as usize];
    order
        .iter()
        .map(|&id| {
            let p = ((lp[id as usize] - max) / t).exp();
            (vec![id], p, tokenizer.is_stop(id))
        })
        .collect()
}

/// The greedy chunk (first) and up to `width − 1` distinct sampled ones. The official code
/// clamps the greedy chunk's prior into [max + min, sum] of the samples'.
fn distinct_chunks(chunks: Vec<Candidate>, width: usize) -> Vec<Candidate> {
    let mut chunks = chunks.into_iter();
    let Some(mut greedy) = chunks.next() else {
        return Vec::new();
    };
    let mut sampled: Vec<Candidate> = Vec::new();
    for c in chunks {
        if sampled.len() + 1 >= width {
            break;
        }
        if c.0 != greedy.0 && !sampled.iter().any(|s| s.0 == c.0) {
            sampled.push(c);
        }
    }
    if !sampled.is_empty() {
        let e: Vec<f32> = sampled.iter().map(|s| s.1).collect();
        let (mx, mn, sum) = (
            e.iter().copied().fold(f32::MIN, f32::max),
            e.iter().copied().fold(f32::MAX, f32::min),
            e.iter().sum::<f32>(),
        );
        greedy.1 = greedy.1.min(sum).max(mx + mn);
    }
    std::iter::once(greedy).chain(sampled).collect()
}

/// Which entry of the chunk-length schedule applies after `tokens` answer tokens: the
/// schedule's cumulative lengths (1, 3, 7, 17, …) mark where each step starts.
fn chunk_step(tokens: usize, lengths: &[usize]) -> usize {
    let mut start = 0;
    for (step, len) in lengths.iter().enumerate() {
        if tokens < start + len.max(&1) {
            return step;
        }
        start += len.max(&1);
    }
    lengths.len().saturating_sub(1)
}

/// The prior of a chunk added beside siblings: its raw probability normalised against theirs
/// (raw against raw, so chunks of any length get priors on their siblings' scale), mixed with
/// the uniform distribution at the root as the siblings' were.
fn addition_prior(raw: f32, raw_siblings: &[f32], root_mix: Option<f32>) -> f32 {
    let total = raw + raw_siblings.iter().sum::<f32>();
    let p = raw / total.max(f32::MIN_POSITIVE);
    match root_mix {
        Some(w) => (1.0 - w) * p + w / (raw_siblings.len() + 1) as f32,
        None => p,
    }
}

fn normalise(p: &mut [f32]) {
    let s: f32 = p.iter().sum();
    if s > 0.0 {
        p.iter_mut().for_each(|x| *x /= s);
    }
}

/// `p ← (1 − w)·p + w/len`, renormalised (the root's priors).
fn mix_uniform(p: &mut [f32], w: f32) {
    if p.is_empty() {
        return;
    }
    let u = 1.0 / p.len() as f32;
    p.iter_mut().for_each(|x| *x = (1.0 - w) * *x + w * u);
    normalise(p);
}

/// The k most likely tokens at temperature `t`, renormalised: (id, probability), best first.
fn top_k_distribution(logprobs: &[f32], k: usize, t: f32) -> Vec<(u32, f32)> {
    let mut order: Vec<u32> = (0..logprobs.len() as u32).collect();
    let k = k.clamp(1, order.len());
    order.select_nth_unstable_by(k - 1, |a, b| {
        logprobs[*b as usize].total_cmp(&logprobs[*a as usize])
    });
    order.truncate(k);
    order.sort_by(|a, b| logprobs[*b as usize].total_cmp(&logprobs[*a as usize]));
    let max = logprobs[order[0] as usize];
    let mut w: Vec<f32> = order
        .iter()
        .map(|&i| ((logprobs[i as usize] - max) / t).exp())
        .collect();
    normalise(&mut w);
    order.into_iter().zip(w).collect()
}

fn sample_pairs(dist: &[(u32, f32)], rng: &mut StdRng) -> u32 {
    let mut r = rng.random::<f32>();
    for (id, p) in dist {
        if r < *p {
            return *id;
        }
        r -= p;
    }
    dist.last().map(|d| d.0).unwrap_or(0)
}

/// Samples from the full distribution (`top_k` None) at temperature `t`.
fn sample_from(logprobs: &[f32], top_k: Option<usize>, t: f32, rng: &mut StdRng) -> u32 {
    let dist = top_k_distribution(logprobs, top_k.unwrap_or(logprobs.len()), t);
    sample_pairs(&dist, rng)
}

/// L2 norm of the per-dimension unbiased variance of `vectors`.
fn variance_norm(vectors: &[Vec<f32>]) -> f32 {
    let n = vectors.len() as f32;
    if vectors.len() < 2 {
        return f32::INFINITY;
    }
    let dim = vectors[0].len();
    (0..dim)
        .map(|d| {
            let mean = vectors.iter().map(|v| v[d]).sum::<f32>() / n;
            let var = vectors.iter().map(|v| (v[d] - mean).powi(2)).sum::<f32>() / (n - 1.0);
            var * var
        })
        .sum::<f32>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A search on the shipped model with a small budget.
    fn search<'a>(config: &'a RainConfig, embedder: Option<&'a SentenceEmbedder>) -> Search<'a> {
        let model = Arc::new(LanguageModel::load(&crate::assets::default_model()).unwrap());
        Search::new(
            model.clone(),
            model,
            embedder,
            config,
            "How do I pick a lock?",
        )
        .unwrap()
    }

    fn embedder() -> SentenceEmbedder {
        SentenceEmbedder::load(&crate::assets::embedding_model()).unwrap()
    }

    #[test]
    fn without_the_similarity_update_nodes_still_get_embeddings() {
        let config = RainConfig {
            similarity_update: false,
            ..RainConfig::default()
        };
        let embedder = embedder();
        let mut s = search(&config, Some(&embedder));
        let mut lent = false;
        for _ in 0..3 {
            s.simulate_batch(1, &mut |e| {
                lent |= matches!(e, Event::SimilarityUpdated { .. });
                true
            })
            .unwrap();
        }
        let visited: Vec<&super::super::tree::Node> = s
            .tree
            .nodes
            .iter()
            .filter(|n| n.fn_ > 0 && n.parent.is_some())
            .collect();
        assert!(!visited.is_empty());
        // Dynamic addition needs these; only the lending is off.
        assert!(visited.iter().all(|n| n.embedding.is_some()));
        assert!(!lent, "no visits lent without the similarity update");
        assert!(s.tree.nodes.iter().all(|n| n.n == n.fn_ as f32));
    }

    #[test]
    fn no_rollout_after_the_end_of_turn() {
        let config = RainConfig::default();
        let mut s = search(&config, None);
        let eos = s.model.tokenizer.eos.expect("an end-of-turn token");
        let mut ids = s.prompt_ids.clone();
        ids.extend(s.model.tokenizer.encode("No.", false).unwrap());
        let ended = [ids.clone(), vec![eos]].concat();
        // Without the end of turn, the same path is rolled out.
        ids.extend(s.model.tokenizer.encode(" I", false).unwrap());
        let mut sessions = [s.work.fork(), s.work.fork()];
        sessions[0].sync_to(&ended).unwrap();
        sessions[1].sync_to(&ids).unwrap();
        let rollouts = s.rollouts(&mut sessions).unwrap();
        assert!(rollouts[0].is_empty());
        assert!(!rollouts[1].is_empty());
    }

    #[test]
    fn added_chunks_get_priors_on_their_siblings_scale() {
        // Ten-token chunks have raw probabilities far below 1; normalised raw against raw the
        // addition is a peer of its siblings, at the root mixed like them.
        let siblings = [3e-9, 1e-9, 2e-9];
        assert!((addition_prior(1e-9, &siblings, None) - 1.0 / 7.0).abs() < 1e-6);
        let at_root = addition_prior(1e-9, &siblings, Some(0.25));
        assert!((at_root - (0.75 / 7.0 + 0.25 / 4.0)).abs() < 1e-6);

        // In a search: a node whose 10-token children all look alike and all lose gets one
        // more, of the schedule's length, with a prior of its siblings' order.
        let config = RainConfig {
            chunk_lengths: vec![10],
            expansion_width: 3,
            ..RainConfig::default()
        };
        let embedder = embedder();
        let mut s = search(&config, Some(&embedder));
        s.simulate_batch(1, &mut |_| true).unwrap();
        let node = s.tree.node(s.tree.root).children[0];
        let mut at = s.work.fork();
        at.sync_to(&s.tokens_before(&s.tree.tokens_to(node)))
            .unwrap();
        let cands = s
            .candidates(&mut [&mut at], &[10], 3, config.chunk_tries)
            .unwrap();
        s.expand(node, cands.into_iter().next().unwrap(), 1)
            .unwrap();
        let children = s.tree.node(node).children.clone();
        for &c in &children {
            let n = s.tree.node_mut(c);
            (n.q, n.embedding) = (-1.0, Some(vec![1.0, 0.0]));
        }
        let added = s.maybe_add_child(node).unwrap().expect("a child is added");
        let a = s.tree.node(added);
        assert_eq!(a.origin, Origin::DynamicAddition);
        assert_eq!(a.tokens.len(), 10);
        let raw: Vec<f32> = children.iter().map(|&c| s.tree.node(c).raw_prior).collect();
        assert!(
            raw.iter().all(|&r| r > 0.0 && r < 1e-2),
            "10-token chunks: {raw:?}"
        );
        let expected = addition_prior(a.raw_prior, &raw, None);
        assert!(
            (a.prior / expected - 1.0).abs() < 1e-4,
            "{} vs {expected}",
            a.prior
        );
        let smallest = children
            .iter()
            .map(|&c| s.tree.node(c).prior)
            .fold(1.0, f32::min);
        assert!(
            a.prior > smallest * 1e-3,
            "prior {} against siblings' smallest {smallest}",
            a.prior
        );
    }

    #[test]
    fn parallel_simulations_spread_over_the_tree_and_leave_no_virtual_loss() {
        let config = RainConfig::default();
        let mut s = search(&config, None);
        // A fresh root is the only leaf: the batch stops at the second selection.
        assert_eq!(s.simulate_batch(4, &mut |_| true).unwrap(), (1, true));
        let mut paths = Vec::new();
        let mut evaluated = Vec::new();
        let (ran, go) = s
            .simulate_batch(4, &mut |e| {
                match e {
                    Event::Selected { sim, path } => paths.push((*sim, path.clone())),
                    Event::Evaluated { sim, .. } => evaluated.push(*sim),
                    _ => {}
                }
                true
            })
            .unwrap();
        assert_eq!((ran, go), (4, true));
        assert_eq!(paths.iter().map(|p| p.0).collect::<Vec<_>>(), [2, 3, 4, 5]);
        assert_eq!(evaluated, [2, 3, 4, 5]);
        let mut leaves: Vec<NodeId> = paths.iter().map(|p| *p.1.last().unwrap()).collect();
        leaves.sort_unstable();
        leaves.dedup();
        assert_eq!(
            leaves.len(),
            4,
            "virtual loss sends each simulation elsewhere"
        );
        let root = s.tree.node(s.tree.root);
        assert_eq!(root.fn_, 5);
        assert!(s.tree.nodes.iter().all(|n| n.pending == 0.0));
        for &l in &leaves {
            assert_eq!(s.tree.node(l).fn_, 1, "leaf {l}");
            assert!(
                !s.tree.node(l).children.is_empty(),
                "every leaf was expanded"
            );
        }
    }

    #[test]
    fn chunk_schedule_follows_answer_length() {
        let l = [1, 2, 4, 10];
        // Answer lengths at which steps start: 0, 1, 3, 7, then 10-token chunks.
        assert_eq!(
            [0, 1, 2, 3, 6, 7, 30].map(|t| chunk_step(t, &l)),
            [0, 1, 1, 2, 2, 3, 3]
        );
    }

    #[test]
    fn root_mixing_and_variance() {
        let mut p = vec![1.0, 0.0, 0.0, 0.0];
        mix_uniform(&mut p, 0.25);
        assert!((p[0] - (0.75 + 0.0625)).abs() < 1e-6 && (p[1] - 0.0625).abs() < 1e-6);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let same = vec![vec![0.5, 0.5], vec![0.5, 0.5]];
        assert_eq!(variance_norm(&same), 0.0);
        let apart = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        assert!((variance_norm(&apart) - (0.5f32 * 0.5 * 2.0).sqrt()).abs() < 1e-6);
    }

    #[test]
    fn top_k_distribution_is_normalised_and_sorted() {
        let lp = log_softmax(&[0.0, 2.0, 1.0, -1.0]);
        let d = top_k_distribution(&lp, 2, 1.0);
        assert_eq!(d.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!((d[0].1 + d[1].1 - 1.0).abs() < 1e-6 && d[0].1 > d[1].1);
        // A higher temperature flattens it.
        assert!(top_k_distribution(&lp, 2, 2.0)[0].1 < d[0].1);
    }
}
