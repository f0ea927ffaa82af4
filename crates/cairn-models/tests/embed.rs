//! The real all-MiniLM-L6-v2 against sentence-transformers' reference values.

use cairn_core::{cosine, Embedder};
use cairn_models::{BertEmbedder, Device, Pooling};

fn model() -> BertEmbedder {
    BertEmbedder::load(&cairn_testkit::minilm_dir(), Device::Cpu, 16).expect("model loads")
}

#[test]
fn minilm_matches_sentence_transformers_reference() {
    let m = model();
    assert_eq!(m.dim(), 384);
    assert_eq!(m.sentence_config().pooling, Pooling::Mean);
    assert!(m.sentence_config().normalize);
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
    let m = model();
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
            "padding changed the vector of {t:?}"
        );
    }
    // A query with no instruction prefix embeds like a passage.
    let q = m.embed_query("medium length text here").unwrap();
    assert!(cosine(&q, &batched[2]) > 0.9999);
}

#[test]
fn token_counting_uses_the_model_tokenizer() {
    let m = model();
    // [CLS] hello world [SEP]
    assert_eq!(m.count_tokens("hello world"), 4);
    assert!(
        m.count_tokens(&"word ".repeat(1000)) > 1000,
        "counting must not truncate"
    );
}
