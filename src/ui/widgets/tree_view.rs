//! The RAIN search tree on a canvas: a tidy layout (leaves side by side, parents centred over
//! their children, one row per depth), colour by value (by the soft score where the binary
//! value is undecided), size by visits, chunk texts as labels, the committed path and the
//! current simulation lit up, the jump back to the root after each rewind; drag to pan, scroll
//! to zoom, hover a node for its text, click it to inspect it.

use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Shape, Stroke, Ui, Vec2};

use crate::rain::events::Event;
use crate::rain::replay::Replay;
use crate::rain::tree::{NodeId, Tree};
use crate::text::elide;

const DX: f32 = 26.0;
const DY: f32 = 64.0;

pub struct TreeViewState {
    pub pan: Vec2,
    pub zoom: f32,
    /// Keep the current simulation's leaf in view while the search runs.
    pub follow: bool,
    pub selected: Option<NodeId>,
    /// Layout for a tree of this many nodes.
    layout: (usize, Vec<Pos2>),
    /// Where the canvas was last drawn.
    canvas: Rect,
    /// The labels drawn in the last frame (node, text).
    pub drawn_labels: Vec<(NodeId, String)>,
}

impl Default for TreeViewState {
    fn default() -> Self {
        Self {
            pan: Vec2::new(40.0, 30.0),
            zoom: 1.0,
            follow: true,
            selected: None,
            layout: (0, Vec::new()),
            canvas: Rect::NOTHING,
            drawn_labels: Vec::new(),
        }
    }
}

impl TreeViewState {
    /// Where node `id` was drawn in the last frame.
    pub fn screen_pos(&self, id: NodeId) -> Option<Pos2> {
        let p = self.layout.1.get(id)?;
        Some(self.canvas.min + self.pan + Vec2::new(p.x * DX, p.y * DY) * self.zoom)
    }
}

/// Positions in layout units (x: leaf slots, y: depth) for every node reachable from node 0.
pub fn tidy_layout(tree: &Tree) -> Vec<Pos2> {
    let mut pos = vec![Pos2::ZERO; tree.nodes.len()];
    let mut next_leaf = 0.0f32;
    // Iterative post-order: children are placed before their parent.
    let mut stack: Vec<(NodeId, usize, bool)> = vec![(0, 0, false)];
    while let Some((id, depth, visited)) = stack.pop() {
        let children = &tree.nodes[id].children;
        if children.is_empty() {
            pos[id] = Pos2::new(next_leaf, depth as f32);
            next_leaf += 1.0;
        } else if visited {
            let (first, last) = (pos[children[0]].x, pos[children[children.len() - 1]].x);
            pos[id] = Pos2::new((first + last) / 2.0, depth as f32);
        } else {
            stack.push((id, depth, true));
            for &c in children.iter().rev() {
                stack.push((c, depth + 1, false));
            }
        }
    }
    pos
}

/// Red for −1, grey for 0, green for +1.
pub fn value_color(q: f32) -> Color32 {
    let q = q.clamp(-1.0, 1.0);
    let grey = [150.0, 150.0, 150.0];
    let end = if q < 0.0 {
        [225.0, 70.0, 60.0]
    } else {
        [70.0, 200.0, 100.0]
    };
    let t = q.abs();
    let c: Vec<u8> = (0..3)
        .map(|i| (grey[i] + (end[i] - grey[i]) * t) as u8)
        .collect();
    Color32::from_rgb(c[0], c[1], c[2])
}

/// What a node's colour shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shade {
    /// Its value q (the paper's binary self-evaluation, backed up).
    Value(f32),
    /// q is 0 (the binary judgements undecided): its soft score, relative to the largest in
    /// the tree, so a flat judge still shows which way it leans.
    Soft(f32),
    Unvisited,
}

/// The colour rule of the tree, for every node: `max_soft` is the largest |soft score|.
pub fn shade(replay: &Replay, id: NodeId, max_soft: f32) -> Shade {
    let node = replay.tree.node(id);
    if node.n <= 0.0 {
        return Shade::Unvisited;
    }
    if node.q.abs() > 1e-6 {
        return Shade::Value(node.q);
    }
    match replay.evaluations.get(&id) {
        Some(e) if max_soft > 0.0 => Shade::Soft(e.soft / max_soft),
        _ => Shade::Value(0.0),
    }
}

