#!/usr/bin/env python3
"""ONNX Runtime (CPU, fp32) reference benchmark for kefu's default model.

Builds an fp32 ONNX graph of the BERT encoder in models/multilingual-e5-small
straight from model.safetensors (no PyTorch, no network), checks it against the
reference cosines that tests/model.rs uses, and times it on the same fixed
shapes as `kefu bench embed` (1 x 16 and 32 x 32 tokens), so that kefu and ONNX
Runtime can be compared per core on one machine in one sitting.

The graph is written node for node the way the PyTorch exporter writes Hugging
Face BERT at opset 17 (MatMul + Add per linear layer, Reshape/Transpose per
head, Div by sqrt(head size), an additive (1 - mask) * -10000 mask, Erf GELU,
LayerNormalization), so that ONNX Runtime's optimisers treat it as they treat
an exported model. Two fp32 variants are measured, both in sessions with
ORT_ENABLE_ALL:

  onnx_fp32                that graph as written; the in-session optimiser
                           fuses SkipLayerNormalization, BiasGelu and the
                           attention scale, but not attention itself at opset 17
  onnx_fp32_offline_fused  the same graph after onnxruntime.transformers'
                           BERT optimiser (EmbedLayerNormalization, one
                           Attention node per layer, SkipLayerNormalization,
                           BiasGelu), the graph ORT's own BERT tooling serves

The operators left after optimisation are recorded for each, so the fusions
can be checked.

Usage (from the repository root):

    pip install onnxruntime onnx numpy safetensors tokenizers
    python3 benches/reference/ort_bench.py --threads 1,2 --runs 3

The last line of stdout is one JSON object with every number; progress goes to
stderr. The ONNX files (about 470 MB each for fp32) are written under
--work-dir, never into the repository, and reused on later runs.

--quantized PATH benchmarks another ONNX file too (inputs input_ids,
attention_mask and optionally token_type_ids; output last_hidden_state, which
is mean-pooled here, or sentence_embedding). --quantize-dynamic makes an int8
model with ONNX Runtime's own dynamic quantiser from the fused fp32 graph and
benchmarks it as well.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file
from tokenizers import Tokenizer

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "multilingual-e5-small"
OPSET = 17

# Reference cosines (tolerance 0.01), the same pairs and values as tests/model.rs.
REFERENCE = [
    ("怎么申请退款", "我想退货退钱怎么操作", 0.926),
    ("订单什么时候发货", "我买的东西多久能寄出", 0.903),
    ("How do I reset my password?", "I forgot my password, what should I do", 0.917),
    ("怎么申请退款", "会员积分怎么兑换", 0.847),
]
TOLERANCE = 0.01

# The questions `kefu bench embed` builds its fixed-shape inputs from (src/bench.rs, QUESTIONS),
# so both benchmarks feed the same token ids.
QUESTIONS = [
    "怎么申请退款",
    "订单什么时候发货",
    "我买的东西多久能寄出",
    "会员积分怎么兑换",
    "快递显示已签收但我没收到",
    "可以开发票吗",
    "怎么修改收货地址",
    "优惠券为什么用不了",
    "退货运费谁承担",
    "商品有质量问题怎么办",
    "支付失败了钱扣了吗",
    "客服电话是多少",
    "我想转人工",
    "七天无理由退货怎么操作",
    "能不能货到付款",
    "How do I reset my password?",
    "Where is my order?",
    "Can I change my delivery address?",
    "How long does a refund take?",
    "The item arrived damaged, what should I do",
    "Do you ship internationally?",
    "How can I cancel my subscription",
    "I was charged twice for the same order",
    "What is your return policy for electronics?",
    "Can I talk to a human agent please",
    "Why was my payment declined",
    "How do I apply a discount code at checkout?",
    "When will my package arrive",
    "我的账号被锁了怎么解锁",
    "买了两件能分开发货吗",
    "Is there a warranty on this product?",
    "积分什么时候到账",
]


def log(msg: str) -> None:
    """Progress goes to stderr so that stdout ends with exactly one JSON line."""
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Tokenisation
# --------------------------------------------------------------------------------------------


class TextTokenizer:
    """tokenizer.json with the manifest's prefix; no padding, truncation at max_tokens (as kefu)."""

    def __init__(self, model_dir: Path, prefix: str, max_tokens: int):
        self.inner = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.inner.no_padding()
        self.inner.enable_truncation(max_tokens)
        self.prefix = prefix
        self.pad_id = self.inner.token_to_id("<pad>")
        if self.pad_id is None:
            self.pad_id = 0

    def encode(self, text: str) -> list[int]:
        return self.inner.encode(self.prefix + text).ids

    def batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Pads to the longest in the batch; returns int64 input_ids and attention_mask."""
        ids = [self.encode(t) for t in texts]
        width = max(len(x) for x in ids)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        return input_ids, mask


def fixed_tokens(real: list[list[int]], length: int, shift: int) -> list[int]:
    """Exactly `length` real token ids, as src/bench.rs `fixed_tokens` builds them: the question
    bodies (special tokens stripped) from question `shift` on, cycled, with the first question's
    <s> in front and its </s> at the end."""
    n = len(real)
    body = [t for q in itertools.islice(itertools.cycle(real), shift, shift + n) for t in q[1:-1]]
    middle = list(itertools.islice(itertools.cycle(body), length - 2))
    return [real[0][0]] + middle + [real[0][-1]]


# --------------------------------------------------------------------------------------------
# Graph construction
# --------------------------------------------------------------------------------------------


class GraphBuilder:
    """Collects nodes and initializers; every helper returns the name of its output."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = Counter()

    def const(self, name: str, value: np.ndarray) -> str:
        # (np.ascontiguousarray would turn a 0-d scalar into shape [1]; from_array copies anyway.)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        if name is None:
            self._count[op_type] += 1
            name = f"{op_type}_{self._count[op_type]}"
        out = f"{name}_output_0"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name, **attrs))
        return out


