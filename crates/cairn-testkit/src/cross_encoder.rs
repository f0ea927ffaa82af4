//! A tiny cross-encoder with the layout of
//! cross-encoder/ms-marco-MiniLM-L-6-v2 (`bert.`-prefixed encoder, pooler,
//! `classifier`; a `BertForSequenceClassification` config), deterministic
//! pseudo-random weights and the real all-MiniLM-L6-v2 tokenizer. No
//! cross-encoder weights can be fetched here; the critic's tests check the
//! graph Cairn writes from this model against a plain forward pass, and the
//! process tests run the critic through the configuration with it.

use std::collections::BTreeMap;
use std::path::Path;

pub const HIDDEN: usize = 32;
pub const LAYERS: usize = 2;
pub const HEADS: usize = 4;
pub const INTER: usize = 64;
pub const MAX_POS: usize = 64;
pub const TYPES: usize = 2;
pub const EPS: f64 = 1e-12;

/// Tensors by name: shape and row-major values.
pub type Weights = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// xorshift64*: the same weights on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        (v as f32 / (1u64 << 24) as f32) * 2.0 - 1.0 // [-1, 1)
    }
    fn fill(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|_| offset + scale * self.next()).collect()
    }
}

/// Weights being made: deterministic values under their names.
struct Maker {
    r: Rng,
    w: Weights,
}

impl Maker {
    /// `offset + scale * u`, u uniform in [-1, 1).
    fn put(&mut self, name: &str, shape: &[usize], scale: f32, offset: f32) {
        let n = shape.iter().product();
        let values = self.r.fill(n, scale, offset);
        self.w.insert(name.to_string(), (shape.to_vec(), values));
    }
    /// A PyTorch Linear (`[out, in]` weight) keeping activations near unit size.
    fn linear(&mut self, name: &str, i: usize, o: usize) {
        let scale = 1.5 / (i as f32).sqrt();
        self.put(&format!("{name}.weight"), &[o, i], scale, 0.0);
        self.put(&format!("{name}.bias"), &[o], 0.1, 0.0);
    }
    fn layer_norm(&mut self, name: &str) {
        self.put(&format!("{name}.weight"), &[HIDDEN], 0.2, 1.0);
        self.put(&format!("{name}.bias"), &[HIDDEN], 0.1, 0.0);
    }
}

/// The unprefixed tensor names and values of a tiny BERT; with `labels`, a
/// pooler and a classifier of that many labels.
pub fn weights(vocab: usize, labels: Option<usize>, seed: u64) -> Weights {
    let mut m = Maker {
        r: Rng(seed),
        w: Weights::new(),
    };
    let h = HIDDEN;
    m.put("embeddings.word_embeddings.weight", &[vocab, h], 0.5, 0.0);
    m.put(
        "embeddings.position_embeddings.weight",
        &[MAX_POS, h],
        0.5,
        0.0,
    );
    m.put(
        "embeddings.token_type_embeddings.weight",
        &[TYPES, h],
        0.5,
        0.0,
    );
    m.layer_norm("embeddings.LayerNorm");
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}");
        for q in ["query", "key", "value"] {
            m.linear(&format!("{p}.attention.self.{q}"), h, h);
        }
        m.linear(&format!("{p}.attention.output.dense"), h, h);
        m.layer_norm(&format!("{p}.attention.output.LayerNorm"));
        m.linear(&format!("{p}.intermediate.dense"), h, INTER);
        m.linear(&format!("{p}.output.dense"), INTER, h);
        m.layer_norm(&format!("{p}.output.LayerNorm"));
    }
    if let Some(n) = labels {
        m.linear("pooler.dense", h, h);
        m.linear("classifier", h, n);
    }
    m.w
}

/// `model.safetensors` by hand: 8-byte little-endian header length, the
/// JSON header, then the F32 data. `prefix` names the encoder's and the
/// pooler's tensors `bert.*`, as `BertForSequenceClassification` does.
pub fn write_safetensors(path: &Path, w: &Weights, prefix: bool) {
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = vec![];
    for (name, (shape, values)) in w {
        let stored = if prefix && !name.starts_with("classifier") {
            format!("bert.{name}")
        } else {
            name.clone()
        };
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(
            stored,
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let header = serde_json::to_vec(&header).unwrap();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&data);
    std::fs::write(path, bytes).unwrap();
}

pub fn config(vocab: usize, labels: Option<usize>) -> serde_json::Value {
    let mut c = serde_json::json!({
        "architectures": [if labels.is_some() { "BertForSequenceClassification" } else { "BertModel" }],
        "model_type": "bert",
        "hidden_act": "gelu",
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": INTER,
        "max_position_embeddings": MAX_POS,
        "type_vocab_size": TYPES,
        "vocab_size": vocab,
        "layer_norm_eps": EPS,
        "position_embedding_type": "absolute",
    });
    match labels {
        // ms-marco-MiniLM-L-6-v2 declares its one label through id2label
        Some(1) => c["id2label"] = serde_json::json!({"0": "LABEL_0"}),
        Some(n) => c["num_labels"] = serde_json::json!(n),
        None => {}
    }
    c
}

/// A model directory `dir/name` holding the tiny model; returns its weights.
pub fn write_model(
    dir: &Path,
    name: &str,
    labels: Option<usize>,
    prefix: bool,
) -> (std::path::PathBuf, Weights) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let vocab = minilm_vocab_size();
    let w = weights(
        vocab,
        labels,
        0x9e37_79b9_7f4a_7c15 ^ labels.unwrap_or(0) as u64,
    );
    write_safetensors(&d.join("model.safetensors"), &w, prefix);
    std::fs::write(d.join("config.json"), config(vocab, labels).to_string()).unwrap();
    std::fs::copy(
        crate::minilm_dir().join("tokenizer.json"),
        d.join("tokenizer.json"),
    )
    .unwrap();
    (d, w)
}

/// Tokens in the MiniLM tokenizer's vocabulary (its WordPiece `model.vocab`).
pub fn minilm_vocab_size() -> usize {
    let path = crate::minilm_dir().join("tokenizer.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v["model"]["vocab"]
        .as_object()
        .unwrap_or_else(|| panic!("{}: no model.vocab", path.display()))
        .len()
}
