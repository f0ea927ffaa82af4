//! The cross-encoder critic on ONNX Runtime. No cross-encoder weights can be
//! fetched here, so each test writes a small BERT with the layout of
//! cross-encoder/ms-marco-MiniLM-L-6-v2 (`bert.`-prefixed encoder, pooler,
//! `classifier`; `BertForSequenceClassification` config) and deterministic
//! pseudo-random weights, with the real all-MiniLM-L6-v2 tokenizer, and
//! checks the graph Cairn writes from it against a forward pass written out
//! plainly below.
#![cfg(feature = "ort")]

use cairn_core::{Calibration, Critic, Judgement};
use cairn_models::onnx_export::{export_bert, export_bert_classifier};
use cairn_models::{CrossEncoder, CrossEncoderCritic, Device, OnnxEmbedder, OnnxOptions};
use std::path::Path;
use tokenizers::Tokenizer;

use cairn_testkit::cross_encoder::*;

fn tokenizer() -> Tokenizer {
    let mut t = Tokenizer::from_file(cairn_testkit::minilm_dir().join("tokenizer.json")).unwrap();
    t.with_padding(None);
    t.with_truncation(None).unwrap();
    t
}

fn opts(batch_size: usize) -> OnnxOptions {
    OnnxOptions {
        onnx_file: None,
        dylib: Some(cairn_testkit::onnxruntime_lib()),
        threads: 1,
        batch_size,
    }
}

// ------------------------------------------------ the reference forward pass

fn t<'a>(w: &'a Weights, name: &str) -> &'a [f32] {
    &w.get(name).unwrap_or_else(|| panic!("no {name}")).1
}

/// `W x + b` for a PyTorch Linear (`[out, in]` weight).
fn linear(w: &Weights, name: &str, x: &[f64]) -> Vec<f64> {
    let (shape, weight) = &w[&format!("{name}.weight")];
    let bias = t(w, &format!("{name}.bias"));
    let (o, i) = (shape[0], shape[1]);
    assert_eq!(x.len(), i);
    (0..o)
        .map(|r| bias[r] as f64 + (0..i).map(|c| weight[r * i + c] as f64 * x[c]).sum::<f64>())
        .collect()
}

fn layer_norm(w: &Weights, name: &str, x: &[f64]) -> Vec<f64> {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let (g, b) = (
        t(w, &format!("{name}.weight")),
        t(w, &format!("{name}.bias")),
    );
    x.iter()
        .enumerate()
        .map(|(i, v)| (v - mean) / (var + EPS).sqrt() * g[i] as f64 + b[i] as f64)
        .collect()
}

/// erf by Abramowitz & Stegun 7.1.26 (error under 1.5e-7).
fn erf(x: f64) -> f64 {
    let s = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    s * y
}

