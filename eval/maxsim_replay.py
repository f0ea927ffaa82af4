#!/usr/bin/env python3
"""Zero-shot late-interaction (ColBERT-style MaxSim) rerank of Cairn's hybrid
top-20, with the token embeddings of all-MiniLM-L6-v2 (ONNX, last_hidden_state).

Stages (each cached under --work):
  pull   run `cairn search -k 20 --json --mode hybrid` for every question of
         every set; saves hits_<name>.json
  score  encode queries and candidate passages (token vectors, L2-normalised),
         rerank with MaxSim / bi-encoder cosine / fused + w*MaxSim, and print
         passage hit@1 / hit@5 per set; saves results.json (per question)
  time   ms per query for a MaxSim rerank of 20 passages, single-threaded

A passage hits when its document ends with one of the question's gold pages
(as eval/fusion_replay.py and `cairn eval` count it).

  python eval/maxsim_replay.py pull --cairn /tmp/cairn-bin --data-dir /tmp/evaldata \
      --set pydocs:/work/main/eval/python-docs/qa.jsonl \
      --set sqlite:/work/main/eval/sqlite-docs/qa.jsonl
  python eval/maxsim_replay.py score --set pydocs --set sqlite
  python eval/maxsim_replay.py time --set sqlite
"""
import argparse
import json
import os
import subprocess
import sys
import time
import unicodedata

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

MODEL = os.path.expanduser("~/.cache/cairn/models/all-MiniLM-L6-v2")
Q_MAX, P_MAX = 64, 256
WS = (0.25, 0.5, 1.0, 2.0)


def is_gold(doc, gold):
    return any(doc.endswith(g) for g in gold)


# ---------------------------------------------------------------- pull
def pull(a):
    for spec in a.set:
        name, qa = spec.split(":", 1)
        out = []
        for line in open(qa):
            q = json.loads(line)
            cmd = [a.cairn, "--data-dir", a.data_dir, "-c", name]
            if a.config:
                cmd += ["--config", a.config]
            cmd += ["search", q["question"], "-k", "20", "--json", "--mode", "hybrid"]
            r = subprocess.run(cmd, capture_output=True, text=True, check=True)
            hits = [{k: h[k] for k in ("chunk", "doc", "heading", "text", "score")}
                    for h in json.loads(r.stdout)["hits"]]
            out.append({"id": q["id"], "question": q["question"], "gold": q["gold"],
                        "style": q.get("style"), "kind": q.get("kind"), "hits": hits})
        json.dump(out, open(os.path.join(a.work, f"hits_{name}.json"), "w"))
        print(name, len(out), "questions", file=sys.stderr)


# ---------------------------------------------------------------- model
class Enc:
    def __init__(self):
        import onnxruntime as ort
        from tokenizers import Tokenizer
        o = ort.SessionOptions()
        o.intra_op_num_threads = 1
        o.inter_op_num_threads = 1
        o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.s = ort.InferenceSession(os.path.join(MODEL, "onnx/model.onnx"), o,
                                      providers=["CPUExecutionProvider"])
        self.tok = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
        self.tok.no_padding()

    def encode(self, texts, max_len):
        """[(token vectors L2-normalised (n, 384) without [CLS]/[SEP], token strings,
        mean-pooled sentence vector (normalised), as sentence-transformers)]."""
        self.tok.enable_truncation(max_len)
        encs = self.tok.encode_batch(texts)
        L = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), L), np.int64)
        am = np.zeros((len(encs), L), np.int64)
        for i, e in enumerate(encs):
            ids[i, :len(e.ids)] = e.ids
            am[i, :len(e.ids)] = 1
        h = self.s.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": am,
                                               "token_type_ids": np.zeros_like(ids)})[0]
        out = []
        for i, e in enumerate(encs):
            n = len(e.ids)
            x = h[i, :n].astype(np.float32)
            mean = x.mean(0)
            mean /= np.linalg.norm(mean)
            t = x[1:n - 1]  # drop [CLS] and [SEP]
            t = t / np.linalg.norm(t, axis=1, keepdims=True)
            out.append((t, e.tokens[1:n - 1], mean))
        return out