def load_config(model_dir: Path) -> dict:
    with open(model_dir / "config.json", encoding="utf-8") as f:
        cfg = json.load(f)
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise SystemExit(f"unsupported hidden_act {cfg['hidden_act']!r} (this script writes exact GELU)")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise SystemExit("only absolute position embeddings are supported")
    return cfg


def build_bert_onnx(model_dir: Path, out_path: Path) -> dict:
    """Writes the fp32 encoder + mean pooling + L2 normalisation as one ONNX model.

    Inputs:  input_ids, attention_mask, token_type_ids   int64 [batch, sequence]
    Outputs: last_hidden_state  float [batch, sequence, hidden]
             sentence_embedding float [batch, hidden]  (masked mean, L2-normalised)
    """
    cfg = load_config(model_dir)
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    head_size = hidden // heads
    layers = cfg["num_hidden_layers"]
    eps = float(cfg["layer_norm_eps"])
    max_pos = cfg["max_position_embeddings"]

    # Safetensors -> numpy; accept names with or without a "bert." prefix.
    tensors = {k.removeprefix("bert."): v for k, v in load_file(str(model_dir / "model.safetensors")).items()}

    def w(name: str) -> np.ndarray:
        return tensors[name].astype(np.float32, copy=False)

    g = GraphBuilder()

    # Shared constants, as the exporter emits them.
    one_f = g.const("const_one", np.array(1.0, dtype=np.float32))
    neg_big = g.const("const_mask_fill", np.array(-10000.0, dtype=np.float32))
    sqrt_head = g.const("const_sqrt_head_size", np.array(math.sqrt(head_size), dtype=np.float32))
    sqrt2 = g.const("const_sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    half = g.const("const_half", np.array(0.5, dtype=np.float32))
    heads_shape = g.const("const_heads_shape", np.array([0, 0, heads, head_size], dtype=np.int64))
    merged_shape = g.const("const_merged_shape", np.array([0, 0, hidden], dtype=np.int64))
    axes_1 = g.const("const_axes_1", np.array([1], dtype=np.int64))
    axes_2 = g.const("const_axes_2", np.array([2], dtype=np.int64))
    zero_1d = g.const("const_zero_1d", np.array([0], dtype=np.int64))
    index_1 = g.const("const_index_1", np.array(1, dtype=np.int64))

    # ---- Embeddings: word + token type + position, then LayerNorm (BertEmbeddings).
    word = g.op("Gather", [g.const("embeddings.word_embeddings.weight", w("embeddings.word_embeddings.weight")),
                           "input_ids"], name="word_embeddings")
    token_type = g.op("Gather", [g.const("embeddings.token_type_embeddings.weight",
                                         w("embeddings.token_type_embeddings.weight")),
                                 "token_type_ids"], name="token_type_embeddings")
    # position_ids = self.position_ids[:, :seq_len]: Shape -> Gather -> Unsqueeze -> Slice of a buffer.
    seq_len = g.op("Gather", [g.op("Shape", ["input_ids"]), index_1], axis=0)
    seq_len_1d = g.op("Unsqueeze", [seq_len, zero_1d])
    position_ids = g.op("Slice", [g.const("embeddings.position_ids", np.arange(max_pos, dtype=np.int64)[None, :]),
                                  zero_1d, seq_len_1d, axes_1])
    position = g.op("Gather", [g.const("embeddings.position_embeddings.weight",
                                       w("embeddings.position_embeddings.weight")), position_ids],
                    name="position_embeddings")
    x = g.op("Add", [word, token_type])
    x = g.op("Add", [x, position])
    x = g.op("LayerNormalization", [x, g.const("embeddings.LayerNorm.weight", w("embeddings.LayerNorm.weight")),
                                    g.const("embeddings.LayerNorm.bias", w("embeddings.LayerNorm.bias"))],
             name="embeddings_LayerNorm", axis=-1, epsilon=eps)

    # ---- Extended attention mask, computed once and shared by every layer:
    # (1 - mask[:, None, None, :]) * -10000, the form ORT's AttentionFusion recognises.
    m = g.op("Unsqueeze", ["attention_mask", axes_1])
    m = g.op("Unsqueeze", [m, axes_2])
    m = g.op("Cast", [m], to=TensorProto.FLOAT)
    m = g.op("Sub", [one_f, m])
    ext_mask = g.op("Mul", [m, neg_big])

    def linear(inp: str, prefix: str) -> str:
        """nn.Linear as exported: MatMul with the pre-transposed [in, out] weight, then Add bias."""
        weight = g.const(prefix + ".weight", np.ascontiguousarray(w(prefix + ".weight").T))
        bias = g.const(prefix + ".bias", w(prefix + ".bias"))
        return g.op("Add", [g.op("MatMul", [inp, weight]), bias])

    def layer_norm(inp: str, prefix: str) -> str:
        return g.op("LayerNormalization", [inp, g.const(prefix + ".weight", w(prefix + ".weight")),
                                           g.const(prefix + ".bias", w(prefix + ".bias"))],
                    axis=-1, epsilon=eps)

    for i in range(layers):
        p = f"encoder.layer.{i}"
        # Self-attention. q and v: [B,S,H] -> [B,S,N,h] -> [B,N,S,h]; k goes straight to [B,N,h,S].
        q = g.op("Transpose", [g.op("Reshape", [linear(x, f"{p}.attention.self.query"), heads_shape])],
                 perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [linear(x, f"{p}.attention.self.key"), heads_shape])],
                 perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [linear(x, f"{p}.attention.self.value"), heads_shape])],
                 perm=[0, 2, 1, 3])
        scores = g.op("Div", [g.op("MatMul", [q, k], name=f"layer{i}_attention_scores"), sqrt_head])
        probs = g.op("Softmax", [g.op("Add", [scores, ext_mask])], axis=3)
        ctx = g.op("MatMul", [probs, v], name=f"layer{i}_attention_context")
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), merged_shape])
        attn = linear(ctx, f"{p}.attention.output.dense")
        x = layer_norm(g.op("Add", [attn, x]), f"{p}.attention.output.LayerNorm")

        # Feed-forward with exact GELU: h * 0.5 * (1 + erf(h / sqrt(2))).
        h = linear(x, f"{p}.intermediate.dense")
        gelu = g.op("Mul", [g.op("Mul", [h, g.op("Add", [g.op("Erf", [g.op("Div", [h, sqrt2])]), one_f])]), half])
        out = linear(gelu, f"{p}.output.dense")
        x = layer_norm(g.op("Add", [out, x]), f"{p}.output.LayerNorm")

    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="last_hidden_state"))

    # ---- Mean pooling over the attention mask, then L2 normalisation.
    mask_f = g.op("Unsqueeze", [g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT), axes_2])  # [B,S,1]
    summed = g.op("ReduceSum", [g.op("Mul", [x, mask_f]), axes_1], keepdims=0)  # [B,H]
    count = g.op("ReduceSum", [mask_f, axes_1], keepdims=0)  # [B,1]
    count = g.op("Max", [count, g.const("const_min_count", np.array(1e-9, dtype=np.float32))])
    mean = g.op("Div", [summed, count])
    norm = g.op("ReduceL2", [mean], axes=[1], keepdims=1)
    norm = g.op("Max", [norm, g.const("const_min_norm", np.array(1e-12, dtype=np.float32))])
    g.nodes.append(helper.make_node("Div", [mean, norm], ["sentence_embedding"], name="sentence_embedding"))

    dims = ["batch_size", "sequence_length"]
    graph = helper.make_graph(
        g.nodes,
        "multilingual-e5-small",
        inputs=[helper.make_tensor_value_info(n, TensorProto.INT64, dims)
                for n in ("input_ids", "attention_mask", "token_type_ids")],
        outputs=[
            helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, dims + [hidden]),
            helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch_size", hidden]),
        ],
        initializer=g.initializers,
        # Shape inference cannot tell that the sliced position ids are sequence_length long; the
        # exporter records that as value_info, and ORT's fusions need matching residual shapes.
        value_info=[
            helper.make_tensor_value_info(position_ids, TensorProto.INT64, [1, "sequence_length"]),
            helper.make_tensor_value_info(position, TensorProto.FLOAT, [1, "sequence_length", hidden]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="kefu benches/reference/ort_bench.py")
    model.ir_version = 8  # what opset 17 exporters write; loadable by any recent onnxruntime
    onnx.checker.check_model(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    return {"nodes": len(g.nodes), "initializers": len(g.initializers), "opset": OPSET,
            "layers": layers, "hidden": hidden, "heads": heads}


# --------------------------------------------------------------------------------------------
# Sessions, embeddings, benchmarks
# --------------------------------------------------------------------------------------------


def make_session(path: Path, threads: int, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                 optimized_out: Path | None = None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = level
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    if optimized_out is not None:
        opts.optimized_model_filepath = str(optimized_out)
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def feeds_for(sess: ort.InferenceSession, input_ids: np.ndarray, mask: np.ndarray) -> dict:
    """Feeds by input name; token_type_ids (if the model has it) are zeros."""
    feeds = {}
    for inp in sess.get_inputs():
        dtype = np.int32 if inp.type == "tensor(int32)" else np.int64
        if inp.name == "input_ids":
            feeds[inp.name] = input_ids.astype(dtype)
        elif inp.name == "attention_mask":
            feeds[inp.name] = mask.astype(dtype)
        elif inp.name == "token_type_ids":
            feeds[inp.name] = np.zeros_like(input_ids, dtype=dtype)
        else:
            raise SystemExit(f"unexpected model input {inp.name!r}")
    return feeds


def output_plan(sess: ort.InferenceSession) -> tuple[str, bool]:
    """Which output to fetch, and whether it still needs mean pooling + normalisation."""
    outputs = {o.name: o for o in sess.get_outputs()}
    if "sentence_embedding" in outputs:
        return "sentence_embedding", False
    if "last_hidden_state" in outputs:
        return "last_hidden_state", True
    first = sess.get_outputs()[0]
    return first.name, len(first.shape) == 3


def embed(sess: ort.InferenceSession, tok: TextTokenizer, texts: list[str]) -> np.ndarray:
    input_ids, mask = tok.batch(texts)
    name, pool = output_plan(sess)
    out = sess.run([name], feeds_for(sess, input_ids, mask))[0]
    if pool:
        m = mask[:, :, None].astype(np.float32)
        out = (out * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def check_cosines(sess: ort.InferenceSession, tok: TextTokenizer) -> list[dict]:
    """Each pair is embedded as one padded batch of two, so padding and masking are exercised."""
    results = []
    for a, b, want in REFERENCE:
        ea, eb = embed(sess, tok, [a, b])
        got = float(np.dot(ea, eb) / (np.linalg.norm(ea) * np.linalg.norm(eb)))
        results.append({"a": a, "b": b, "cosine": round(got, 4), "reference": want,
                        "ok": abs(got - want) <= TOLERANCE})
    return results


def op_counts(path: Path) -> dict:
    model = onnx.load(str(path), load_external_data=False)
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def time_runs(sess: ort.InferenceSession, output: str, feeds: dict, warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        sess.run([output], feeds)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        sess.run([output], feeds)
        times.append((time.perf_counter() - started) * 1000.0)
    return times


def bench_model(path: Path, threads: list[int], shapes: list[tuple], real: list[list[int]]) -> dict:
    """One pass over every thread count and shape. shapes: (batch, tokens, warmup, runs)."""
    result = {}
    for t in threads:
        sess = make_session(path, t)
        output, _ = output_plan(sess)
        per_thread = {}
        for batch, tokens, warmup, runs in shapes:
            ids = np.array([fixed_tokens(real, tokens, i) for i in range(batch)], dtype=np.int64)
            feeds = feeds_for(sess, ids, np.ones_like(ids))
            times = time_runs(sess, output, feeds, warmup, runs)
            median = statistics.median(times)
            per_thread[f"{batch}x{tokens}"] = {
                "runs": runs,
                "median_ms": round(median, 3),
                "min_ms": round(min(times), 3),
                "sentences_per_s": round(batch * 1000.0 / median, 1),
            }
            log(f"  threads={t} {batch}x{tokens}: median {median:.2f} ms, min {min(times):.2f} ms, "
                f"{batch * 1000.0 / median:.1f} sentences/s")
        result[str(t)] = per_thread
        del sess
    return result


def fuse_offline(fp32_path: Path, out_path: Path, cfg: dict) -> Path:
    """ONNX Runtime's offline BERT optimiser (onnxruntime.transformers, shipped in the wheel): the
    fusions the in-session optimiser does not reach at opset 17 (EmbedLayerNormalization and the
    whole self-attention as one Attention node), plus SkipLayerNormalization and BiasGelu. This is
    the fp32 graph a careful ORT deployment of this model would serve."""
    import logging

    from onnxruntime.transformers import optimizer

    # It warns that the producer is not "pytorch"; the graph has the exporter's shape regardless.
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    model = optimizer.optimize_model(str(fp32_path), model_type="bert", num_heads=cfg["num_attention_heads"],
                                     hidden_size=cfg["hidden_size"], opt_level=0, use_gpu=False)
    model.save_model_to_file(str(out_path))
    return out_path


def quantize_dynamic_int8(source: Path, out_path: Path) -> Path:
    """ONNX Runtime's own dynamic int8 quantisation: int8 weights per output channel for every
    MatMul and Attention (Attention becomes QAttention when `source` is the offline-fused graph),
    uint8 activations quantised per tensor at run time. Embedding tables stay fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # ONNX shape inference cannot type the outputs of contrib ops (Attention, SkipLayerNormalization);
    # every activation here is float.
    quantize_dynamic(str(source), str(out_path), op_types_to_quantize=["MatMul", "Attention"],
                     per_channel=True, weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": TensorProto.FLOAT})
    return out_path


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def check_model(name: str, path: Path, tok: TextTokenizer, threads: int, work_dir: Path,
                compare_unoptimised: bool) -> dict:
    """Cosines, the operators left after ORT_ENABLE_ALL, and (for our own fp32 graphs) how far the
    optimised session is from the unoptimised one."""
    entry: dict = {"path": str(path)}
    with open(path, "rb") as f:
        if f.read(40).startswith(b"version https://git-lfs"):
            raise ValueError("a Git LFS pointer, not an ONNX model (the package shipped without the weights)")
    optimized_path = work_dir / f"{path.stem}.ort-optimized.onnx"
    sess = make_session(path, threads, optimized_out=optimized_path)
    entry["inputs"] = [i.name for i in sess.get_inputs()]
    entry["cosines"] = check_cosines(sess, tok)
    for c in entry["cosines"]:
        log(f"  [{name}] {c['a']} / {c['b']}: {c['cosine']:.4f} (reference {c['reference']}) "
            f"{'ok' if c['ok'] else 'OUT OF TOLERANCE'}")
    if compare_unoptimised:
        plain = make_session(path, threads, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        texts = [q for pair in REFERENCE for q in pair[:2]]
        diff = float(np.abs(embed(sess, tok, texts) - embed(plain, tok, texts)).max())
        entry["optimised_vs_unoptimised_max_abs_diff"] = diff
        log(f"  [{name}] ORT_ENABLE_ALL vs ORT_DISABLE_ALL embeddings: max |diff| {diff:.2e}")
        del plain
    entry["ops_after_ort_enable_all"] = op_counts(optimized_path)
    optimized_path.unlink(missing_ok=True)
    log(f"  [{name}] operators after ORT_ENABLE_ALL: {entry['ops_after_ort_enable_all']}")
    return entry


def summarise(runs: list[dict]) -> dict:
    """Median over the repeated runs of each run's median, per thread count and shape."""
    out: dict = {}
    for t in runs[0]:
        out[t] = {}
        for shape in runs[0][t]:
            med = statistics.median(r[t][shape]["median_ms"] for r in runs)
            batch = int(shape.split("x")[0])
            out[t][shape] = {"median_ms": round(med, 3), "sentences_per_s": round(batch * 1000.0 / med, 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR,
                    help="Hugging Face BERT directory (default: the repo's models/multilingual-e5-small)")
    ap.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "kefu-ort",
                    help="where the generated ONNX files go (default: kefu-ort in the system temp dir)")
    ap.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts (default 1,2)")
    ap.add_argument("--runs", type=int, default=3,
                    help="how many times to repeat the whole benchmark, to show noise (default 3)")
    ap.add_argument("--iters-small", type=int, default=200, help="timed runs of 1 x 16 (default 200)")
    ap.add_argument("--iters-large", type=int, default=20, help="timed runs of 32 x 32 (default 20)")
    ap.add_argument("--no-offline-fusion", action="store_true",
                    help="skip the onnxruntime.transformers-fused fp32 variant")
    ap.add_argument("--quantized", type=Path, action="append", default=[],
                    help="another ONNX model to check and benchmark the same way (repeatable)")
    ap.add_argument("--quantize-dynamic", action="store_true",
                    help="also make and benchmark an int8 model with onnxruntime.quantization")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the generated ONNX files even if present")
    args = ap.parse_args()

    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    shapes = [(1, 16, 20, args.iters_small), (32, 32, 3, args.iters_large)]
    model_dir = args.model_dir.resolve()
    work_dir = args.work_dir.resolve()
    if work_dir == REPO_ROOT or REPO_ROOT in work_dir.parents:
        raise SystemExit("--work-dir must be outside the repository (the ONNX files hold the weights)")
    work_dir.mkdir(parents=True, exist_ok=True)

    manifest_path = model_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else {}
    prefix = manifest.get("prefix", "query: ")
    tok = TextTokenizer(model_dir, prefix, int(manifest.get("max_tokens", 512)))
    real = [tok.encode(q) for q in QUESTIONS]
    cfg = load_config(model_dir)

    # 1. Generate the ONNX files (cached in the work dir; --rebuild regenerates them).
    def generated(path: Path, what: str, make) -> Path:
        if args.rebuild or not path.exists():
            log(f"writing {path} ({what})")
            started = time.perf_counter()
            make(path)
            log(f"  done in {time.perf_counter() - started:.1f} s")
        return path

    fp32 = generated(work_dir / "model.fp32.onnx", "exporter-style fp32 graph from model.safetensors",
                     lambda p: build_bert_onnx(model_dir, p))
    # (name, path, is one of our own fp32 graphs)
    candidates = [("onnx_fp32", fp32, True)]
    if not args.no_offline_fusion:
        fused = generated(work_dir / "model.fp32.fused.onnx", "onnxruntime.transformers BERT fusions",
                          lambda p: fuse_offline(fp32, p, cfg))
        candidates.append(("onnx_fp32_offline_fused", fused, True))
    if args.quantize_dynamic:
        source = candidates[-1][1]
        q8 = generated(work_dir / f"{source.stem}.int8-dynamic.onnx", f"quantize_dynamic of {source.name}",
                       lambda p: quantize_dynamic_int8(source, p))
        candidates.append(("ort_dynamic_int8", q8, False))
    candidates += [("quantized:" + p.name, p.resolve(), False) for p in args.quantized]

    # 2. Correctness: reference cosines for every model; a model that will not load is reported.
    models: dict = {}
    for name, path, own in candidates:
        log(f"checking {name}")
        try:
            models[name] = check_model(name, path, tok, max(threads), work_dir, compare_unoptimised=own)
        except Exception as e:
            models[name] = {"path": str(path), "error": f"{type(e).__name__}: {e}"}
            log(f"  [{name}] cannot be used: {models[name]['error']}")

    # 3. Benchmark, repeated --runs times over every model and thread count.
    for run in range(1, args.runs + 1):
        for name, entry in models.items():
            if "error" in entry:
                continue
            log(f"run {run}/{args.runs}: {name}")
            entry.setdefault("runs", []).append(bench_model(Path(entry["path"]), threads, shapes, real))
    for entry in models.values():
        if entry.get("runs"):
            entry["median_over_runs"] = summarise(entry["runs"])

    result = {
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "model": manifest.get("version", model_dir.name),
        "settings": {"graph_optimization_level": "ORT_ENABLE_ALL", "inter_op_num_threads": 1,
                     "execution_mode": "ORT_SEQUENTIAL", "threads": threads, "runs": args.runs,
                     "shapes": [{"batch": b, "tokens": s, "warmup": wu, "runs": r} for b, s, wu, r in shapes],
                     "token_ids": "src/bench.rs fixed_tokens over its QUESTIONS, prefix included; "
                                  "mask all ones, token_type_ids zeros"},
        "models": models,
    }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
