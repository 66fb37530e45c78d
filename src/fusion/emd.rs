//! Exact optimal transport (the earth mover's distance) by the primal network simplex on the
//! bipartite transportation graph: sources with supply a_i, sinks with demand b_j, every arc
//! i→j uncapacitated with cost c_ij, plus an artificial root joined to every node so that the
//! first spanning tree is feasible. Entering arcs by block search (as LEMON, which POT's
//! `ot.emd` wraps); leaving arcs by Cunningham's rule (the last blocking arc of the cycle seen
//! from its apex), which keeps the tree strongly feasible and rules out cycling.

use anyhow::{bail, ensure, Result};

use super::ot::Plan;

const NONE: usize = usize::MAX;

/// A tree arc: a transport arc (i, j), or the artificial arc of a node to the root.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Arc {
    Transport(usize, usize),
    /// `Artificial(v, towards_root)`: v→root when true, root→v when false.
    Artificial(usize, bool),
}

struct Tree {
    parent: Vec<usize>,
    /// The arc joining a node to its parent, and whether it points from the node to the parent.
    pred: Vec<Arc>,
    up: Vec<bool>,
    flow: Vec<f64>,
    children: Vec<Vec<usize>>,
    depth: Vec<usize>,
    potential: Vec<f64>,
    /// Transport arcs in the tree (their reduced cost is zero up to rounding: never re-enter).
    in_tree: Vec<bool>,
}

#[derive(Debug, Clone)]
pub struct EmdResult {
    pub plan: Plan,
    pub cost: f64,
    pub pivots: usize,
}

/// Solves min ⟨T, C⟩ over T ≥ 0 with T1 = a, Tᵀ1 = b exactly (up to floating point).
pub fn emd(a: &[f64], b: &[f64], cost: &[f64], max_pivots: usize) -> Result<EmdResult> {
    let (n, m) = (a.len(), b.len());
    super::ot::check_problem(a, b, cost)?;
    let sa = a.iter().sum::<f64>();
    let root = n + m;
    let max_c = cost.iter().fold(0.0f64, |x, c| x.max(c.abs()));
    let art = (max_c + 1.0) * (n + m) as f64;
    let arc_cost = |arc: Arc| match arc {
        Arc::Transport(i, j) => cost[i * m + j],
        Arc::Artificial(..) => art,
    };
    // The first tree: sources send their supply to the root, the root feeds every sink.
    let mut t = Tree {
        parent: vec![root; n + m + 1],
        pred: (0..n + m)
            .map(|v| Arc::Artificial(v, v < n && a[v] > 0.0))
            .chain(std::iter::once(Arc::Artificial(root, false)))
            .collect(),
        up: (0..=n + m).map(|v| v < n && a[v] > 0.0).collect(),
        flow: (0..=n + m)
            .map(|v| {
                if v < n {
                    a[v]
                } else if v < root {
                    b[v - n]
                } else {
                    0.0
                }
            })
            .collect(),
        children: vec![Vec::new(); n + m + 1],
        depth: vec![1; n + m + 1],
        potential: vec![0.0; n + m + 1],
        in_tree: vec![false; n * m],
    };
    t.parent[root] = NONE;
    t.depth[root] = 0;
    t.children[root] = (0..n + m).collect();
    for v in 0..n + m {
        // Tree arcs have zero reduced cost c(u→w) + π_u − π_w.
        t.potential[v] = if t.up[v] { -art } else { art };
    }
    let total = n * m;
    let block = ((total as f64).sqrt() as usize).clamp(10.min(total), total);
    let eps = 1e-12 * (max_c + 1.0);
    let mut next = 0usize;
    let mut pivots = 0usize;
    loop {
        // Block search: the most negative reduced cost in the first block that has one. A
        // block is walked as row segments, each first reduced to its minimum (a loop the
        // compiler vectorises); only a segment that beats the best so far is searched for
        // its arc.
        let (mut best, mut best_rc, mut scanned) = (NONE, -eps, 0usize);
        let sink_pi = &t.potential[n..n + m];
        while scanned < total {
            let end = (scanned + block).min(total);
            let mut k = scanned;
            while k < end {
                let (i, j0) = (
                    (next + k - scanned) % total / m,
                    (next + k - scanned) % total % m,
                );
                let len = (m - j0).min(end - k);
                let row = &cost[i * m + j0..i * m + j0 + len];
                let pis = &sink_pi[j0..j0 + len];
                let lowest = row
                    .iter()
                    .zip(pis)
                    .map(|(c, p)| c - p)
                    .fold(f64::INFINITY, f64::min);
                let shift = t.potential[i];
                if lowest + shift < best_rc {
                    for (dj, (c, p)) in row.iter().zip(pis).enumerate() {
                        let rc = c - p + shift;
                        let arc = i * m + j0 + dj;
                        if rc < best_rc && !t.in_tree[arc] {
                            (best, best_rc) = (arc, rc);
                        }
                    }
                }
                k += len;
            }
            next = (next + end - scanned) % total;
            scanned = end;
            if best != NONE {
                break;
            }
        }
        if best == NONE {
            break;
        }
        ensure!(pivots < max_pivots, "no optimum after {max_pivots} pivots");
        pivots += 1;
        pivot(&mut t, (best / m, best % m), n, m, &arc_cost)?;
    }
    let mut plan = vec![0.0; total];
    for v in 0..n + m {
        match t.pred[v] {
            Arc::Transport(i, j) => plan[i * m + j] = t.flow[v],
            Arc::Artificial(..) if t.flow[v] > 1e-9 * sa.max(1.0) => {
                bail!(
                    "infeasible: {} of mass stays on an artificial arc",
                    t.flow[v]
                )
            }
            Arc::Artificial(..) => {}
        }
    }
    let plan = Plan {
        rows: n,
        cols: m,
        t: plan,
    };
    Ok(EmdResult {
        cost: plan.cost(cost),
        plan,
        pivots,
    })
}

