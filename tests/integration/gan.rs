//! The GAN lab on the shipped models: the source GAN draws faces, GenDA moves its samples to
//! the target while the generator stays frozen, FreezeD keeps the lower discriminator layers,
//! the CLI adapts and samples, and broken images and folders are named.

use alignscope::gan::adapt::{adapt, AdaptRequest, Method, Target};
use alignscope::gan::faces::{render_many, Domain, SIZE};
use alignscope::gan::features::FeatureNet;
use alignscope::gan::metrics::frechet_distance;
use alignscope::gan::pretrain::{latents, Gan};
use rand::SeedableRng;

use crate::cli::{alignscope, failure_stderr, json_output};

fn share(net: &FeatureNet, images: &[Vec<u8>], domain: Domain) -> f64 {
    let named = net.classify(images).unwrap();
    named.iter().filter(|&&d| d == domain).count() as f64 / named.len() as f64
}

fn eval_latents(n: usize) -> candle_core::Tensor {
    latents(&mut rand::rngs::StdRng::seed_from_u64(11), n, 64).unwrap()
}

#[test]
fn the_source_gan_draws_source_faces() {
    let net = FeatureNet::load(&alignscope::gan::features_dir()).unwrap();
    let gan = Gan::load(&alignscope::gan::source_dir(), true).unwrap();
    let fake = gan.sample(&eval_latents(300), 1.0).unwrap();
    assert_eq!(fake[0].len(), SIZE * SIZE * 3);
    // The feature network knows the domains of real faces, and takes the samples for source
    // faces.
    // (Source faces include 15 % sunglasses and 15 % babies, read as those.)
    for &d in Domain::ALL {
        let real = share(&net, &render_many(d, 1, 200, 0), d);
        let floor = if d == Domain::Source { 0.6 } else { 0.9 };
        assert!(real > floor, "{d}: {real}");
    }
    let s = share(&net, &fake, Domain::Source);
    assert!(s > 0.7, "samples called source: {s}");
    // Closer to source faces than to any target domain.
    let features = net.features(&fake).unwrap();
    let fd = |d: Domain| {
        frechet_distance(
            &net.features(&render_many(d, 1, 300, 0)).unwrap(),
            &features,
        )
    };
    let to_source = fd(Domain::Source);
    for d in Domain::TARGETS {
        assert!(fd(d) > to_source, "{d}: {} vs source {to_source}", fd(d));
    }
}