def punct_mask(tokens):
    """True for tokens that are not pure punctuation."""
    return np.array([not all(unicodedata.category(c).startswith("P") or c in "#$%^+=<>|~`"
                              for c in t.replace("##", "") or "#") for t in tokens], bool)


def maxsim(q, p):
    """Mean over query tokens of max cosine over passage tokens."""
    if len(q) == 0 or len(p) == 0:
        return 0.0
    return float((q @ p.T).max(1).mean())


def ptext(h, heading):
    return f"{h['heading']}\n\n{h['text']}" if heading and h["heading"] else h["text"]


# ---------------------------------------------------------------- score
def encode_set(enc, qs, cache):
    if os.path.exists(cache):
        return np.load(cache, allow_pickle=True).item()
    store = {"q": {}, "p": {}}
    for q in qs:
        store["q"][q["id"]] = enc.encode([q["question"]], Q_MAX)[0]
    items = {}
    for q in qs:
        for h in q["hits"]:
            for head in (False, True):
                items[(h["chunk"], head)] = ptext(h, head)
    keys = sorted(items, key=lambda k: len(items[k]))  # batch by similar length
    t0 = time.time()
    for i in range(0, len(keys), 16):
        b = keys[i:i + 16]
        for k, r in zip(b, enc.encode([items[k] for k in b], P_MAX)):
            t, toks, mean = r
            store["p"][k] = (t.astype(np.float16), toks, mean)
    print(f"encoded {len(keys)} passages in {time.time() - t0:.0f}s", file=sys.stderr)
    np.save(cache, store, allow_pickle=True)
    return store


def ranks(q, store, variant):
    """Scores of the 20 candidates under every method; returns {method: [scores]}."""
    qt, qtok, qmean = store["q"][q["id"]]
    qkeep = punct_mask(qtok)
    fused = np.array([h["score"] for h in q["hits"]])
    out = {"hybrid": fused}
    for head in (False, True):
        hv = "+head" if head else ""
        ms, msp, cos = [], [], []
        for h in q["hits"]:
            pt, ptok, pmean = store["p"][(h["chunk"], head)]
            pt = pt.astype(np.float32)
            ms.append(maxsim(qt, pt))
            pk = punct_mask(ptok)
            msp.append(maxsim(qt[qkeep], pt[pk]))
            cos.append(float(qmean @ pmean))
        out[f"maxsim{hv}"] = np.array(ms)
        out[f"maxsim-nopunct{hv}"] = np.array(msp)
        out[f"cosine{hv}"] = np.array(cos)
    fn = fused / fused.max()
    for base in ("maxsim", "maxsim+head", "maxsim-nopunct", "maxsim-nopunct+head",
                 "cosine", "cosine+head"):
        m = out[base]
        mn = m / m.max()
        mm = (m - m.min()) / (m.max() - m.min() + 1e-9)
        for w in WS:
            out[f"fused+{w:g}*{base}"] = fn + w * mn
            out[f"fused+{w:g}*{base} (minmax)"] = fn + w * mm
    return out