/// BERT's final hidden states for one input; `mask[k] == 0` keeps token k
/// out of every token's attention.
fn encoder(w: &Weights, ids: &[u32], types: &[u32], mask: &[u32]) -> Vec<Vec<f64>> {
    let h = HIDDEN;
    let hd = h / HEADS;
    let row = |name: &str, r: usize| -> Vec<f64> {
        t(w, name)[r * h..(r + 1) * h]
            .iter()
            .map(|&v| v as f64)
            .collect()
    };
    let mut x: Vec<Vec<f64>> = (0..ids.len())
        .map(|p| {
            let e: Vec<f64> = (0..h)
                .map(|i| {
                    row("embeddings.word_embeddings.weight", ids[p] as usize)[i]
                        + row("embeddings.position_embeddings.weight", p)[i]
                        + row("embeddings.token_type_embeddings.weight", types[p] as usize)[i]
                })
                .collect();
            layer_norm(w, "embeddings.LayerNorm", &e)
        })
        .collect();
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}");
        let proj = |m: &str, x: &[Vec<f64>]| -> Vec<Vec<f64>> {
            x.iter()
                .map(|v| linear(w, &format!("{p}.attention.self.{m}"), v))
                .collect()
        };
        let (q, k, v) = (proj("query", &x), proj("key", &x), proj("value", &x));
        let n = x.len();
        let mut ctx = vec![vec![0f64; h]; n];
        for head in 0..HEADS {
            let r = head * hd..(head + 1) * hd;
            for i in 0..n {
                let scores: Vec<f64> = (0..n)
                    .map(|j| {
                        if mask[j] == 0 {
                            f64::NEG_INFINITY
                        } else {
                            q[i][r.clone()]
                                .iter()
                                .zip(&k[j][r.clone()])
                                .map(|(a, b)| a * b)
                                .sum::<f64>()
                                / (hd as f64).sqrt()
                        }
                    })
                    .collect();
                let top = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - top).exp()).collect();
                let z: f64 = e.iter().sum();
                for j in 0..n {
                    for d in r.clone() {
                        ctx[i][d] += e[j] / z * v[j][d];
                    }
                }
            }
        }
        x = x
            .iter()
            .zip(&ctx)
            .map(|(xi, c)| {
                let a = linear(w, &format!("{p}.attention.output.dense"), c);
                let s: Vec<f64> = a.iter().zip(xi).map(|(a, b)| a + b).collect();
                let y = layer_norm(w, &format!("{p}.attention.output.LayerNorm"), &s);
                let f: Vec<f64> = linear(w, &format!("{p}.intermediate.dense"), &y)
                    .into_iter()
                    .map(|u| 0.5 * u * (1.0 + erf(u / std::f64::consts::SQRT_2)))
                    .collect();
                let o = linear(w, &format!("{p}.output.dense"), &f);
                let s: Vec<f64> = o.iter().zip(&y).map(|(a, b)| a + b).collect();
                layer_norm(w, &format!("{p}.output.LayerNorm"), &s)
            })
            .collect();
    }
    x
}

/// The classification head on the first token: pooler (Linear + tanh),
/// then the classifier.
fn reference_logits(w: &Weights, ids: &[u32], types: &[u32]) -> Vec<f64> {
    let x = encoder(w, ids, types, &vec![1; ids.len()]);
    let pooled: Vec<f64> = linear(w, "pooler.dense", &x[0])
        .into_iter()
        .map(f64::tanh)
        .collect();
    linear(w, "classifier", &pooled)
}

/// `[CLS] a [SEP] b [SEP]`, types 0 then 1, `b` cut to fit `max_len`: built
/// here from the tokenizer's word pieces, not by its pair template.
fn pair_ids(a: &str, b: &str, max_len: usize) -> (Vec<u32>, Vec<u32>) {
    let tok = tokenizer();
    let cls = tok.token_to_id("[CLS]").unwrap();
    let sep = tok.token_to_id("[SEP]").unwrap();
    let a = tok.encode(a, false).unwrap().get_ids().to_vec();
    let mut b = tok.encode(b, false).unwrap().get_ids().to_vec();
    b.truncate(max_len - a.len() - 3);
    let mut ids = vec![cls];
    ids.extend(&a);
    ids.push(sep);
    let first = ids.len();
    ids.extend(&b);
    ids.push(sep);
    let types = (0..ids.len()).map(|i| u32::from(i >= first)).collect();
    (ids, types)
}

fn long_passage() -> String {
    "The global interpreter lock is the mechanism used by the CPython interpreter to assure that \
     only one thread executes Python bytecode at a time. This simplifies the CPython implementation \
     by making the object model, including critical built-in types such as dict, implicitly safe \
     against concurrent access. Locking the entire interpreter makes it easier for the interpreter \
     to be multi-threaded, at the expense of much of the parallelism afforded by multi-processor \
     machines. However, some extension modules, either standard or third-party, are designed so as \
     to release the GIL when doing computationally intensive tasks such as compression or hashing."
        .into()
}

fn pairs() -> Vec<(String, String)> {
    [
        ("how do I create a virtual environment?", "The venv module creates lightweight virtual environments, each with its own site directories."),
        ("short", "x"),
        ("what does the GIL protect?", long_passage().as_str()),
        ("rotate the WAL", "Checkpoints copy the write-ahead log into the database file."),
        // A question over half the window: only the passage is cut (cutting
        // the longer first would cut the question too).
        ("in the CPython implementation, why is it said that the global interpreter lock makes \
          the object model and the built-in types such as dict implicitly safe against concurrent \
          access from threads?", long_passage().as_str()),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

fn refs(p: &[(String, String)]) -> Vec<(&str, &str)> {
    p.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (*g as f64 - w).abs() < 1e-4,
            "{what}: onnx {got:?} vs reference {want:?}"
        );
    }
}