#[test]
fn genda_moves_samples_to_the_target_with_the_generator_frozen() {
    let net = FeatureNet::load(&alignscope::gan::features_dir()).unwrap();
    let source = Gan::load(&alignscope::gan::source_dir(), true).unwrap();
    let z = eval_latents(200);
    let before = share(&net, &source.sample(&z, 1.0).unwrap(), Domain::Sunglasses);
    let mut request = AdaptRequest::new(Method::Genda, Target::domain(Domain::Sunglasses));
    request.steps = 200;
    request.preview_every = 100;
    let mut previews = 0;
    let (adapted, outcome) = adapt(&request, &mut |s| {
        previews += s.preview.is_some() as usize;
        Ok(())
    })
    .unwrap();
    assert_eq!((outcome.steps, previews), (200, 2));
    let after = share(&net, &adapted.sample(&z, 1.0).unwrap(), Domain::Sunglasses);
    // 300 steps (the evaluation) take 16 % to 55 %.
    assert!(after > before + 0.15, "sunglasses {before} → {after}");
    // Only the adaptor moved: the generator's weights are the source's.
    let weights = |g: &Gan| {
        g.vars_under("g.")
            .iter()
            .map(|v| {
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(weights(&adapted.gan), weights(&source));
    let a = adapted.adaptor.as_ref().unwrap();
    let moved = (a
        .shift
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap())
        > 0.0;
    assert!(moved);
}

#[test]
fn freezed_keeps_the_lower_discriminator_layers_and_finetune_does_not() {
    let mut request = AdaptRequest::new(Method::Freezed, Target::domain(Domain::Baby));
    request.steps = 4;
    request.preview_every = 0;
    let source = Gan::load(&alignscope::gan::source_dir(), true).unwrap();
    let values = |g: &Gan, prefix: &str| -> Vec<Vec<f32>> {
        g.vars_under(prefix)
            .iter()
            .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    };
    let (frozen, _) = adapt(&request, &mut |_| Ok(())).unwrap();
    assert_eq!(values(&frozen.gan, "d.conv0."), values(&source, "d.conv0."));
    assert_eq!(
        values(&frozen.gan, "d.from_rgb."),
        values(&source, "d.from_rgb.")
    );
    assert_ne!(values(&frozen.gan, "d.conv2."), values(&source, "d.conv2."));
    assert_ne!(
        values(&frozen.gan, "g.block2."),
        values(&source, "g.block2.")
    );
    request.method = Method::Finetune;
    let (tuned, _) = adapt(&request, &mut |_| Ok(())).unwrap();
    assert_ne!(values(&tuned.gan, "d.conv0."), values(&source, "d.conv0."));
}

#[test]
fn cli_adapts_to_an_image_file_and_samples_the_result() {
    let runs = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A reference photo of the user's: a wide JPEG, cropped and resized by the lab.
    let photo = dir.path().join("photo.jpg");
    let face = alignscope::gan::faces::Face::sample(Domain::Sketch, 3, 0).render();
    let img = image::RgbImage::from_raw(SIZE as u32, SIZE as u32, face).unwrap();
    image::imageops::resize(&img, 120, 90, image::imageops::FilterType::Triangle)
        .save(&photo)
        .unwrap();
    let model = dir.path().join("adapted");
    let grid = dir.path().join("grid.png");
    let v = json_output(
        alignscope(runs.path())
            .args(["gan", "adapt", "--steps", "6", "--json", "--target"])
            .arg(&photo)
            .arg("--out")
            .arg(&model)
            .arg("--grid")
            .arg(&grid),
    );
    assert_eq!(v["method"], "genda");
    assert_eq!(v["target"], "photo");
    assert_eq!(v["steps"], 6);
    let g = image::open(&grid).unwrap();
    assert_eq!(
        (g.width(), g.height()),
        (2 + 8 * (96 + 2), 2 + 2 * (96 + 2))
    );
    let png = dir.path().join("samples.png");
    let v = json_output(
        alignscope(runs.path())
            .args([
                "gan",
                "sample",
                "--count",
                "4",
                "--columns",
                "2",
                "--json",
                "--model",
            ])
            .arg(&model)
            .arg("--out")
            .arg(&png),
    );
    assert_eq!(v["count"], 4);
    assert_eq!(image::open(&png).unwrap().width(), 2 + 2 * (96 + 2));
}

#[test]
fn broken_images_and_model_folders_are_named() {
    let runs = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n not really").unwrap();
    let err = failure_stderr(
        alignscope(runs.path())
            .args(["gan", "adapt", "--target"])
            .arg(&bad),
    );
    assert!(
        err.contains("broken.png") && err.contains("not a readable"),
        "{err}"
    );
    let tiny = dir.path().join("tiny.png");
    image::RgbImage::from_pixel(8, 8, image::Rgb([9, 9, 9]))
        .save(&tiny)
        .unwrap();
    let err = failure_stderr(
        alignscope(runs.path())
            .args(["gan", "adapt", "--target"])
            .arg(&tiny),
    );
    assert!(
        err.contains("tiny.png") && err.contains("too small"),
        "{err}"
    );
    let folder = dir.path().join("gan");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(
        alignscope::gan::source_dir().join("config.json"),
        folder.join("config.json"),
    )
    .unwrap();
    std::fs::write(folder.join("model.safetensors"), b"not tensors").unwrap();
    let err = failure_stderr(
        alignscope(runs.path())
            .args(["gan", "sample", "--model"])
            .arg(&folder),
    );
    assert!(err.contains("model.safetensors"), "{err}");
    std::fs::write(
        folder.join("config.json"),
        b"{\"kind\": \"caption-retriever\"}",
    )
    .unwrap();
    let err = failure_stderr(
        alignscope(runs.path())
            .args(["gan", "sample", "--model"])
            .arg(&folder),
    );
    assert!(err.contains("not a gan"), "{err}");
}
