//! The ONNX Runtime backend on the real int8 all-MiniLM-L6-v2 graph, against
//! the candle backend on the fp32 weights of the same model.
#![cfg(feature = "ort")]

use cairn_core::{cosine, Embedder};
use cairn_models::{BertEmbedder, Device, OnnxEmbedder, OnnxOptions, SentenceEncoder};

fn opts() -> OnnxOptions {
    OnnxOptions {
        onnx_file: None,
        dylib: Some(cairn_testkit::onnxruntime_lib()),
        threads: 2,
        batch_size: 8,
    }
}

fn int8() -> OnnxEmbedder {
    OnnxEmbedder::load(&cairn_testkit::minilm_int8_dir(), Device::Cpu, &opts()).expect("loads")
}

fn texts() -> Vec<String> {
    [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The new movie is awesome.",
        "Interest rates at the central bank rose by a quarter point.",
        "How do I create a virtual environment in Python?",
        "The venv module creates lightweight virtual environments, each with its own site directories.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn int8_graph_agrees_with_the_fp32_model() {
    let onnx = int8();
    assert_eq!(onnx.dim(), 384);
    assert_eq!(onnx.max_tokens(), 256);
    assert_eq!(SentenceEncoder::backend(&onnx), "onnx");
    assert!(
        onnx.model_id().ends_with("|mean|norm"),
        "{}",
        onnx.model_id()
    );
    let fp32 = BertEmbedder::load(&cairn_testkit::minilm_dir(), Device::Cpu, 8).unwrap();
    let a = onnx.embed_passages(&texts()).unwrap();
    let b = fp32.embed_passages(&texts()).unwrap();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let n: f32 = x.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-4, "norm {n}");
        let c = cosine(x, y);
        // int8 quantisation moves vectors a little, never far
        assert!(c > 0.95, "text {i}: int8 vs fp32 cosine {c}");
    }
    // The similarity structure is the model's: related pairs stay related.
    let related = cosine(&a[0], &a[1]);
    assert!((related - 0.755).abs() < 0.05, "eating pair: {related}");
    assert!(cosine(&a[0], &a[3]).abs() < 0.15);
    assert!(cosine(&a[4], &a[5]) > cosine(&a[4], &a[2]) + 0.3);
}

#[test]
fn batching_does_not_change_vectors_and_queries_match_passages() {
    let m = int8();
    let mut t = texts();
    t.push("x ".repeat(400)); // longer than the window: truncated
    let batched = m.embed_passages(&t).unwrap();
    for (s, v) in t.iter().zip(&batched) {
        let single = m.embed_passages(std::slice::from_ref(s)).unwrap().remove(0);
        assert!(cosine(&single, v) > 0.9999, "padding changed {s:?}");
    }
    let q = m.embed_query(&t[4]).unwrap();
    assert!(cosine(&q, &batched[4]) > 0.9999);
    assert!(m.embed_passages(&[]).unwrap().is_empty());
}

#[test]
fn bad_inputs_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    // no graph in a directory
    std::fs::copy(
        cairn_testkit::minilm_dir().join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let e = OnnxEmbedder::load(dir.path(), Device::Cpu, &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no ONNX graph"), "{e}");
    // a file that is not an ONNX graph
    let fake = dir.path().join("model.onnx");
    std::fs::write(&fake, b"this is not protobuf").unwrap();
    std::fs::copy(
        cairn_testkit::minilm_dir().join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let e = OnnxEmbedder::load(dir.path(), Device::Cpu, &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.onnx"), "{e}");
    // GPUs are the candle backend's; Core ML needs its feature
    let e = OnnxEmbedder::load(&cairn_testkit::minilm_int8_dir(), Device::Cuda(0), &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("candle"), "{e}");
    if !cfg!(feature = "coreml") {
        let e = OnnxEmbedder::load(&cairn_testkit::minilm_int8_dir(), Device::CoreMl, &opts())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--features coreml"), "{e}");
    }
}
