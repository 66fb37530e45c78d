//! Drawing the RAIN search tree: layout and frame time (UI pass + tessellation, CPU) for a
//! synthetic tree of many nodes. `cargo bench --bench tree_view -- [NODES] [FRAMES]`
//! (defaults 5000 and 60).

use std::time::Instant;

use alignscope::rain::replay::Replay;
use alignscope::rain::tree::{NewChild, Origin};
use alignscope::ui::widgets::tree_view::{tidy_layout, tree_view, TreeViewState};

/// A tree shaped as RAIN grows them: every expanded node gets ten children, the first child
/// of each level is expanded further (the committed line), the others in turn.
fn synthetic_replay(nodes: usize) -> Replay {
    let mut replay = Replay::default();
    let tree = &mut replay.tree;
    let mut frontier = std::collections::VecDeque::from([0usize]);
    while tree.nodes.len() < nodes {
        let parent = frontier.pop_front().unwrap_or(0);
        for k in 0..10 {
            let id = tree.add_child(
                parent,
                NewChild {
                    tokens: vec![k],
                    text: format!(" tok{k}"),
                    prior: 0.1,
                    raw_prior: 0.1,
                    origin: Origin::Expansion,
                    sim: tree.nodes.len(),
                    terminal: false,
                },
            );
            let visits = (nodes / (id + 1)) as f32;
            let node = tree.node_mut(id);
            node.n = visits;
            node.q = ((id % 7) as f32 - 3.0) / 3.0;
            frontier.push_back(id);
        }
    }
    let leaf = tree.nodes.len() - 1;
    replay.path = tree.path_to(leaf);
    replay
}

fn main() {
    // `cargo bench` passes `--bench` to every harness-less bench: numbers only.
    let numbers: Vec<usize> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let nodes = numbers.first().copied().unwrap_or(5000);
    let frames = numbers.get(1).copied().unwrap_or(60).max(1);
    let replay = synthetic_replay(nodes);
    let t = Instant::now();
    let layout = tidy_layout(&replay.tree);
    let layout_ms = t.elapsed().as_secs_f64() * 1e3;
    let ctx = egui::Context::default();
    let input = || egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1100.0, 760.0),
        )),
        ..Default::default()
    };
    // Zoomed to fit (every node on screen, the worst case) and at the default zoom.
    let width = layout.iter().map(|p| p.x).fold(1.0f32, f32::max);
    println!(
        "search tree of {} nodes: layout {layout_ms:.2} ms",
        replay.tree.nodes.len()
    );
    println!("| view | ms per frame (ui + tessellation, CPU) | triangles |\n|---|---:|---:|");
    for (name, zoom) in [
        ("whole tree in view", 1000.0 / (width * 26.0)),
        ("default zoom", 1.0),
    ] {
        let mut state = TreeViewState::default();
        state.zoom = zoom;
        state.follow = false;
        let mut frame = || {
            let mut out = ctx.run_ui(input(), |ui| {
                tree_view(ui, &mut state, &replay, None, false);
            });
            // No renderer here to upload the font atlas to.
            out.textures_delta.clear();
            ctx.tessellate(out.shapes, out.pixels_per_point)
                .iter()
                .map(|p| match &p.primitive {
                    egui::epaint::Primitive::Mesh(mesh) => mesh.indices.len() / 3,
                    egui::epaint::Primitive::Callback(_) => 0,
                })
                .sum::<usize>()
        };
        frame();
        let t = Instant::now();
        let mut triangles = 0;
        for _ in 0..frames {
            triangles = frame();
        }
        let ms = t.elapsed().as_secs_f64() * 1e3 / frames as f64;
        println!("| {name} | {ms:.2} | {triangles} |");
    }
}