// ------------------------------------------------------------------ tests

#[test]
fn one_label_logits_match_the_reference_forward_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, w) = write_model(tmp.path(), "tiny-ce", Some(1), true);
    let m = CrossEncoder::load(&dir, &opts(8)).unwrap();
    assert_eq!(
        m.onnx_file(),
        dir.join("onnx/model.onnx"),
        "written beside the weights"
    );
    assert_eq!((m.num_labels(), m.max_tokens()), (1, MAX_POS));
    let p = pairs();
    let logits = m.logits(&refs(&p)).unwrap();
    let scores = m.scores(&refs(&p)).unwrap();
    let mut lengths = vec![];
    for (i, (a, b)) in p.iter().enumerate() {
        let (ids, types) = pair_ids(a, b, MAX_POS);
        lengths.push(ids.len());
        let want = reference_logits(&w, &ids, &types);
        assert_close(&logits[i], &want, &format!("pair {i}"));
        assert_eq!(scores[i], logits[i][0], "one label: the score is the logit");
    }
    assert_eq!(lengths[2], MAX_POS, "the long passage is cut to the window");
    assert_eq!(lengths[4], MAX_POS, "{lengths:?}");
    let question = tokenizer()
        .encode(p[4].0.as_str(), false)
        .unwrap()
        .get_ids()
        .len();
    assert!(
        question > MAX_POS / 2,
        "{question} tokens: more than half the window"
    );
    assert!(
        lengths[..4]
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
            == 4,
        "{lengths:?}"
    );
    // Distinct pairs score distinctly: the weights are not degenerate.
    let spread = scores.iter().cloned().fold(f32::MIN, f32::max)
        - scores.iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 0.05, "{scores:?}");
    // Order matters: (a, b) is not (b, a).
    let swapped = m.scores(&[(p[0].1.as_str(), p[0].0.as_str())]).unwrap()[0];
    assert!((swapped - scores[0]).abs() > 1e-4);
    assert!(m.scores(&[]).unwrap().is_empty());
}

#[test]
fn batched_scores_equal_one_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = write_model(tmp.path(), "tiny-ce", Some(1), true);
    let mut p = pairs();
    // A text longer than the window leaves no room for the passage: the
    // longer of the two is cut instead, and the pair still scores.
    p.push(("why ".repeat(100), "because".into()));
    p.push(("".into(), "".into()));
    let batched = CrossEncoder::load(&dir, &opts(8)).unwrap();
    let pairs_of_two = CrossEncoder::load(&dir, &opts(2)).unwrap();
    let all = batched.scores(&refs(&p)).unwrap();
    let twos = pairs_of_two.scores(&refs(&p)).unwrap();
    assert_eq!(all.len(), p.len());
    for (i, (a, b)) in p.iter().enumerate() {
        let one = batched.scores(&[(a.as_str(), b.as_str())]).unwrap()[0];
        assert!(one.is_finite());
        assert!(
            (one - all[i]).abs() < 1e-5,
            "pair {i}: alone {one}, in a batch {}",
            all[i]
        );
        assert!(
            (one - twos[i]).abs() < 1e-5,
            "pair {i}: alone {one}, in twos {}",
            twos[i]
        );
    }
}

#[test]
fn two_labels_score_the_log_odds() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, w) = write_model(tmp.path(), "tiny-ce2", Some(2), true);
    let m = CrossEncoder::load(&dir, &opts(8)).unwrap();
    assert_eq!(m.num_labels(), 2);
    let p = pairs();
    let logits = m.logits(&refs(&p)).unwrap();
    let scores = m.scores(&refs(&p)).unwrap();
    for (i, (a, b)) in p.iter().enumerate() {
        let (ids, types) = pair_ids(a, b, MAX_POS);
        assert_close(
            &logits[i],
            &reference_logits(&w, &ids, &types),
            &format!("pair {i}"),
        );
        assert_eq!(scores[i], logits[i][1] - logits[i][0]);
        assert!(
            (logits[i][1] - logits[i][0]).abs() > 1e-6,
            "two different logits"
        );
    }
}

