//! The cross-encoder trainer on the real all-MiniLM-L6-v2: every weight
//! moves, training fits, and what it saves ONNX Runtime scores the same.

use cairn_core::NoProgress;
use cairn_train::{
    bce_with_logits, train_reranker, Batch, BertClassifier, Loss, PairEncoder, RerankExample,
    RerankOptions, Scorer, TrainError,
};
use candle_core::Tensor;

fn examples() -> Vec<RerankExample> {
    let ex = |q: &str, p: &str, n: &[&str]| RerankExample {
        query: q.into(),
        positives: vec![p.into()],
        negatives: n.iter().map(|s| s.to_string()).collect(),
    };
    vec![
        ex(
            "How do I create a virtual environment?",
            "To create a virtual environment, run the venv module as a script: python -m venv tutorial-env.",
            &["The for statement iterates over the items of any sequence, in the order they appear.",
              "Dictionaries are indexed by keys, which can be any immutable type."],
        ),
        ex(
            "What does the break statement do?",
            "The break statement breaks out of the innermost enclosing for or while loop.",
            &["Lists support operations like concatenation: squares + [36, 49].",
              "A module is a file containing Python definitions and statements."],
        ),
        ex(
            "How are exceptions handled?",
            "The try statement works as follows: first the try clause is executed; if an exception occurs, the except clause runs.",
            &["The range function generates arithmetic progressions.",
              "Strings can be concatenated with the + operator and repeated with *."],
        ),
        ex(
            "How do I read a file line by line?",
            "For reading lines from a file, you can loop over the file object: for line in f: print(line).",
            &["Classes provide a means of bundling data and functionality together.",
              "The del statement removes an item from a list given its index."],
        ),
        ex(
            "What is a list comprehension?",
            "List comprehensions provide a concise way to create lists: [x**2 for x in range(10)].",
            &["The with statement ensures a file is closed after its suite finishes.",
              "Floating point numbers are represented in hardware as base 2 fractions."],
        ),
        ex(
            "How do I install a package with pip?",
            "You can install the latest version of a package by specifying its name: python -m pip install novas.",
            &["The while loop executes as long as the condition remains true.",
              "Lambda expressions create small anonymous functions."],
        ),
    ]
}

#[test]
fn every_weight_of_the_cross_encoder_gets_a_gradient() {
    let dir = cairn_testkit::minilm_dir();
    let model = BertClassifier::load(&dir, 0).unwrap();
    // The sentence encoder has no classifier: it starts new.
    assert!(
        model.initialised().iter().any(|n| n == "classifier.weight"),
        "{:?}",
        model.initialised()
    );
    let enc = PairEncoder::load(&dir, 64).unwrap();
    let a = enc
        .encode(
            "how do I make a venv",
            "python -m venv creates virtual environments",
        )
        .unwrap();
    let b = enc
        .encode("what is a dict", "a mapping from keys to values")
        .unwrap();
    let batch = Batch::new(&[(&a.0, &a.1), (&b.0, &b.1)]).unwrap();
    let z = model.forward(&model.tracked(), &batch).unwrap();
    let y = Tensor::new(&[1f32, 0.0], &candle_core::Device::Cpu).unwrap();
    let grads = bce_with_logits(&z, &y).unwrap().backward().unwrap();
    let mut still = Vec::new();
    for (name, var) in model.names().iter().zip(model.vars()) {
        let moved = grads
            .get(var.as_tensor())
            .map(|g| {
                g.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            })
            .unwrap_or(0.0);
        if moved.is_nan() || moved == 0.0 {
            still.push(name.clone());
        }
    }
    assert_eq!(model.vars().len(), 6 * 16 + 5 + 4);
    assert!(still.is_empty(), "weights without a gradient: {still:?}");
}

