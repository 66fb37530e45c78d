//! The caption lab on its shipped models: the retrievers find scenes by their full
//! descriptions, the base captioner writes fluent human-style captions, DiscriTune's reward is
//! the target's log-probability and a short run raises P@1, the evaluation and the contact
//! sheet through the CLI, and broken model folders named.

use super::cli::{alignscope, failure_stderr, json_output};
use alignscope::caption::build::Part;
use alignscope::caption::captioner::{Captioner, Decoding};
use alignscope::caption::discritune::{discritune, read_training, rewards, DiscriTuneRequest};
use alignscope::caption::eval::{captions, precision, test_scenes};
use alignscope::caption::retriever::{pixels, Retriever};
use alignscope::caption::scenes::{Domain, Scene, BACKGROUNDS, COLOURS, SHAPES};
use alignscope::caption::vocab;
use rand::SeedableRng;

#[test]
fn both_retrievers_find_scenes_by_their_full_descriptions() {
    for part in [Part::RetrieverA, Part::RetrieverB] {
        let r = Retriever::load(&part.dir()).unwrap();
        for &domain in Domain::ALL {
            let scenes = test_scenes(domain, 100);
            let full: Vec<String> = scenes.iter().map(Scene::description).collect();
            let p = precision(&r, &scenes, &full).unwrap();
            assert!(
                p > 50.0,
                "{part} on {domain}: P@1 {p} with full descriptions"
            );
            // A caption naming one object finds its scene far less often.
            let vague: Vec<String> = scenes
                .iter()
                .map(|s| format!("a {}", SHAPES[s.objects[0].shape]))
                .collect();
            let v = precision(&r, &scenes, &vague).unwrap();
            eprintln!("{part} on {domain}: P@1 full {p:.0}, one shape {v:.0}");
            assert!(v < p / 2.0, "{part} on {domain}: vague {v} vs full {p}");
        }
    }
}

#[test]
fn base_captions_are_short_and_true_of_their_scene() {
    let c = Captioner::load(&Part::Captioner.dir()).unwrap();
    let encoder = Retriever::load(&Part::RetrieverA.dir()).unwrap();
    let scenes = test_scenes(Domain::Source, 60);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for &decoding in Decoding::ALL {
        let caps = captions(&c, &encoder, &scenes, decoding, &mut rng).unwrap();
        // Every word of the caption that names a colour, shape or background is true of the
        // scene for at least half the captions (by chance about a fifth would be).
        let true_words = |s: &Scene, c: &str| {
            c.split(' ').all(|w| {
                let is = |names: &[&str]| names.contains(&w);
                let colours: Vec<&str> = COLOURS.iter().map(|c| c.0).collect();
                let backgrounds: Vec<&str> = BACKGROUNDS.iter().map(|b| b.0).collect();
                (!is(&SHAPES) || s.objects.iter().any(|o| SHAPES[o.shape] == w))
                    && (!is(&colours) || s.objects.iter().any(|o| COLOURS[o.colour].0 == w))
                    && (!is(&backgrounds) || BACKGROUNDS[s.background].0 == w)
            })
        };
        let right = scenes
            .iter()
            .zip(&caps)
            .filter(|(s, c)| true_words(s, c))
            .count();
        assert!(
            right >= 30,
            "{decoding}: {right}/60 captions true of their scene: {caps:?}"
        );
        assert!(caps
            .iter()
            .all(|c| vocab::encode(c).is_ok() && c.split(' ').count() <= 20));
    }
}