def order(scores):
    # stable: ties keep the hybrid order
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def score(a):
    enc = Enc()
    results = {}
    table = {}
    for name in a.set:
        qs = json.load(open(os.path.join(a.work, f"hits_{name}.json")))
        store = encode_set(enc, qs, os.path.join(a.work, f"tokvecs_{name}.npy"))
        per_q = []
        for q in qs:
            sc = ranks(q, store, None)
            rec = {"id": q["id"], "style": q["style"], "gold": q["gold"], "methods": {}}
            for m, s in sc.items():
                o = order(list(s))
                docs = [q["hits"][i]["doc"] for i in o]
                rec["methods"][m] = {"top5_docs": docs[:5],
                                     "top5_chunks": [q["hits"][i]["chunk"] for i in o[:5]],
                                     "hit1": bool(docs) and is_gold(docs[0], q["gold"]),
                                     "hit5": any(is_gold(d, q["gold"]) for d in docs[:5])}
            rec["gold_in_top20"] = any(is_gold(h["doc"], q["gold"]) for h in q["hits"])
            per_q.append(rec)
        results[name] = per_q
        n = len(per_q)
        for m in per_q[0]["methods"]:
            h1 = sum(r["methods"][m]["hit1"] for r in per_q) / n
            h5 = sum(r["methods"][m]["hit5"] for r in per_q) / n
            para = [r for r in per_q if r["style"] == "paraphrased"]
            p1 = sum(r["methods"][m]["hit1"] for r in para) / len(para) if para else None
            table.setdefault(m, {})[name] = (h1, h5, p1)
        table.setdefault("(oracle: gold in top 20)", {})[name] = (
            sum(r["gold_in_top20"] for r in per_q) / n, None, None)
    json.dump({"results": results, "table": {m: {k: v for k, v in d.items()} for m, d in table.items()}},
              open(os.path.join(a.work, "results.json"), "w"), indent=1)
    print("method | " + " | ".join(f"{s} hit@1 | {s} hit@5" for s in a.set))
    for m, d in table.items():
        cells = " | ".join(f"{d[s][0]:.3f} | " + (f"{d[s][1]:.3f}" if d[s][1] is not None else "—")
                           for s in a.set)
        print(f"{m} | {cells}")


# ---------------------------------------------------------------- time
def timing(a):
    enc = Enc()
    for name in a.set:
        qs = json.load(open(os.path.join(a.work, f"hits_{name}.json")))[: a.n]
        # warm-up
        enc.encode([qs[0]["question"]], Q_MAX)
        enc.encode([ptext(h, True) for h in qs[0]["hits"]], P_MAX)
        t_q = t_p = t_p1 = t_ms = 0.0
        for q in qs:
            t0 = time.perf_counter()
            qt, qtok, _ = enc.encode([q["question"]], Q_MAX)[0]
            t1 = time.perf_counter()
            texts = [ptext(h, True) for h in q["hits"]]
            ps = enc.encode(texts, P_MAX)  # one padded batch of 20
            t2 = time.perf_counter()
            s = [maxsim(qt, p[0]) for p in ps]
            order(s)
            t3 = time.perf_counter()
            t_q += t1 - t0
            t_p += t2 - t1
            t_ms += t3 - t2
        for q in qs[: max(1, a.n // 4)]:
            t0 = time.perf_counter()
            for h in q["hits"]:
                enc.encode([ptext(h, True)], P_MAX)  # one passage at a time, no padding
            t_p1 += time.perf_counter() - t0
        n = len(qs)
        print(f"{name}: {n} queries, single-threaded: query token encode {1e3 * t_q / n:.1f} ms, "
              f"20 passages encoded in one batch {1e3 * t_p / n:.1f} ms "
              f"(one at a time: {1e3 * t_p1 / max(1, a.n // 4):.1f} ms), "
              f"MaxSim over 20 precomputed passages {1e3 * t_ms / n:.2f} ms; "
              f"total with passages encoded at query time {1e3 * (t_q + t_p + t_ms) / n:.1f} ms, "
              f"with stored token vectors {1e3 * (t_q + t_ms) / n:.1f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=["pull", "score", "time"])
    ap.add_argument("--cairn", default="/tmp/cairn-bin")
    ap.add_argument("--data-dir", default="/tmp/evaldata")
    ap.add_argument("--config")
    ap.add_argument("--work", default="/tmp/maxsim")
    ap.add_argument("--set", action="append", required=True)
    ap.add_argument("-n", type=int, default=40)
    a = ap.parse_args()
    {"pull": pull, "score": score, "time": timing}[a.stage](a)


if __name__ == "__main__":
    main()
