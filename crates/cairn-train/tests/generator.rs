//! The generator's LoRA on the real SmolLM2-135M-Instruct: candle's forward
//! pass agrees with llama.cpp's, every adapter tensor trains, and an adapter
//! saved as GGUF is what llama.cpp then applies (it answers as trained).

use cairn_generate::llama::{LlamaGenerator, LlamaOptions};
use cairn_generate::{ChatMessage, Generator, Sampling};
use cairn_train::{train_lora, GenExample, LlamaLora, LoraOptions, TARGETS};

fn generator() -> LlamaGenerator {
    LlamaGenerator::load(
        &cairn_testkit::smollm2_gguf(),
        &LlamaOptions {
            context: 512,
            ..LlamaOptions::default()
        },
    )
    .expect("SmolLM2 loads in llama.cpp")
}

fn greedy(
    g: &LlamaGenerator,
    messages: &[ChatMessage],
    adapter: Option<&std::path::Path>,
    n: u32,
) -> String {
    let sampling = Sampling {
        temperature: 0.0,
        max_tokens: n,
        repeat_penalty: 1.0,
        adapter: adapter.map(|p| p.to_path_buf()),
        ..Sampling::default()
    };
    g.generate(messages, &sampling, &mut |_: &str| {
        cairn_generate::Flow::Continue
    })
    .expect("generation")
    .text
}

const ANSWER: &str = "The quartz lamp is stored in cabinet 7 [1].";

fn messages() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("You answer questions using only the numbered sources."),
        ChatMessage::user(
            "Sources:\n\n[1] store.md — Lamps\nThe quartz lamp is stored in cabinet 7 of the north room.\n\nQuestion: Where is the quartz lamp?",
        ),
    ]
}

#[test]
fn candle_matches_llama_cpp_and_a_trained_adapter_loads_in_llama_cpp() {
    let g = generator();
    let msgs = messages();
    let prompt = g.token_ids(&g.render(&msgs).unwrap(), true);
    let t0 = std::time::Instant::now();
    // Adapters on the top 6 blocks (every kind of linear layer); the 24
    // below run once per example.
    let model = LlamaLora::load(&cairn_testkit::smollm2_gguf(), 8, 16.0, &TARGETS, 6, 7)
        .expect("the GGUF loads in candle");
    assert_eq!(model.shape.layers, 30);
    assert_eq!(model.first_adapted(), 24);
    assert_eq!(model.adapters.len(), 6 * TARGETS.len());

    eprintln!("loaded in {:?}", t0.elapsed());
    // 1. The same greedy continuation as llama.cpp (B is zero: the base model).
    let ours = g.detokenize(&model.greedy(&prompt, 4).unwrap());
    let theirs = greedy(&g, &msgs, None, 4);
    assert!(!theirs.trim().is_empty());
    assert_eq!(
        ours.trim(),
        theirs.trim(),
        "candle's forward pass disagrees with llama.cpp's"
    );

    eprintln!("greedy checked at {:?}", t0.elapsed());
    // 2. Train on one example until it is learnt; every tensor moves.
    let mut answer = g.token_ids(ANSWER, false);
    answer.push(g.end_of_turn());
    let mut tokens = prompt.clone();
    let at = tokens.len();
    tokens.extend(&answer);
    let ex = GenExample { tokens, answer: at };
    let before: Vec<Vec<f32>> = model
        .vars()
        .iter()
        .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    let base_loss = cairn_train::mean_loss(&model, std::slice::from_ref(&ex)).unwrap();
    let train: Vec<GenExample> = vec![ex.clone(); 8];
    let figures = train_lora(
        &model,
        &train,
        std::slice::from_ref(&ex),
        &LoraOptions {
            epochs: 4,
            accumulate: 2,
            learning_rate: 3e-3,
            ..LoraOptions::default()
        },
        &cairn_core::NoProgress,
    )
    .unwrap();
    eprintln!("trained at {:?}: {figures:?}", t0.elapsed());
    assert!(figures.tokens_per_second > 0.0);
    let trained_loss = cairn_train::mean_loss(&model, std::slice::from_ref(&ex)).unwrap();
    assert!(
        trained_loss < base_loss * 0.2,
        "the answer loss fell from {base_loss} to {trained_loss} only"
    );
    for (v, b) in model.vars().iter().zip(&before) {
        let now: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            now.iter().zip(b).any(|(x, y)| x != y),
            "a LoRA tensor never moved"
        );
    }

    // 3. Saved as GGUF: candle reads back the same tensors, and llama.cpp,
    //    applying it, answers as trained, the same as candle does.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lora.gguf");
    model
        .save_gguf(
            &path,
            &[("cairn.base_model", "SmolLM2-135M-Instruct".into())],
        )
        .unwrap();
    let mut again =
        LlamaLora::load(&cairn_testkit::smollm2_gguf(), 8, 16.0, &TARGETS, 6, 99).unwrap();
    again.load_adapters(&path).unwrap();
    let reloaded = cairn_train::mean_loss(&again, std::slice::from_ref(&ex)).unwrap();
    assert!(
        (reloaded - trained_loss).abs() < 1e-4,
        "{reloaded} vs {trained_loss}"
    );
    let n = answer.len() as u32 - 1;
    let ours = g.detokenize(&model.greedy(&prompt, n as usize).unwrap());
    let theirs = greedy(&g, &msgs, Some(&path), n);
    assert_eq!(theirs.trim(), ANSWER, "llama.cpp with the adapter");
    assert_eq!(ours.trim(), theirs.trim());
    // Without the adapter, the base model again.
    let base = greedy(&g, &msgs, None, n);
    assert_ne!(base.trim(), ANSWER);

    // 4. A corrupt adapter is an error naming the file.
    std::fs::write(&path, b"GGUF not really").unwrap();
    let err = g
        .generate(
            &msgs,
            &Sampling {
                adapter: Some(path.clone()),
                max_tokens: 4,
                ..Sampling::default()
            },
            &mut |_: &str| cairn_generate::Flow::Continue,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("lora.gguf"), "{err}");
}

#[test]
fn other_architectures_bad_files_and_too_little_data_are_named() {
    let err = LlamaLora::load(&cairn_testkit::gemma3_gguf(), 8, 16.0, &TARGETS, 0, 1)
        .err()
        .expect("gemma3 is refused")
        .to_string();
    assert!(err.contains("gemma3") && err.contains("Llama"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"GGUF\x03\x00\x00\x00 truncated").unwrap();
    let err = LlamaLora::load(&junk, 8, 16.0, &TARGETS, 0, 1)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("junk.gguf"), "{err}");
    let err = LlamaLora::load(&cairn_testkit::smollm2_gguf(), 8, 16.0, &["attn_x"], 1, 1)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("attn_x"), "{err}");

    let model = LlamaLora::load(&cairn_testkit::smollm2_gguf(), 4, 8.0, &TARGETS, 1, 1).unwrap();
    let ex = GenExample {
        tokens: vec![1, 2, 3, 4],
        answer: 2,
    };
    let err = train_lora(
        &model,
        &vec![ex.clone(); 3],
        &[],
        &LoraOptions::default(),
        &cairn_core::NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("too few generator training examples to train on: 3, at least 8"),
        "{err}"
    );
    let bad = GenExample {
        tokens: vec![1, 2, 999_999],
        answer: 1,
    };
    let mut train = vec![ex; 8];
    train.push(bad);
    let err = train_lora(
        &model,
        &train,
        &[],
        &LoraOptions::default(),
        &cairn_core::NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("example 9") && err.contains("999999"), "{err}");
}