#[test]
fn the_reward_is_the_targets_log_probability_among_the_batch() {
    let r = Retriever::load(&Part::RetrieverA.dir()).unwrap();
    let scenes = test_scenes(Domain::Source, 8);
    let refs: Vec<&Scene> = scenes.iter().collect();
    let images = r.images(&pixels(&refs).unwrap()).unwrap();
    let words = |t: &str| {
        let ids = vocab::encode(t).unwrap();
        ids[1..ids.len() - 1].to_vec()
    };
    let full: Vec<Vec<u32>> = scenes.iter().map(|s| words(&s.description())).collect();
    let same: Vec<Vec<u32>> = vec![words("some shapes"); 8];
    let good = rewards(&r, &images, &full).unwrap();
    let flat = rewards(&r, &images, &same).unwrap();
    assert!(good.iter().chain(&flat).all(|&x| x <= 0.0));
    // One caption for every image: the probabilities over the batch sum to one.
    let total: f32 = flat.iter().map(|x| x.exp()).sum();
    assert!((total - 1.0).abs() < 1e-4, "{total}");
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    assert!(mean(&good) > mean(&flat) + 1.0, "{good:?} vs {flat:?}");
}

#[test]
fn a_short_discritune_run_raises_p_at_1_and_leaves_a_loadable_captioner() {
    let out = tempfile::tempdir().unwrap();
    let request = DiscriTuneRequest {
        steps: 40,
        // At the default 1e-4, 40 steps are too few to change the greedy captions.
        lr: 3e-4,
        eval_every: 20,
        eval_images: 200,
        out: out.path().join("tuned"),
        ..Default::default()
    };
    let mut seen = 0;
    let outcome = discritune(&request, &mut |_| {
        seen += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, 40);
    assert!(
        outcome.after.p_at_1 > outcome.before.p_at_1 + 5.0,
        "P@1 {} → {}",
        outcome.before.p_at_1,
        outcome.after.p_at_1
    );
    let measured = outcome.steps.iter().filter(|s| s.measure.is_some()).count();
    assert_eq!(measured, 2);
    let (req, rec) = read_training(&request.out).unwrap();
    assert_eq!((req.steps, rec.steps.len()), (40, 40));
    Captioner::load(&request.out).unwrap();
}

#[test]
fn cli_eval_scores_and_sample_draws_a_contact_sheet() {
    let runs = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("base.json");
    let v = json_output(
        alignscope(runs.path())
            .args(["caption", "eval", "--domain", "crowded", "--images", "100"])
            .args(["--decoding", "greedy", "--json", "--out"])
            .arg(&result),
    );
    assert_eq!(v["domain"], "crowded");
    assert_eq!(v["images"], 100);
    for key in ["p_at_1", "p_at_1_judge", "bleu4", "cider_d", "length"] {
        let x = v[key].as_f64().unwrap_or(-1.0);
        assert!((0.0..=100.0).contains(&x), "{key}: {}", v[key]);
    }
    assert!(result.is_file());
    let png = dir.path().join("sheet.png");
    let out = alignscope(runs.path())
        .args([
            "caption",
            "sample",
            "--count",
            "6",
            "--columns",
            "3",
            "--out",
        ])
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(&png).unwrap();
    assert_eq!(img.width(), 6 + 3 * (144 + 6));
    assert!(img.height() > 2 * 144);
}

#[test]
fn broken_model_folders_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("captioner");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(
        Part::RetrieverA.dir().join("config.json"),
        bad.join("config.json"),
    )
    .unwrap();
    let err = format!("{:#}", Captioner::load(&bad).err().unwrap());
    assert!(err.contains("not a caption-captioner"), "{err}");
    std::fs::copy(
        Part::Captioner.dir().join("config.json"),
        bad.join("config.json"),
    )
    .unwrap();
    std::fs::write(bad.join("model.safetensors"), b"not tensors").unwrap();
    let err = format!("{:#}", Captioner::load(&bad).err().unwrap());
    assert!(err.contains("model.safetensors"), "{err}");
    let runs = tempfile::tempdir().unwrap();
    let err = failure_stderr(
        alignscope(runs.path())
            .args(["caption", "eval", "--images", "100", "--captioner"])
            .arg(&bad),
    );
    assert!(err.contains("model.safetensors"), "{err}");
}