/// The largest |soft score| of the evaluations so far.
pub fn max_soft(replay: &Replay) -> f32 {
    replay
        .evaluations
        .values()
        .map(|e| e.soft.abs())
        .fold(0.0, f32::max)
}

/// Labels to draw among the nodes `shown` accepts (those on screen): every node's chunk when
/// zoomed in far enough to read them (`room` characters fit between neighbours), and always
/// those on the committed path and the current simulation's path, elided to fit.
pub fn node_labels(
    replay: &Replay,
    room: usize,
    shown: impl Fn(NodeId) -> bool,
) -> Vec<(NodeId, String)> {
    let tree = &replay.tree;
    let mut always: Vec<NodeId> = replay.committed.iter().map(|c| c.0).collect();
    always.extend(replay.path.iter().copied());
    let elide = |text: &str, max: usize| elide(&text.trim().replace('\n', " "), max);
    tree.nodes
        .iter()
        .filter(|n| n.id != 0 && shown(n.id))
        .filter_map(|n| {
            if always.contains(&n.id) {
                Some((n.id, elide(&n.text, room.max(12))))
            } else if room >= 6 {
                Some((n.id, elide(&n.text, room)))
            } else {
                None
            }
        })
        .collect()
}

fn radius(n: f32) -> f32 {
    (3.0 + 1.6 * n.max(0.0).sqrt()).min(14.0)
}