#[test]
fn an_existing_logits_graph_is_used_and_the_export_handles_both_layouts() {
    let tmp = tempfile::tempdir().unwrap();
    // Unprefixed tensor names, and a graph already at model.onnx, written by
    // the generic export (which sees the classifier), with no weights left.
    let (dir, w) = write_model(tmp.path(), "plain-ce", Some(1), false);
    export_bert(&dir, &dir.join("model.onnx")).unwrap();
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let m = CrossEncoder::load(&dir, &opts(8)).unwrap();
    assert_eq!(m.onnx_file(), dir.join("model.onnx"));
    assert!(!dir.join("onnx").exists(), "nothing written");
    let p = pairs();
    let logits = m.logits(&refs(&p)).unwrap();
    for (i, (a, b)) in p.iter().enumerate() {
        let (ids, types) = pair_ids(a, b, MAX_POS);
        assert_close(
            &logits[i],
            &reference_logits(&w, &ids, &types),
            &format!("pair {i}"),
        );
    }

    // Sentence encoders keep their `last_hidden_state` graph, with or
    // without the `bert.` prefix: the embedder's mean-pooled vectors are the
    // reference's.
    let text = "How do I create a virtual environment?";
    let tok = tokenizer();
    let enc = tok.encode(text, true).unwrap();
    let ids = enc.get_ids();
    let h = encoder(&w_enc(), ids, &vec![0; ids.len()], &vec![1; ids.len()]);
    let mut mean: Vec<f64> = (0..HIDDEN)
        .map(|d| h.iter().map(|r| r[d]).sum::<f64>() / h.len() as f64)
        .collect();
    let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
    mean.iter_mut().for_each(|v| *v /= norm);
    for prefix in [false, true] {
        let d = tmp.path().join(format!("enc-{prefix}"));
        std::fs::create_dir_all(&d).unwrap();
        let vocab = tok.get_vocab_size(true);
        write_safetensors(&d.join("model.safetensors"), &w_enc(), prefix);
        std::fs::write(d.join("config.json"), config(vocab, None).to_string()).unwrap();
        std::fs::copy(
            cairn_testkit::minilm_dir().join("tokenizer.json"),
            d.join("tokenizer.json"),
        )
        .unwrap();
        let graph = cairn_models::onnx_export::ensure_graph(&d).unwrap();
        let e = OnnxEmbedder::load(
            &d,
            Device::Cpu,
            &OnnxOptions {
                onnx_file: Some(graph),
                ..opts(8)
            },
        )
        .unwrap();
        let v = e.embed(&[text.to_string()]).unwrap().remove(0);
        assert_close(&v, &mean, &format!("encoder, prefix {prefix}"));
        // The classifier export of an encoder is refused.
        let err = export_bert_classifier(&d, &d.join("x.onnx"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("not a cross-encoder"),
            "{err}"
        );
    }
}

/// The encoder-only weights the embedder test uses.
fn w_enc() -> Weights {
    weights(tokenizer().get_vocab_size(true), None, 7)
}

fn load_err(dir: &Path) -> String {
    CrossEncoder::load(dir, &opts(8)).unwrap_err().to_string()
}

#[test]
fn bad_layouts_are_named_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let base = write_model(tmp.path(), "good", Some(1), true).0;
    let vocab = tokenizer().get_vocab_size(true);
    let variant = |name: &str, cfg: serde_json::Value| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["model.safetensors", "tokenizer.json"] {
            std::fs::copy(base.join(f), d.join(f)).unwrap();
        }
        std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
        d
    };

    let missing = tmp.path().join("nowhere");
    let e = load_err(&missing);
    assert!(
        e.contains("nowhere") && e.contains("no such model directory"),
        "{e}"
    );

    let d = tmp.path().join("no-config");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(base.join("tokenizer.json"), d.join("tokenizer.json")).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("no-config/config.json") && e.contains("no config.json"),
        "{e}"
    );

    let mut c = config(vocab, Some(1));
    c.as_object_mut().unwrap().remove("id2label");
    c.as_object_mut().unwrap().remove("architectures");
    let e = load_err(&variant("no-labels", c));
    assert!(
        e.contains("no-labels/config.json")
            && e.contains("not a sequence-classification model")
            && e.contains("num_labels must be 1 or 2"),
        "{e}"
    );

    let e = load_err(&variant("three", config(vocab, Some(3))));
    assert!(
        e.contains("three/config.json")
            && e.contains("num_labels is 3")
            && e.contains("num_labels must be 1 or 2"),
        "{e}"
    );

    // The real sentence-embedding model, given as a critic.
    let e = load_err(&cairn_testkit::minilm_dir());
    assert!(
        e.contains("all-MiniLM-L6-v2/config.json")
            && e.contains("sentence-embedding model")
            && e.contains("not a cross-encoder"),
        "{e}"
    );
    // A config that claims a classifier over weights without one.
    let d = tmp.path().join("headless");
    std::fs::create_dir_all(&d).unwrap();
    write_safetensors(&d.join("model.safetensors"), &w_enc(), true);
    std::fs::write(d.join("config.json"), config(vocab, Some(1)).to_string()).unwrap();
    std::fs::copy(base.join("tokenizer.json"), d.join("tokenizer.json")).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("headless/model.safetensors")
            && e.contains("no classifier weights")
            && e.contains("sentence-embedding model")
            && e.contains("not a cross-encoder"),
        "{e}"
    );
    assert!(!d.join("onnx").join("model.onnx").exists());

    let d = variant("no-tokenizer", config(vocab, Some(1)));
    std::fs::remove_file(d.join("tokenizer.json")).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("no-tokenizer/tokenizer.json") && e.contains("no tokenizer.json"),
        "{e}"
    );

    let mut c = config(vocab, Some(1));
    c["hidden_act"] = "relu".into();
    let e = load_err(&variant("relu", c));
    assert!(
        e.contains("relu/config.json")
            && e.contains("hidden_act `relu` is not supported")
            && e.contains("onnx/model.onnx"),
        "{e}"
    );

    let mut c = config(vocab, Some(1));
    c["architectures"] = serde_json::json!(["XLMRobertaForSequenceClassification"]);
    let e = load_err(&variant("xlmr", c));
    assert!(
        e.contains("XLMRobertaForSequenceClassification")
            && e.contains("only BertForSequenceClassification"),
        "{e}"
    );

    // A sentence encoder's graph in a cross-encoder's directory.
    let d = variant("encoder-graph", config(vocab, Some(1)));
    let enc = tmp.path().join("enc");
    std::fs::create_dir_all(&enc).unwrap();
    write_safetensors(&enc.join("model.safetensors"), &w_enc(), false);
    std::fs::write(enc.join("config.json"), config(vocab, None).to_string()).unwrap();
    export_bert(&enc, &d.join("onnx/model.onnx")).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("encoder-graph/onnx/model.onnx")
            && e.contains("not `logits`")
            && e.contains("embedding model"),
        "{e}"
    );
}

