"""A small byte-level BPE vocabulary, trained deterministically on sample text, written as a
vocab-only GGUF (architecture qwen2, tokenizer gpt2) for tokenizer tests.

usage: bpe_vocab.py PATH PRE   (PRE: tokenizer.ggml.pre, e.g. qwen2 or llama3)
"""
import sys
from collections import Counter

from gguf import GGUFWriter

path, pre = sys.argv[1], sys.argv[2]

def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}

B2U = bytes_to_unicode()
corpus = """The quick brown fox jumps over the lazy dog. The bank card fee is waived for the first year.
What is the annual fee of the platinum card? I lost my card yesterday, please block it.
我的信用卡丢了，怎么办？请帮我转人工客服。信用卡年费是多少？转账限额是多少？
Card number 4111 1111 1111 1111, amount 12,345.67 on 2026-11-22. Thank you for contacting us!
    indented code    with   spaces\ttabs\nnew lines"""
words = Counter()
for token in corpus.replace("\n", " \n ").split(" "):
    if token:
        words[tuple(B2U[b] for b in (" " + token).encode())] += 1
merges = []
for _ in range(400):
    pairs = Counter()
    for word, count in words.items():
        for a, b in zip(word, word[1:]):
            pairs[(a, b)] += count
    if not pairs:
        break
    best = max(pairs.items(), key=lambda kv: (kv[1], [-ord(c) for c in kv[0][0] + kv[0][1]]))[0]
    merges.append(best)
    merged = Counter()
    for word, count in words.items():
        out, i = [], 0
        while i < len(word):
            if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                out.append(word[i] + word[i + 1]); i += 2
            else:
                out.append(word[i]); i += 1
        merged[tuple(out)] += count
    words = merged

tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [B2U[b] for b in range(256)]
for a, b in merges:
    if a + b not in tokens:
        tokens.append(a + b)
types = [3, 3, 3] + [1] * (len(tokens) - 3)

w = GGUFWriter(path, "qwen2")
w.add_context_length(256); w.add_embedding_length(64); w.add_block_count(1); w.add_feed_forward_length(64)
w.add_head_count(4); w.add_head_count_kv(4); w.add_layer_norm_rms_eps(1e-6); w.add_rope_freq_base(10000.0)
w.add_tokenizer_model("gpt2")
w.add_tokenizer_pre(pre)
w.add_token_list(tokens)
w.add_token_types(types)
w.add_token_merges([f"{a} {b}" for a, b in merges])
w.add_bos_token_id(0); w.add_eos_token_id(2)
w.add_add_bos_token(False)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
print(path)