/// Draws the tree; returns the node clicked, if any.
pub fn tree_view(
    ui: &mut Ui,
    state: &mut TreeViewState,
    replay: &Replay,
    last: Option<&Event>,
    running: bool,
) -> Option<NodeId> {
    let size = ui.available_size().max(Vec2::new(200.0, 150.0));
    let (rect, response) = ui.allocate_exact_size(size, Sense::click_and_drag());
    state.canvas = rect;
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 4.0, ui.visuals().extreme_bg_color);
    let tree = &replay.tree;
    if state.layout.0 != tree.nodes.len() {
        state.layout = (tree.nodes.len(), tidy_layout(tree));
    }
    let layout = &state.layout.1;

    // A press pins the view (Follow off), so the node under the pointer stays there until
    // the click completes.
    if response.is_pointer_button_down_on() {
        state.follow = false;
    }
    if response.dragged() {
        state.pan += response.drag_delta();
    }
    if response.hovered() {
        let scroll = ui.input(|i| i.smooth_scroll_delta.y);
        let factor = ui.input(|i| i.zoom_delta()) * (scroll * 0.002).exp();
        if (factor - 1.0).abs() > 1e-4 {
            let pointer = ui.input(|i| i.pointer.hover_pos()).unwrap_or(rect.center());
            let before = (pointer - rect.min - state.pan) / state.zoom;
            state.zoom = (state.zoom * factor).clamp(0.05, 6.0);
            state.pan = pointer - rect.min - before * state.zoom;
        }
    }
    let to_screen =
        |p: Pos2, pan: Vec2, zoom: f32| rect.min + pan + Vec2::new(p.x * DX, p.y * DY) * zoom;
    if state.follow && running {
        if let Some(&leaf) = replay.path.last() {
            let target = rect.center()
                - rect.min
                - Vec2::new(layout[leaf].x * DX, layout[leaf].y * DY) * state.zoom;
            state.pan = state.pan + (target - state.pan) * 0.25;
        }
    }
    let screen = |id: NodeId| to_screen(layout[id], state.pan, state.zoom);
    let visible = rect.expand(20.0);
    let zoom = state.zoom;

    // Edges first.
    let faint = ui.visuals().weak_text_color().gamma_multiply(0.6);
    for node in &tree.nodes {
        if let Some(p) = node.parent {
            let (a, b) = (screen(p), screen(node.id));
            if visible.contains(a) || visible.contains(b) {
                painter.line_segment([a, b], Stroke::new(1.0, faint));
            }
        }
    }
    let committed: Vec<NodeId> = std::iter::once(0)
        .chain(replay.committed.iter().map(|c| c.0))
        .collect();
    let gold = Color32::from_rgb(235, 190, 60);
    for w in committed.windows(2) {
        painter.line_segment([screen(w[0]), screen(w[1])], Stroke::new(3.5, gold));
    }
    let cyan = Color32::from_rgb(70, 200, 235);
    for w in replay.path.windows(2) {
        painter.line_segment([screen(w[0]), screen(w[1])], Stroke::new(2.5, cyan));
    }
    // The rewind: from the leaf just evaluated back to the committed root.
    if let (Some(Event::Rewound { .. }), Some(&leaf)) = (last, replay.path.last()) {
        let dash = Shape::dashed_line(
            &[screen(leaf), screen(tree.root)],
            Stroke::new(1.5, cyan),
            6.0,
            5.0,
        );
        painter.add(dash);
    }

    let label_font = FontId::proportional(11.0);
    let text_color = ui.visuals().text_color();
    let soft_scale = max_soft(replay);
    for node in &tree.nodes {
        let c = screen(node.id);
        if !visible.contains(c) {
            continue;
        }
        let r = radius(node.n) * zoom.sqrt();
        match shade(replay, node.id, soft_scale) {
            Shade::Value(q) => {
                painter.circle_filled(c, r, value_color(q));
            }
            Shade::Soft(s) => {
                painter.circle_filled(c, r, value_color(s));
                painter.circle_stroke(c, r + 1.5, Stroke::new(1.0, text_color.gamma_multiply(0.7)));
            }
            Shade::Unvisited => {
                painter.circle_stroke(c, r, Stroke::new(1.0, faint));
            }
        }
        if node.id == tree.root {
            painter.circle_stroke(c, r + 3.0, Stroke::new(2.0, gold));
        }
        if Some(node.id) == state.selected {
            painter.circle_stroke(c, r + 5.0, Stroke::new(2.0, text_color));
        }
    }
    // About 6 px per character at 11 px; one leaf slot is DX·zoom wide.
    let room = (DX * zoom / 6.0) as usize;
    state.drawn_labels.clear();
    for (id, label) in node_labels(replay, room, |id| visible.contains(screen(id))) {
        let c = screen(id);
        let at = c + Vec2::new(0.0, radius(tree.node(id).n) * zoom.sqrt() + 2.0);
        let galley = painter.layout_no_wrap(label.clone(), label_font.clone(), text_color);
        let bg = Rect::from_center_size(
            at + Vec2::new(0.0, galley.size().y / 2.0),
            galley.size() + Vec2::splat(2.0),
        );
        painter.rect_filled(bg, 2.0, ui.visuals().extreme_bg_color.gamma_multiply(0.85));
        painter.galley(bg.min + Vec2::splat(1.0), galley, text_color);
        state.drawn_labels.push((id, label));
    }

    let node_at = |pointer: Pos2| {
        tree.nodes
            .iter()
            .map(|n| {
                (
                    n.id,
                    screen(n.id).distance(pointer),
                    radius(n.n) * zoom.sqrt() + 4.0,
                )
            })
            .filter(|(_, d, r)| d <= r)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(id, _, _)| id)
    };
    let mut clicked = None;
    if response.clicked() {
        if let Some(pointer) = response.interact_pointer_pos() {
            clicked = node_at(pointer);
            if clicked.is_some() {
                state.selected = clicked;
                state.follow = false;
            }
        }
    }
    legend(&painter, rect, ui, soft_scale);
    if let Some(id) = response.hover_pos().and_then(node_at) {
        let n = tree.node(id);
        response.on_hover_text_at_pointer(format!(
            "{:?}\nvisits {:.1} · value {:+.2} · prior {:.3}",
            n.text, n.n, n.q, n.prior
        ));
    }
    clicked
}

