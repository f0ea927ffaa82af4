//! The ONNX Runtime backend: the fp32 graph Cairn writes from the
//! safetensors (the default embedder) against candle, the old default, on
//! the same weights (with `--features candle`, which `scripts/test.sh` runs);
//! and the real int8 all-MiniLM-L6-v2 graph against the fp32 one.
#![cfg(feature = "ort")]

use cairn_core::{cosine, Embedder};
use cairn_models::{Device, OnnxEmbedder, OnnxOptions, SentenceEncoder};

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

/// The fp32 graph written by `cairn_models::onnx_export` (by `cairn models
/// fetch`, or here if it is missing).
fn fp32() -> OnnxEmbedder {
    let dir = cairn_testkit::minilm_dir();
    let graph = cairn_models::onnx_export::ensure_graph(&dir).unwrap();
    let o = OnnxOptions {
        onnx_file: Some(graph),
        ..opts()
    };
    OnnxEmbedder::load(&dir, Device::Cpu, &o).expect("loads")
}

/// Passages of real documentation of every length up to past the window
/// (256 tokens), from the corpus the tests use.
fn real_passages() -> Vec<String> {
    let page = cairn_testkit::python_docs().join("tutorial/venv.html");
    let html = std::fs::read_to_string(&page).unwrap();
    let text: String = html
        .split('<')
        .map(|s| s.split_once('>').map(|(_, t)| t).unwrap_or(s))
        .collect::<Vec<_>>()
        .join(" ");
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out = vec![];
    let mut at = 0;
    for len in [3, 10, 25, 60, 120, 180, 240, 400] {
        if at + len > words.len() {
            break;
        }
        out.push(words[at..at + len].join(" "));
        at += len;
    }
    assert!(out.len() >= 6, "{} has enough words", page.display());
    out.extend(texts());
    out
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

/// A collection made with candle (the default before the ONNX Runtime
/// backend) keeps working: the fp32 graph gives the same vectors, and the
/// same model id, so the catalog accepts the new backend.
#[cfg(feature = "candle")]
#[test]
fn the_written_fp32_graph_gives_candles_vectors() {
    let onnx = fp32();
    let candle =
        cairn_models::BertEmbedder::load(&cairn_testkit::minilm_dir(), Device::Cpu, 8).unwrap();
    assert_eq!(onnx.model_id(), candle.model_id());
    let t = real_passages();
    let a = onnx.embed_passages(&t).unwrap();
    let b = candle.embed_passages(&t).unwrap();
    let mut worst = 1f32;
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let c = cosine(x, y);
        worst = worst.min(c);
        assert!(
            c >= 0.9999,
            "passage {i} ({} chars): cosine {c}",
            t[i].len()
        );
    }
    eprintln!(
        "{} passages: min cosine onnx fp32 vs candle {worst:.6}",
        t.len()
    );
    let q = "How do I create a virtual environment?";
    assert!(
        cosine(
            &onnx.embed_query(q).unwrap(),
            &candle.embed_query(q).unwrap()
        ) >= 0.9999
    );
}

#[test]
fn the_written_fp32_graph_is_the_default_models_id_and_agrees_with_int8() {
    let f = fp32();
    assert_eq!(f.model_id(), "all-MiniLM-L6-v2|mean|norm");
    assert_eq!(SentenceEncoder::backend(&f), "onnx");
    let q = int8();
    assert_eq!(q.dim(), 384);
    assert_eq!(q.max_tokens(), 256);
    assert!(q.model_id().ends_with("|mean|norm"), "{}", q.model_id());
    assert_ne!(q.model_id(), f.model_id(), "int8 is another model");
    let t = real_passages();
    let a = q.embed_passages(&t).unwrap();
    let b = f.embed_passages(&t).unwrap();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        for v in [x, y] {
            let n: f32 = v.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((n - 1.0).abs() < 1e-4, "norm {n}");
        }
        let c = cosine(x, y);
        // int8 quantisation moves vectors a little, never far
        assert!(c > 0.95, "passage {i}: int8 vs fp32 cosine {c}");
    }
    // The similarity structure is the model's: related pairs stay related.
    let n = t.len() - texts().len();
    let related = cosine(&a[n], &a[n + 1]);
    assert!((related - 0.755).abs() < 0.05, "eating pair: {related}");
    assert!(cosine(&a[n], &a[n + 3]).abs() < 0.15);
    assert!(cosine(&a[n + 4], &a[n + 5]) > cosine(&a[n + 4], &a[n + 2]) + 0.3);
}

