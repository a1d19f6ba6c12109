"""A small random model of ARCH written as GGUF, and its logits from a numpy reference
forward pass (written from the architecture descriptions, independent of Sluice's code).

usage: synthetic_model.py ARCH PATH   (ARCH: llama, qwen2, gemma3)
prints JSON {"tokens": [...], "logits": [[vocab floats] per position]}
Weights are F32 except the embeddings (F16), so the comparison is tight.
"""
import json
import sys

import numpy as np
from gguf import GGUFWriter

arch, path = sys.argv[1], sys.argv[2]
rng = np.random.default_rng({"llama": 1, "qwen2": 2, "gemma3": 3}[arch])

d, n_head, n_kv, head_dim, ff, n_layer, vocab, eps = 64, 4, 2, 16, 96, 3, 320, 1e-6
rope_base, rope_local, window, pattern = 10000.0, 10000.0, 5, 2
if arch == "gemma3":
    rope_base = 1000000.0

def mat(rows, cols, scale=None):
    return (rng.standard_normal((rows, cols)) * (scale or 1 / np.sqrt(cols))).astype(np.float32)

def vec(n, around=1.0):
    return (around + 0.1 * rng.standard_normal(n)).astype(np.float32)

W = {"token_embd.weight": rng.standard_normal((vocab, d)).astype(np.float16).astype(np.float32) * 0.5,
     "output_norm.weight": vec(d)}
if arch != "gemma3":
    W["output.weight"] = mat(vocab, d)
for i in range(n_layer):
    p = f"blk.{i}."
    W[p + "attn_norm.weight"] = vec(d)
    W[p + "attn_q.weight"] = mat(n_head * head_dim, d)
    W[p + "attn_k.weight"] = mat(n_kv * head_dim, d)
    W[p + "attn_v.weight"] = mat(n_kv * head_dim, d)
    W[p + "attn_output.weight"] = mat(d, n_head * head_dim)
    W[p + "ffn_norm.weight"] = vec(d)
    W[p + "ffn_gate.weight"] = mat(ff, d)
    W[p + "ffn_up.weight"] = mat(ff, d)
    W[p + "ffn_down.weight"] = mat(d, ff)
    if arch == "qwen2":
        W[p + "attn_q.bias"] = vec(n_head * head_dim, 0.0)
        W[p + "attn_k.bias"] = vec(n_kv * head_dim, 0.0)
        W[p + "attn_v.bias"] = vec(n_kv * head_dim, 0.0)
    if arch == "gemma3":
        W[p + "attn_q_norm.weight"] = vec(head_dim)
        W[p + "attn_k_norm.weight"] = vec(head_dim)
        W[p + "post_attention_norm.weight"] = vec(d)
        W[p + "post_ffw_norm.weight"] = vec(d)

w = GGUFWriter(path, arch)
w.add_name(f"synthetic-{arch}")
w.add_context_length(256)
w.add_embedding_length(d)
w.add_block_count(n_layer)
w.add_feed_forward_length(ff)
w.add_head_count(n_head)
w.add_head_count_kv(n_kv)
w.add_key_length(head_dim)
w.add_value_length(head_dim)
w.add_layer_norm_rms_eps(eps)
w.add_rope_freq_base(rope_base)
if arch == "gemma3":
    w.add_sliding_window(window)
    w.add_uint32("gemma3.attention.sliding_window_pattern", pattern)
w.add_tokenizer_model("llama")
tokens = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"<0x{b:02X}>" for b in range(256)] + [f"▁w{i}" for i in range(vocab - 260)]
w.add_token_list(tokens)
w.add_token_scores([0.0] * vocab)
w.add_token_types([3, 3, 3, 2] + [6] * 256 + [1] * (vocab - 260))
w.add_bos_token_id(2)
w.add_eos_token_id(1)
for name, value in W.items():
    if name == "token_embd.weight":
        w.add_tensor(name, value.astype(np.float16))
    else:
        w.add_tensor(name, value)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()

# ---- reference forward ----
def rms(x, weight):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight

def rope(x, pos, base, neox):  # x: [heads, head_dim]
    half = head_dim // 2
    out = x.copy()
    for i in range(half):
        theta = pos * base ** (-2.0 * i / head_dim)
        c, s = np.cos(theta), np.sin(theta)
        a, b = (i, i + half) if neox else (2 * i, 2 * i + 1)
        out[:, a] = x[:, a] * c - x[:, b] * s
        out[:, b] = x[:, a] * s + x[:, b] * c
    return out

def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))

def silu(x):
    return x / (1 + np.exp(-x))

seq = [2] + list(rng.integers(260, vocab, size=11))
T = len(seq)
x = W["token_embd.weight"][seq].astype(np.float64)
if arch == "gemma3":
    x = x * np.sqrt(d)
neox = arch in ("qwen2", "gemma3")
for i in range(n_layer):
    p = f"blk.{i}."
    local = arch == "gemma3" and i % pattern < pattern - 1
    base = rope_local if local else rope_base
    h = rms(x, W[p + "attn_norm.weight"])
    q = h @ W[p + "attn_q.weight"].T
    k = h @ W[p + "attn_k.weight"].T
    v = h @ W[p + "attn_v.weight"].T
    if arch == "qwen2":
        q, k, v = q + W[p + "attn_q.bias"], k + W[p + "attn_k.bias"], v + W[p + "attn_v.bias"]
    q = q.reshape(T, n_head, head_dim)
    k = k.reshape(T, n_kv, head_dim)
    v = v.reshape(T, n_kv, head_dim)
    if arch == "gemma3":
        q = rms(q, W[p + "attn_q_norm.weight"])
        k = rms(k, W[p + "attn_k_norm.weight"])
    q = np.stack([rope(q[t], t, base, neox) for t in range(T)])
    k = np.stack([rope(k[t], t, base, neox) for t in range(T)])
    out = np.zeros((T, n_head, head_dim))
    for t in range(T):
        first = max(0, t - window + 1) if local else 0
        for hh in range(n_head):
            kv = hh // (n_head // n_kv)
            scores = k[first:t + 1, kv] @ q[t, hh] / np.sqrt(head_dim)
            weights = np.exp(scores - scores.max())
            weights /= weights.sum()
            out[t, hh] = weights @ v[first:t + 1, kv]
    a = out.reshape(T, -1) @ W[p + "attn_output.weight"].T
    if arch == "gemma3":
        a = rms(a, W[p + "post_attention_norm.weight"])
    x = x + a
    h = rms(x, W[p + "ffn_norm.weight"])
    g = h @ W[p + "ffn_gate.weight"].T
    u = h @ W[p + "ffn_up.weight"].T
    f = ((gelu_tanh(g) if arch == "gemma3" else silu(g)) * u) @ W[p + "ffn_down.weight"].T
    if arch == "gemma3":
        f = rms(f, W[p + "post_ffw_norm.weight"])
    x = x + f
out_matrix = W["token_embd.weight"] if arch == "gemma3" else W["output.weight"]
logits = rms(x, W["output_norm.weight"]) @ out_matrix.T
print(json.dumps({"tokens": [int(t) for t in seq], "logits": logits.astype(float).tolist()}))
