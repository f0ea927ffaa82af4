//! The real all-MiniLM-L6-v2 against sentence-transformers' reference
//! values, on every backend this build has: ONNX Runtime running the fp32
//! graph that Cairn writes from the safetensors (`ort`, the default), and
//! candle (`candle`; `scripts/test.sh` runs this crate's tests with it too).
#![cfg(any(feature = "ort", feature = "candle"))]

use cairn_core::cosine;
use cairn_models::{Device, SentenceEncoder};

/// The fp32 all-MiniLM-L6-v2 on each compiled backend.
fn models() -> Vec<Box<dyn SentenceEncoder>> {
    let dir = cairn_testkit::minilm_dir();
    let mut v: Vec<Box<dyn SentenceEncoder>> = vec![];
    #[cfg(feature = "ort")]
    {
        let opts = cairn_models::OnnxOptions {
            onnx_file: Some(cairn_models::onnx_export::ensure_graph(&dir).unwrap()),
            dylib: Some(cairn_testkit::onnxruntime_lib()),
            threads: 2,
            batch_size: 16,
        };
        v.push(Box::new(
            cairn_models::OnnxEmbedder::load(&dir, Device::Cpu, &opts).expect("model loads"),
        ));
    }
    #[cfg(feature = "candle")]
    v.push(Box::new(
        cairn_models::BertEmbedder::load(&dir, Device::Cpu, 16).expect("model loads"),
    ));
    v
}

#[test]
fn minilm_matches_sentence_transformers_reference() {
    for m in models() {
        reference(m.as_ref());
    }
}

fn reference(m: &dyn SentenceEncoder) {
    assert_eq!(m.dim(), 384);
    assert_eq!(
        m.model_id(),
        "all-MiniLM-L6-v2|mean|norm",
        "{}",
        m.backend()
    );
    assert_eq!(m.max_tokens(), 256);
    let v = m
        .embed_passages(&[
            "A man is eating food.".to_string(),
            "A man is eating a piece of bread.".to_string(),
            "The new movie is awesome.".to_string(),
            "Interest rates at the central bank rose by a quarter point.".to_string(),
        ])
        .unwrap();
    // Unit length.
    for x in &v {
        let n: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-4, "norm {n}");
    }
    let related = cosine(&v[0], &v[1]);
    assert!(
        (related - 0.755).abs() < 0.01,
        "cos(eating food, eating bread) = {related}, reference 0.755"
    );
    let unrelated = cosine(&v[0], &v[3]);
    assert!(unrelated.abs() < 0.1, "unrelated pair: {unrelated}");
    let movie = cosine(&v[0], &v[2]);
    assert!(movie < 0.2, "food vs movie: {movie}");
}

#[test]
fn batching_and_padding_do_not_change_vectors() {
    for m in models() {
        batching(m.as_ref());
    }
}

fn batching(m: &dyn SentenceEncoder) {
    let texts: Vec<String> = vec![
        "short".into(),
        "a somewhat longer sentence about the write-ahead log and checkpoints".into(),
        "medium length text here".into(),
        "x ".repeat(300), // longer than the window: truncated, not an error
    ];
    let batched = m.embed_passages(&texts).unwrap();
    for (t, b) in texts.iter().zip(&batched) {
        let single = m.embed_passages(std::slice::from_ref(t)).unwrap().remove(0);
        assert!(
            cosine(&single, b) > 0.9999,
            "{}: padding changed the vector of {t:?}",
            m.backend()
        );
    }
    // A query with no instruction prefix embeds like a passage.
    let q = m.embed_query("medium length text here").unwrap();
    assert!(cosine(&q, &batched[2]) > 0.9999);
}

#[test]
fn token_counting_uses_the_model_tokenizer() {
    let models = models();
    let m = models[0].as_ref();
    // [CLS] hello world [SEP]
    assert_eq!(m.count_tokens("hello world"), 4);
    assert!(
        m.count_tokens(&"word ".repeat(1000)) > 1000,
        "counting must not truncate"
    );
}