#[test]
fn the_critic_applies_its_calibrations() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = write_model(tmp.path(), "tiny-ce", Some(1), true);
    let m = CrossEncoder::load(&dir, &opts(8)).unwrap();
    let p = pairs();
    let want = m.scores(&refs(&p)).unwrap();
    let relevance = Calibration { a: 0.7, b: -0.4 };
    let support = Calibration { a: -1.3, b: 0.9 };
    let critic = CrossEncoderCritic::new(m, relevance, support);
    let critic: &dyn Critic = &critic;
    assert_eq!(critic.name(), "cross-encoder");
    assert_eq!(critic.calibration(Judgement::Relevance), relevance);
    assert_eq!(critic.calibration(Judgement::Support), support);
    for (j, c) in [
        (Judgement::Relevance, relevance),
        (Judgement::Support, support),
    ] {
        let raw = critic.raw(j, &refs(&p)).unwrap();
        assert_eq!(raw, want, "{j}: the raw score is the cross-encoder's");
        let probs = critic.score(j, &refs(&p)).unwrap();
        for (r, s) in raw.iter().zip(&probs) {
            let sigmoid = 1.0 / (1.0 + (-(c.a as f64 * *r as f64 + c.b as f64)).exp());
            assert!(
                (*s as f64 - sigmoid).abs() < 1e-6,
                "{j}: raw {r} -> {s}, want {sigmoid}"
            );
        }
    }
    let rel = critic.score(Judgement::Relevance, &refs(&p)).unwrap();
    let sup = critic.score(Judgement::Support, &refs(&p)).unwrap();
    assert_ne!(rel, sup, "each judgement has its own calibration");
}