#[test]
fn training_fits_and_the_saved_model_scores_the_same_on_onnx_runtime() {
    let base = cairn_testkit::minilm_dir();
    let data = examples();
    let opts = RerankOptions {
        epochs: 4,
        batch_size: 6,
        learning_rate: 3e-4,
        warmup: 0.0,
        max_tokens: 64,
        ..Default::default()
    };
    let trained = train_reranker(&base, &data, &data, &opts, &NoProgress).unwrap();
    let f = &trained.figures;
    assert_eq!(f.train_pairs, 18);
    assert_eq!(f.steps, 4 * 3);
    assert_eq!(
        f.validation.len(),
        5,
        "before training and after each epoch"
    );
    assert!(
        f.epoch_loss.last().unwrap() < &(f.epoch_loss[0] * 0.8),
        "the loss did not fall: {:?}",
        f.epoch_loss
    );
    let best = f.validation[f.best_epoch];
    assert_eq!(best.hit1, 1.0, "{:?}", f.validation);

    // Saved, it loads back with no weight new and the same logits...
    let out = tempfile::tempdir().unwrap();
    trained.save(out.path()).unwrap();
    let reloaded = BertClassifier::load(out.path(), 99).unwrap();
    assert!(
        reloaded.initialised().is_empty(),
        "{:?}",
        reloaded.initialised()
    );
    let pairs: Vec<(&str, &str)> = data
        .iter()
        .flat_map(|e| {
            e.positives
                .iter()
                .chain(&e.negatives)
                .map(move |p| (e.query.as_str(), p.as_str()))
        })
        .collect();
    let trained_scores = trained.scorer(8).scores(&pairs).unwrap();
    let enc = PairEncoder::load(out.path(), 64).unwrap();
    let again = Scorer {
        model: &reloaded,
        encoder: &enc,
        batch_size: 5,
    }
    .scores(&pairs)
    .unwrap();
    for (a, b) in trained_scores.iter().zip(&again) {
        assert!((a - b).abs() < 1e-4, "{trained_scores:?} vs {again:?}");
    }
    // ...and ONNX Runtime, reading the graph written beside it, agrees.
    assert!(out.path().join("onnx/model.onnx").is_file());
    let ce = cairn_models::CrossEncoder::load(
        out.path(),
        &cairn_models::OnnxOptions {
            onnx_file: None,
            dylib: Some(cairn_testkit::onnxruntime_lib()),
            threads: 2,
            batch_size: 4,
        },
    )
    .unwrap();
    assert_eq!(ce.num_labels(), 1);
    let short: Vec<(&str, &str)> = pairs.clone();
    let onnx = ce.scores(&short).unwrap();
    for (a, b) in trained_scores.iter().zip(&onnx) {
        assert!(
            (a - b).abs() < 2e-3,
            "candle {trained_scores:?} vs onnx {onnx:?}"
        );
    }
}

#[test]
fn the_listwise_loss_trains_whole_questions_per_batch() {
    let base = cairn_testkit::minilm_dir();
    let data = examples();
    let opts = RerankOptions {
        epochs: 3,
        batch_size: 6,
        learning_rate: 3e-4,
        warmup: 0.0,
        max_tokens: 64,
        loss: Loss::Listwise,
        ..Default::default()
    };
    let trained = train_reranker(&base, &data, &data, &opts, &NoProgress).unwrap();
    let f = &trained.figures;
    // Two questions (3 pairs each) per batch of about 6 pairs.
    assert_eq!(f.steps, 3 * 3, "{f:?}");
    assert_eq!(f.loss, Loss::Listwise);
    // The untrained softmax over 3 passages starts near ln 3.
    assert!(
        (f.epoch_loss[0] - 3f64.ln()).abs() < 0.3,
        "{:?}",
        f.epoch_loss
    );
    assert!(
        f.epoch_loss.last().unwrap() < &(f.epoch_loss[0] * 0.8),
        "the loss did not fall: {:?}",
        f.epoch_loss
    );
}

#[test]
fn too_little_data_and_a_model_without_weights_are_named() {
    let base = cairn_testkit::minilm_dir();
    let few = &examples()[..2];
    let e = train_reranker(&base, few, &[], &RerankOptions::default(), &NoProgress).unwrap_err();
    assert!(matches!(e, TrainError::TooFew { need: 16, .. }), "{e}");
    assert!(e.to_string().contains("at least 16"), "{e}");

    let empty = tempfile::tempdir().unwrap();
    std::fs::copy(base.join("config.json"), empty.path().join("config.json")).unwrap();
    let e = BertClassifier::load(empty.path(), 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.safetensors"), "{e}");
}