/// Brings the arc (i, j) into the tree, pushing the most flow the cycle allows, and takes the
/// blocking arc out.
fn pivot(
    t: &mut Tree,
    (i, j): (usize, usize),
    n: usize,
    m: usize,
    arc_cost: &dyn Fn(Arc) -> f64,
) -> Result<()> {
    let enter = Arc::Transport(i, j);
    let (src, dst) = (i, n + j);
    // The apex: climb from the deeper end until the two paths meet.
    let (mut x, mut y) = (src, dst);
    while x != y {
        if t.depth[x] >= t.depth[y] {
            x = t.parent[x];
        } else {
            y = t.parent[y];
        }
    }
    let apex = x;
    // Flow goes apex → … → src → dst → … → apex. On the src side we walk the path down
    // (parent to child): an arc pointing child→parent is crossed backwards. On the dst side we
    // walk up (child to parent): an arc pointing parent→child is crossed backwards.
    let mut theta = f64::INFINITY;
    let mut leave_child = NONE; // the child end of the leaving arc
    let mut on_dst_side = false;
    // Cunningham: the last blocking arc in cycle order from the apex. Order: src side from the
    // apex down to src, then the entering arc, then the dst side from dst up to the apex.
    let mut src_path = Vec::new();
    let mut w = src;
    while w != apex {
        src_path.push(w);
        w = t.parent[w];
    }
    for &w in src_path.iter().rev() {
        if t.up[w] && t.flow[w] <= theta {
            theta = t.flow[w];
            leave_child = w;
        }
    }
    let mut w = dst;
    while w != apex {
        if !t.up[w] && t.flow[w] <= theta {
            // `<=` keeps the later arc on ties; the dst side is walked in cycle order too.
            theta = t.flow[w];
            leave_child = w;
            on_dst_side = true;
        }
        w = t.parent[w];
    }
    // Sinks have no outgoing arcs, so every cycle has a backward arc; guard all the same.
    ensure!(theta.is_finite(), "unbounded: a cycle with no blocking arc");
    // Push theta around the cycle.
    for &w in &src_path {
        t.flow[w] += if t.up[w] { -theta } else { theta };
    }
    let mut w = dst;
    while w != apex {
        t.flow[w] += if t.up[w] { theta } else { -theta };
        w = t.parent[w];
    }
    // Re-hang the subtree under `leave_child`: the entering arc's end inside it becomes its root.
    let (inside, outside) = if on_dst_side { (dst, src) } else { (src, dst) };
    let new_flow = theta;
    // Reverse parent links on the path inside → leave_child.
    let mut path = vec![inside];
    while *path.last().expect("non-empty") != leave_child {
        let p = t.parent[*path.last().expect("non-empty")];
        path.push(p);
    }
    if let Arc::Transport(a, b) = t.pred[leave_child] {
        t.in_tree[a * m + b] = false;
    }
    t.in_tree[i * m + j] = true;
    let old_parent = t.parent[leave_child];
    remove_child(&mut t.children[old_parent], leave_child);
    for k in (1..path.len()).rev() {
        // path[k] becomes a child of path[k-1], inheriting the arc between them.
        let (child, newp) = (path[k], path[k - 1]);
        remove_child(&mut t.children[child], newp);
        t.children[newp].push(child);
        t.parent[child] = newp;
        t.pred[child] = t.pred[newp];
        t.up[child] = !t.up[newp];
        t.flow[child] = t.flow[newp];
    }
    t.parent[inside] = outside;
    t.pred[inside] = enter;
    t.up[inside] = inside == src; // the entering arc points src→dst
    t.flow[inside] = new_flow;
    t.children[outside].push(inside);
    // Potentials and depths of the moved subtree.
    let c = arc_cost(enter);
    let want = if inside == src {
        t.potential[dst] - c
    } else {
        t.potential[src] + c
    };
    let shift = want - t.potential[inside];
    let mut stack = vec![(inside, t.depth[outside] + 1)];
    while let Some((v, d)) = stack.pop() {
        t.potential[v] += shift;
        t.depth[v] = d;
        for &ch in &t.children[v] {
            stack.push((ch, d + 1));
        }
    }
    Ok(())
}

fn remove_child(children: &mut Vec<usize>, c: usize) {
    if let Some(k) = children.iter().position(|x| *x == c) {
        children.swap_remove(k);
    }
}
