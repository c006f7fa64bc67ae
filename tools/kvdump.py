# Dumps the KV cache of a transformers causal LM (PyTorch) over text files into
# kvstat's canonical HDF5 layout (tools/kvstat_dumpfile.py):
#
#   python tools/kvdump.py --model NAME_OR_PATH --text FILE [FILE...] \
#       --max-tokens N --out dump.h5 [--dtype float16|bfloat16|float32] \
#       [--queries] [--pre-rope-keys]
#
# One sequence per text file, truncated to N tokens, right-padded into one batch.
# key/value come from the model's returned cache (post-RoPE); with --queries and
# --pre-rope-keys, query and key_pre_rope are the raw outputs of each layer's
# self_attn.q_proj / k_proj (pre-RoPE, before any q/k norm), captured by forward
# hooks. torch and transformers are imported only when a dump runs, so --help
# and the pure helpers work without them.

import argparse
import os
import re

from kvstat_dumpfile import DTYPES, write_canonical_dump

PROJ_NAME = re.compile(r"layers\.(\d+)\.self_attn\.(q_proj|k_proj)$")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Dump a causal LM's KV cache over text files to kvstat's HDF5 layout.")
    parser.add_argument("--model", required=True, help="transformers model name or local path")
    parser.add_argument("--text", required=True, nargs="+", metavar="FILE",
                        help="text files, one sequence each")
    parser.add_argument("--max-tokens", required=True, type=int, metavar="N",
                        help="truncate each sequence to N tokens")
    parser.add_argument("--out", required=True, help="output HDF5 path")
    parser.add_argument("--dtype", choices=DTYPES, default="float16", help="storage dtype")
    parser.add_argument("--queries", action="store_true", help="also dump q_proj outputs (pre-RoPE)")
    parser.add_argument("--pre-rope-keys", action="store_true",
                        help="also dump k_proj outputs as key_pre_rope")
    return parser.parse_args(argv)


def heads_first(x, num_heads, head_dim):
    """[batch, tokens, num_heads * head_dim] projection output -> [batch, num_heads, tokens, head_dim]."""
    batch, tokens, width = x.shape
    if width != num_heads * head_dim:
        raise ValueError(f"projection width {width} != {num_heads} heads x {head_dim}")
    return x.reshape(batch, tokens, num_heads, head_dim).transpose(0, 2, 1, 3)


def assemble_layers(cache, q_proj, k_proj, num_heads, num_kv_heads, head_dim):
    """Per-layer dicts for write_canonical_dump from arrays already moved to numpy.

    cache: per layer (key, value), each [batch, num_kv_heads, tokens, head_dim]
    q_proj, k_proj: per layer projection outputs [batch, tokens, width], or None
                    when not captured
    """
    layers = []
    for i, (key, value) in enumerate(cache):
        expected = (key.shape[0], num_kv_heads, key.shape[2], head_dim)
        for kind, array in (("key", key), ("value", value)):
            if array.shape != expected:
                raise ValueError(f"layer {i} cached {kind} has shape {array.shape}, expected {expected}")
        layer = {"key": key, "value": value}
        if q_proj is not None:
            layer["query"] = heads_first(q_proj[i], num_heads, head_dim)
        if k_proj is not None:
            layer["key_pre_rope"] = heads_first(k_proj[i], num_kv_heads, head_dim)
        layers.append(layer)
    return layers


def cache_pairs(cache):
    """(key, value) tensors per layer from a transformers cache object or legacy tuple."""
    if hasattr(cache, "layers"):  # transformers >= 4.56 / 5.x Cache
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):  # older DynamicCache
        return list(zip(cache.key_cache, cache.value_cache))
    return [(key, value) for key, value, *_ in cache]


def attention_dims(config):
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    num_heads = text.num_attention_heads
    num_kv_heads = getattr(text, "num_key_value_heads", None) or num_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // num_heads
    return num_heads, num_kv_heads, head_dim


def main(argv=None):
    args = parse_args(argv)
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    texts = []
    for path in args.text:
        with open(path, encoding="utf-8") as f:
            texts.append(f.read())

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    batch = tokenizer(texts, max_length=args.max_tokens, truncation=True, padding=True,
                      return_tensors="pt")

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype="auto").eval()
    num_heads, num_kv_heads, head_dim = attention_dims(model.config)

    captured = {"q_proj": {}, "k_proj": {}}
    wanted = {"q_proj": args.queries, "k_proj": args.pre_rope_keys}
    for name, module in model.named_modules():
        match = PROJ_NAME.search(name)
        if match and wanted[match.group(2)]:
            store = captured[match.group(2)]
            index = int(match.group(1))
            module.register_forward_hook(
                lambda _module, _inputs, output, store=store, index=index: store.__setitem__(index, output))
    with torch.inference_mode():
        output = model(**batch, use_cache=True)
    cache = getattr(output, "cache", None)  # transformers 5 renamed past_key_values
    if cache is None:
        cache = output.past_key_values

    def to_numpy(tensor):
        return tensor.detach().to(torch.float32).cpu().numpy()

    pairs = [(to_numpy(k), to_numpy(v)) for k, v in cache_pairs(cache)]
    projections = {}
    for proj, store in captured.items():
        if not wanted[proj]:
            projections[proj] = None
        elif sorted(store) != list(range(len(pairs))):
            raise SystemExit(f"found {proj} in {len(store)} of {len(pairs)} layers; "
                             f"this architecture names its attention projections differently")
        else:
            projections[proj] = [to_numpy(store[i]) for i in range(len(pairs))]
    layers = assemble_layers(pairs, projections["q_proj"], projections["k_proj"],
                             num_heads, num_kv_heads, head_dim)

    attrs = {
        "model": args.model,
        "revision": getattr(model.config, "_commit_hash", None) or "unknown",
        "text_source": "; ".join(os.path.abspath(p) for p in args.text),
        "created_by": "tools/kvdump.py",
        "rope": "key/value: model cache (post-RoPE); query, key_pre_rope: raw q_proj/k_proj outputs (pre-RoPE)",
        "model_dtype": str(model.dtype).removeprefix("torch."),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }
    write_canonical_dump(args.out, layers, batch["attention_mask"].numpy(), attrs, args.dtype)
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    print(f"wrote {args.out}: {len(layers)} layers, kinds {sorted(layers[0])}, "
          f"key shape {list(layers[0]['key'].shape)}, lengths {lengths}, {args.dtype}")


if __name__ == "__main__":
    main()