#[test]
fn the_graph_is_written_once_atomically_and_a_bad_model_is_named() {
    let src = cairn_testkit::minilm_dir();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("all-MiniLM-L6-v2");
    std::fs::create_dir_all(&d).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(src.join(f), d.join(f)).unwrap();
    }
    let graph = cairn_models::onnx_export::ensure_graph(&d).unwrap();
    assert_eq!(graph, d.join("onnx/model.onnx"));
    let written = std::fs::metadata(&graph).unwrap();
    assert!(
        written.len() > 80_000_000,
        "fp32 weights: {}",
        written.len()
    );
    assert!(!d.join("onnx/model.onnx.part").exists());
    // Present: not written again.
    assert_eq!(cairn_models::onnx_export::ensure_graph(&d).unwrap(), graph);
    assert_eq!(
        std::fs::metadata(&graph).unwrap().modified().unwrap(),
        written.modified().unwrap()
    );
    // It loads with no explicit file and embeds like the installed one.
    let o = OnnxEmbedder::load(&d, Device::Cpu, &opts()).unwrap();
    let v = o.embed_query("virtual environments").unwrap();
    let w = fp32().embed_query("virtual environments").unwrap();
    assert!(cosine(&v, &w) > 0.99999);
    // A config that is not BERT's, and weights that do not fit it, are named.
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(src.join("model.safetensors"), bad.join("model.safetensors")).unwrap();
    std::fs::write(bad.join("config.json"), r#"{"hidden_size": 384}"#).unwrap();
    let e = cairn_models::onnx_export::ensure_graph(&bad)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("config.json") && e.contains("not a BERT config"),
        "{e}"
    );
    let cfg = std::fs::read_to_string(src.join("config.json"))
        .unwrap()
        .replace("\"hidden_size\": 384", "\"hidden_size\": 768");
    std::fs::write(bad.join("config.json"), cfg).unwrap();
    let e = cairn_models::onnx_export::ensure_graph(&bad)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("shape"),
        "{e}"
    );
    assert!(!bad.join("onnx/model.onnx").exists());
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = cairn_models::onnx_export::ensure_graph(&empty)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no model.safetensors"), "{e}");
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

/// A lowered caller (a server's background ingestion) embeds in a session
/// of its own, so a query never waits behind its batch, with the same
/// vectors; callers at normal priority keep the one loaded session.
#[cfg(target_os = "linux")]
#[test]
fn background_callers_get_a_session_of_their_own_and_the_same_vectors() {
    use cairn_core::priority::{current_nice, lower_current_thread};
    assert!(
        current_nice() < 19,
        "the tests run at the lowest priority already, so no thread can be lowered"
    );
    let m = std::sync::Arc::new(int8());
    let t = texts();
    let foreground = m.embed_passages(&t).unwrap();
    let q = m.embed_query(&t[0]).unwrap();
    assert!(
        !m.has_background_session(),
        "normal callers share one session"
    );
    let (m2, t2) = (m.clone(), t.clone());
    let background = std::thread::spawn(move || {
        assert!(lower_current_thread(current_nice() + 5).unwrap());
        m2.embed_passages(&t2).unwrap()
    })
    .join()
    .unwrap();
    assert!(m.has_background_session());
    for (a, b) in foreground.iter().zip(&background) {
        assert!(cosine(a, b) > 0.9999);
    }
    // The foreground session still answers, the same as before.
    assert!(cosine(&m.embed_query(&t[0]).unwrap(), &q) > 0.9999);
}

/// Late interaction's token vectors: one unit row per token the model
/// reads, `[CLS]`/`[SEP]` left out, cut where asked, the same in one padded
/// forward pass as alone, and `embed` unchanged beside them.
#[test]
fn token_vectors_are_unit_rows_without_special_tokens_cut_where_asked() {
    let m = fp32();
    let texts = real_passages();
    let before = m.embed(&texts).unwrap();
    let all = m.embed_tokens(&texts, 256).unwrap();
    assert_eq!(all.len(), texts.len());
    for (t, v) in texts.iter().zip(&all) {
        // count_tokens counts [CLS] and [SEP]; the window is 256.
        let n = m.count_tokens(t).min(256);
        assert_eq!(v.rows(), n - 2, "{t:?}");
        assert_eq!(v.dim, m.dim());
        for i in 0..v.rows() {
            let norm: f32 = v.row(i).iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "row {i}: {norm}");
        }
    }
    // Padding to the longest text changes no text's vectors.
    for (i, t) in texts.iter().enumerate() {
        let alone = m.embed_tokens(std::slice::from_ref(t), 256).unwrap();
        let d = alone[0]
            .data
            .iter()
            .zip(&all[i].data)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-3, "text {i}: {d}");
    }
    // Cut at 16 tokens, special tokens counted: at most 14 rows.
    let short = m.embed_tokens(&texts, 16).unwrap();
    for (t, v) in texts.iter().zip(&short) {
        assert_eq!(v.rows(), m.count_tokens(t).min(16) - 2, "{t:?}");
    }
    // Past the window: the window.
    let long = m.embed_tokens(&texts, 10_000).unwrap();
    assert_eq!(long, all);
    assert_eq!(m.embed(&texts).unwrap(), before);
}
