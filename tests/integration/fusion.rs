//! The OT solvers against POT (fixtures from scripts/ot_fixtures.py).

use alignscope::fusion::ot::{sinkhorn_log, SinkhornOptions};

#[derive(serde::Deserialize)]
struct Fixture {
    rows: usize,
    cols: usize,
    a: Vec<f64>,
    b: Vec<f64>,
    cost: Vec<f64>,
    sinkhorn: std::collections::BTreeMap<String, Vec<f64>>,
}

fn fixtures() -> Vec<(String, Fixture)> {
    let dir = crate::common::fixture("ot");
    let mut out: Vec<(String, Fixture)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let f = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), f)
        })
        .collect();
    out.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(out.len(), 4, "fixtures in {}", dir.display());
    out
}

#[test]
fn log_sinkhorn_plans_equal_pots() {
    for (name, f) in fixtures() {
        for (reg, want) in &f.sinkhorn {
            let reg: f64 = reg.parse().unwrap();
            let got = sinkhorn_log(&f.a, &f.b, &f.cost, reg, SinkhornOptions::default()).unwrap();
            assert_eq!((got.plan.rows, got.plan.cols), (f.rows, f.cols));
            let diff = got
                .plan
                .t
                .iter()
                .zip(want)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(diff < 1e-6, "{name} reg {reg}: max |ΔT| = {diff:e}");
        }
    }
}