fn legend(painter: &egui::Painter, rect: Rect, ui: &Ui, soft_scale: f32) {
    let font = FontId::proportional(11.0);
    let color = ui.visuals().weak_text_color();
    let mut y = rect.bottom() - 16.0;
    if soft_scale > 0.0 {
        let c = Pos2::new(rect.left() + 12.0, y + 6.0);
        painter.circle_filled(c, 5.0, value_color(0.6));
        painter.circle_stroke(c, 6.5, Stroke::new(1.0, ui.visuals().text_color()));
        painter.text(
            Pos2::new(rect.left() + 22.0, y),
            Align2::LEFT_TOP,
            format!("ringed: value 0, coloured by the soft score (full colour = ±{soft_scale:.3})"),
            font.clone(),
            color,
        );
        y -= 16.0;
    }
    for (text, c) in [
        ("value +1", value_color(1.0)),
        ("value 0", value_color(0.0)),
        ("value -1", value_color(-1.0)),
    ] {
        painter.circle_filled(Pos2::new(rect.left() + 12.0, y + 6.0), 5.0, c);
        painter.text(
            Pos2::new(rect.left() + 22.0, y),
            Align2::LEFT_TOP,
            text,
            font.clone(),
            color,
        );
        y -= 16.0;
    }
    painter.text(
        Pos2::new(rect.left() + 8.0, y),
        Align2::LEFT_TOP,
        "size: visits · gold: committed · blue: this simulation",
        font,
        color,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rain::tree::{NewChild, Origin};

    fn add(t: &mut Tree, parent: NodeId, token: u32, text: &str, sim: usize) -> NodeId {
        let child = NewChild {
            tokens: vec![token],
            text: text.into(),
            prior: 0.5,
            raw_prior: 0.5,
            origin: Origin::Expansion,
            sim,
            terminal: false,
        };
        t.add_child(parent, child)
    }

    #[test]
    fn labels_follow_the_paths_and_colours_fall_back_to_the_soft_score() {
        use crate::rain::events::{Event, NodeStats};
        let mut t = Tree::new();
        let a = add(&mut t, 0, 1, "The sea is a vast and restless", 1);
        let b = add(&mut t, 0, 2, "Waves", 1);
        let c = add(&mut t, a, 3, "blue", 2);
        let mut replay = Replay {
            tree: t,
            ..Replay::default()
        };
        replay.committed.push((a, 3));
        replay.path = vec![0, a, c];
        // Zoomed out: only the committed and current paths, elided.
        let labels = node_labels(&replay, 2, |_| true);
        let ids: Vec<NodeId> = labels.iter().map(|l| l.0).collect();
        assert_eq!(ids, vec![a, c]);
        assert_eq!(labels[0].1, "The sea is …");
        // Zoomed in: every node.
        assert_eq!(node_labels(&replay, 8, |_| true).len(), 3);
        assert_eq!(node_labels(&replay, 8, |id| id == c).len(), 1);

        for (id, q) in [(a, 0.0), (b, -1.0)] {
            let stats = NodeStats {
                id,
                n: 1.0,
                fn_: 1,
                q,
            };
            replay.apply(&Event::BackedUp {
                sim: 1,
                value: q,
                stats: vec![stats],
            });
        }
        replay.apply(&Event::Evaluated {
            sim: 1,
            id: a,
            rollout: String::new(),
            binary: 0.0,
            soft: -0.02,
            value: 0.0,
        });
        replay.apply(&Event::Evaluated {
            sim: 2,
            id: b,
            rollout: String::new(),
            binary: -1.0,
            soft: 0.04,
            value: -1.0,
        });
        let m = max_soft(&replay);
        assert_eq!(m, 0.04);
        assert_eq!(shade(&replay, a, m), Shade::Soft(-0.5));
        assert_eq!(shade(&replay, b, m), Shade::Value(-1.0));
        assert_eq!(shade(&replay, c, m), Shade::Unvisited);
    }

    #[test]
    fn parents_sit_over_their_children_and_leaves_do_not_overlap() {
        let mut t = Tree::new();
        let a = add(&mut t, 0, 1, "a", 1);
        let b = add(&mut t, 0, 2, "b", 1);
        let a1 = add(&mut t, a, 3, "a1", 2);
        let a2 = add(&mut t, a, 4, "a2", 2);
        let p = tidy_layout(&t);
        assert_eq!((p[a1].x, p[a2].x, p[b].x), (0.0, 1.0, 2.0));
        assert_eq!(p[a].x, 0.5);
        assert_eq!(p[0].x, (0.5 + 2.0) / 2.0);
        assert_eq!((p[0].y, p[a].y, p[a1].y), (0.0, 1.0, 2.0));
    }
}
