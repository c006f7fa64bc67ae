# Dumps the KV cache of a transformers causal LM (PyTorch) over text files into
# kvstat's canonical HDF5 layout (tools/kvstat_dumpfile.py):
#
#   python tools/kvdump.py --model NAME_OR_PATH --text FILE [FILE...] \
#       --max-tokens N --out dump.h5 [--dtype float16|bfloat16|float32] \
#       [--queries] [--pre-rope-keys]
#
# One sequence per text file, truncated to N tokens, right-padded into one batch.
# key/value come from a full DynamicCache passed to the model (every token, also for
# sliding-window layers, whose default cache keeps only the last window - 1); they are
# post-RoPE when the model applies RoPE (rope_description). With --queries and
# --pre-rope-keys, query and key_pre_rope start from each layer's self_attn.q_proj /
# k_proj outputs (forward hooks), pass through the attention module's own q_norm /
# k_norm when it has one, and the query is then rotated with the module's own
# apply_rotary_pos_emb and the (cos, sin) the forward handed the module: query is
# post-RoPE (root attribute query_rope), key_pre_rope is what RoPE rotates. Every
# layer is checked: the same recomputation on the keys must give the cached keys,
# else the dump is refused. torch and transformers are imported only when a dump
# runs, so --help and the pure helpers work without them. Tested with transformers
# 4.57 and 5.x (scripts/check-dumper.sh).

import argparse
import inspect
import json
import os
import re
import sys

from kvstat_dumpfile import DTYPES, write_canonical_dump

PROJ_NAME = re.compile(r"layers\.(\d+)\.self_attn\.(q_proj|k_proj)$")
COMMIT = re.compile(r"[0-9a-f]{40}")
# Module names under which architectures keep fused attention projections.
FUSED_PROJ = ("c_attn", "qkv_proj", "query_key_value", "Wqkv", "qkv", "W_pack", "in_proj")
OPTION = {"q_proj": "--queries", "k_proj": "--pre-rope-keys"}


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
    parser.add_argument("--queries", action="store_true",
                        help="also dump the queries (q_proj, q_norm if any, then the model's own RoPE)")
    parser.add_argument("--pre-rope-keys", action="store_true",
                        help="also dump the keys before RoPE (k_proj, k_norm if any) as key_pre_rope")
    args = parser.parse_args(argv)
    if args.max_tokens < 1:
        parser.error(f"--max-tokens must be at least 1, got {args.max_tokens}")
    return args


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


def text_config(config):
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def attention_dims(config):
    text = text_config(config)
    num_heads = text.num_attention_heads
    num_kv_heads = getattr(text, "num_key_value_heads", None) or num_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // num_heads
    return num_heads, num_kv_heads, head_dim


def hub_cache_dir():
    """The Hugging Face hub cache folder: huggingface_hub's setting, or its documented defaults."""
    try:
        from huggingface_hub import constants
        return constants.HF_HUB_CACHE
    except ImportError:
        home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
        return os.environ.get("HF_HUB_CACHE") or os.path.join(home, "hub")


def resolve_revision(model, config=None, cache_dir=None):
    """The commit of the model files, for the `revision` attribute.

    In order: config._commit_hash (transformers 4.x sets it; 5.x does not); for a local folder, the
    folder name when it is a hub-cache snapshot (.../models--ORG--NAME/snapshots/COMMIT), else
    "unknown (local folder)"; for a hub id, the hub cache's models--ORG--NAME/refs/main (what
    from_pretrained loaded), else its only snapshot, else "unknown (not in the hub cache CACHE)".
    """
    commit = getattr(config, "_commit_hash", None)
    if isinstance(commit, str) and COMMIT.fullmatch(commit):
        return commit
    if os.path.isdir(model):
        parts = os.path.realpath(model).split(os.sep)
        if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--") \
                and COMMIT.fullmatch(parts[-1]):
            return parts[-1]
        return "unknown (local folder)"
    cache_dir = cache_dir or hub_cache_dir()
    repo = os.path.join(cache_dir, "models--" + model.replace("/", "--"))
    try:
        with open(os.path.join(repo, "refs", "main"), encoding="utf-8") as f:
            commit = f.read().strip()
        if COMMIT.fullmatch(commit):
            return commit
    except OSError:
        pass
    try:
        snapshots = [name for name in os.listdir(os.path.join(repo, "snapshots")) if COMMIT.fullmatch(name)]
    except OSError:
        snapshots = []
    if len(snapshots) == 1:
        return snapshots[0]
    return f"unknown (not in the hub cache {cache_dir})"


# Architectures whose rotary embedding pairs channels 2i, 2i+1 (rotate_every_two); the rest of transformers'
# RoPE models pair i with i + rotary_dim/2 (rotate_half).
INTERLEAVED_ROPE = ("GPTJ", "CodeGen")
# model_type of architectures that apply RoPE without a *RotaryEmbedding module: GPT-J and CodeGen build their
# angles with create_sinusoidal_positions(max_positions, config.rotary_dim), base 10000, in the attention itself.
SINUSOIDAL_ROPE = ("gptj", "codegen")


def applies_rope(module_classes, config):
    """Whether the model rotates its keys: a module whose class name contains "RotaryEmbedding" (every RoPE
    model in transformers but GPT-J and CodeGen has one), or config.model_type gptj / codegen; never when the
    config selects ALiBi (`alibi`, Falcon, which builds a rotary module all the same)."""
    text = text_config(config)
    if getattr(text, "alibi", False):
        return False
    return any("RotaryEmbedding" in name for name in module_classes) \
        or getattr(text, "model_type", None) in SINUSOIDAL_ROPE


def rope_description(architecture, module_classes, config):
    """The `rope` attribute: whether key/value are post-RoPE (applies_rope), and what query and key_pre_rope
    are. Layers whose config.no_rope_layers flag is 0 (SmolLM3, Llama 4) skip RoPE and are named. Without RoPE
    the value starts with "none"."""
    text = text_config(config)
    if not applies_rope(module_classes, config):
        how = "ALiBi attention biases" if getattr(text, "alibi", False) else "no rotary position embedding"
        return (f"none ({architecture} applies {how}); key/value: model cache; query, key_pre_rope: "
                "q_proj/k_proj outputs after the attention's q_norm/k_norm if any (no RoPE)")
    description = ("key/value: model cache (post-RoPE); query: q_proj output after the attention's q_norm if any, "
                   "rotated by the model's own RoPE (post-RoPE); key_pre_rope: k_proj output after the attention's "
                   "k_norm if any (pre-RoPE: what RoPE rotates into key)")
    flags = getattr(text, "no_rope_layers", None)
    if flags and not all(flags):
        nope = ", ".join(str(i) for i, use_rope in enumerate(flags) if not use_rope)
        description += f"; layers without RoPE (NoPE), where key = key_pre_rope: {nope}"
    return description


def rope_attributes(architecture, module_classes, config, head_dim):
    """Root attributes kvstat fit-lowrank --keys pre-rope reads (docs/fit-lowrank.md): rope_theta, rope_style
    (rotate-half or interleaved), rotary_dim (head_dim x partial_rotary_factor; GPT-J and CodeGen:
    config.rotary_dim) and rope_scaling (the RoPE parameters as JSON, rope_type included). Empty for models
    without RoPE. GPT-J and CodeGen: theta 10000 (fixed in their code). rope_theta is left out when the config
    has none or one per layer type (Gemma 3: transformers 5's rope_parameters per layer type, 4.x's rope_theta
    + rope_local_base_freq; rope_scaling then holds the parameters per layer type, without a top-level
    rope_type, and kvstat fit-lowrank --keys pre-rope refuses the dump: one theta cannot serve both)."""
    text = text_config(config)
    if not applies_rope(module_classes, config):
        return {}
    interleaved = architecture.startswith(INTERLEAVED_ROPE) or getattr(text, "model_type", None) in SINUSOIDAL_ROPE
    style = "interleaved" if interleaved else "rotate-half"
    if getattr(text, "model_type", None) in SINUSOIDAL_ROPE:
        return {"rope_style": style, "rotary_dim": int(getattr(text, "rotary_dim", None) or head_dim),
                "rope_theta": 10000.0}
    params = getattr(text, "rope_parameters", None) or {}  # transformers 5; 4.x: rope_theta, rope_scaling
    factor = getattr(text, "partial_rotary_factor", None) or 1.0
    local = getattr(text, "rope_local_base_freq", None)  # transformers 4.x Gemma 3: sliding layers' theta
    if params and all(isinstance(v, dict) for v in params.values()):
        per_type = params
    elif local is not None and not params:
        full = {"rope_type": "default", **(getattr(text, "rope_scaling", None) or {})}
        full["rope_theta"] = getattr(text, "rope_theta", None)
        per_type = {"full_attention": full, "sliding_attention": {"rope_type": "default", "rope_theta": local}}
    else:
        per_type = None
    attrs = {"rope_style": style}
    if per_type is not None:
        factors = {v.get("partial_rotary_factor", factor) for v in per_type.values()}
        if len(factors) == 1:
            attrs["rotary_dim"] = int(head_dim * (factors.pop() or 1.0))
        attrs["rope_scaling"] = json.dumps(per_type, sort_keys=True, default=str)
        return attrs
    theta = params.get("rope_theta", getattr(text, "rope_theta", None))
    factor = params.get("partial_rotary_factor", factor) or 1.0
    scaling = {k: v for k, v in params.items() if k != "rope_theta"} or getattr(text, "rope_scaling", None)
    attrs["rotary_dim"] = int(head_dim * factor)
    if theta is not None:
        attrs["rope_theta"] = float(theta)
    if scaling:
        attrs["rope_scaling"] = json.dumps(scaling, sort_keys=True, default=str)
    return attrs


def projection_problem(proj, found, num_layers, architecture, fused, option=None):
    """The error for --queries / --pre-rope-keys when `proj` is not a per-layer module, else None.

    found: layer indices with a layers.N.self_attn.PROJ module; fused: names of fused projection
    modules (FUSED_PROJ) the model has; option: the option(s) to name (default: OPTION[proj]).
    """
    if sorted(found) == list(range(num_layers)):
        return None
    if fused:
        why = f"it fuses the attention projections into {', '.join(sorted(fused))}"
    else:
        why = f"layers.N.self_attn.{proj} is in {len(found)} of its {num_layers} layers"
    return unsupported(option or OPTION[proj], architecture, why)


def unsupported(option, architecture, why):
    """The one-line refusal of `option` ("--queries", "--queries and --pre-rope-keys", ...)."""
    verb = "are" if " and " in option else "is"
    return f"{option} {verb} unsupported for {architecture}: {why}; run without {option}"


class RotationError(Exception):
    """kvdump cannot reproduce what the model's attention does to q_proj/k_proj outputs."""


def position_embeddings_hook(store, index):
    """A forward pre-hook (register_forward_pre_hook(..., with_kwargs=True)) keeping in store[index] the
    (cos, sin) the decoder layer hands its attention module (`position_embeddings`, as transformers' RoPE
    attentions take it since 4.48), or None when the module gets none."""
    def hook(module, args, kwargs):
        value = kwargs.get("position_embeddings")
        if value is None and args:
            try:
                value = inspect.signature(module.forward).bind_partial(*args, **kwargs).arguments.get(
                    "position_embeddings")
            except (TypeError, ValueError):
                value = None
        store[index] = value
    return hook


def normed_heads(norm, x, heads, head_dim, name):
    """Projection output x [batch, tokens, heads * head_dim] -> [batch, heads, tokens, head_dim] after the
    attention module's own q_norm/k_norm `norm` (None: none), applied over the width of its weight:
    heads * head_dim (OLMo 2 normalises the whole projection) or head_dim (Qwen3, Gemma 3: per head). A norm
    over the last axis gives the same numbers whether heads or tokens come first."""
    batch, tokens, width = x.shape
    if width != heads * head_dim:
        raise RotationError(f"a {name} output is {width} wide, not {heads} heads x {head_dim}")
    if norm is not None:
        weight = getattr(norm, "weight", None)
        size = weight.numel() if weight is not None else head_dim
        if size == width:
            x = norm(x)
        elif size == head_dim:
            x = norm(x.reshape(batch, tokens, heads, head_dim)).reshape(batch, tokens, width)
        else:
            raise RotationError(f"its {name} norm has {size} weights, neither head_dim {head_dim} nor {width}")
    return x.reshape(batch, tokens, heads, head_dim).transpose(1, 2)


def rotate_like_module(attention, x, position_embeddings):
    """x [batch, heads, tokens, head_dim] rotated as `attention` rotates: its modeling module's own
    apply_rotary_pos_emb(q, k, cos, sin) with the (cos, sin) its forward received, on the first cos.shape[-1]
    channels (partial rotary, split off as Phi, GPT-NeoX and StableLM do), the other channels unchanged."""
    import torch

    apply = getattr(sys.modules.get(type(attention).__module__), "apply_rotary_pos_emb", None)
    if apply is None:
        raise RotationError(f"{type(attention).__module__} has no apply_rotary_pos_emb")
    if not (isinstance(position_embeddings, (tuple, list)) and len(position_embeddings) == 2):
        raise RotationError(f"its attention modules ({type(attention).__name__}) get no position_embeddings "
                            "(cos, sin) from the forward")
    cos, sin = position_embeddings
    rotated = cos.shape[-1]
    if rotated < x.shape[-1]:
        head, _ = apply(x[..., :rotated], x[..., :rotated], cos, sin)
        return torch.cat([head, x[..., rotated:]], dim=-1)
    return apply(x, x, cos, sin)[0]


def matches(ours, cached):
    """Whether a recomputed key equals the cached one up to rounding in the cache's dtype: largest difference
    <= max(1e-4, 4 eps) x largest |cached|."""
    import torch

    if ours.shape != cached.shape:
        return False
    ours, reference = ours.to(torch.float32), cached.to(torch.float32)
    scale = reference.abs().max().item()
    tolerance = max(1e-4, 4 * torch.finfo(cached.dtype).eps) * scale if cached.is_floating_point() else 0.0
    return (ours - reference).abs().max().item() <= tolerance


def rebuild_queries_and_keys(attentions, q_proj, k_proj, cached_keys, positions, rope, dims):
    """Per layer (query, key_pre_rope), each [batch, tokens, heads * head_dim] as assemble_layers takes them.

    key_pre_rope = k_norm(k_proj) (k_norm only when the attention module has one); query = q_norm(q_proj),
    rotated with rotate_like_module in the layers that apply RoPE. Each layer is checked against its cache:
    RoPE(key_pre_rope) must equal the cached key (or, in a RoPE model's NoPE layer, key_pre_rope itself; then
    the query is left unrotated too). attentions: the layers' attention modules; q_proj: outputs or None;
    rope: whether the model applies RoPE (applies_rope); dims: (num_heads, num_kv_heads, head_dim). Raises
    RotationError naming the first layer that does not reproduce its cache."""
    num_heads, num_kv_heads, head_dim = dims
    layers = []
    for i, attention in enumerate(attentions):
        key = normed_heads(getattr(attention, "k_norm", None), k_proj[i], num_kv_heads, head_dim, "k_proj")
        if rope:
            rotated = rotate_like_module(attention, key, positions.get(i))
            layer_rope = matches(rotated, cached_keys[i])
            if not layer_rope and not matches(key, cached_keys[i]):
                raise RotationError(f"layer {i}'s cached keys are neither RoPE(k_norm(k_proj)) nor k_norm(k_proj) "
                                    "as kvdump recomputes them with the attention module's own norm and RoPE")
        elif not matches(key, cached_keys[i]):
            raise RotationError(f"layer {i}'s cached keys are not its k_proj outputs (after k_norm if any)")
        else:
            layer_rope = False
        query = None
        if q_proj is not None:
            query = normed_heads(getattr(attention, "q_norm", None), q_proj[i], num_heads, head_dim, "q_proj")
            if layer_rope:
                query = rotate_like_module(attention, query, positions.get(i))
            query = query.transpose(1, 2).flatten(2)
        layers.append((query, key.transpose(1, 2).flatten(2)))
    return layers


def cache_argument(model):
    """The forward() keyword for the cache: `cache` in transformers >= 5.x, else past_key_values."""
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in parameters else "past_key_values"


def dtype_argument(transformers):
    """from_pretrained's keyword for the weights' dtype: `dtype` since transformers 4.56."""
    numbers = [int(part) for part in re.findall(r"\d+", transformers.__version__)[:2]]
    return "dtype" if tuple(numbers + [0] * (2 - len(numbers))) >= (4, 56) else "torch_dtype"


def main(argv=None):
    args = parse_args(argv)
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

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
    for path, length in zip(args.text, batch["attention_mask"].sum(dim=1).tolist()):
        if length == 0:
            raise SystemExit(f"kvdump.py: error: {path}: the tokenizer gives no tokens")

    model = AutoModelForCausalLM.from_pretrained(args.model, **{dtype_argument(transformers): "auto"}).eval()
    architecture = type(model).__name__
    num_heads, num_kv_heads, head_dim = attention_dims(model.config)
    num_layers = text_config(model.config).num_hidden_layers

    module_classes = {type(module).__name__ for module in model.modules()}
    rope = applies_rope(module_classes, model.config)
    # The queries and pre-RoPE keys are rebuilt from k_proj (and q_proj) and checked against the cache, so
    # either option hooks k_proj.
    wanted = {"q_proj": args.queries, "k_proj": args.queries or args.pre_rope_keys}
    options = " and ".join(o for o, on in (("--queries", args.queries), ("--pre-rope-keys", args.pre_rope_keys))
                           if on)
    captured = {"q_proj": {}, "k_proj": {}}
    found = {"q_proj": [], "k_proj": []}
    attentions, positions = {}, {}
    fused = set()
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in FUSED_PROJ:
            fused.add(name.rsplit(".", 1)[-1])
        match = PROJ_NAME.search(name)
        if match:
            found[match.group(2)].append(int(match.group(1)))
        if match and wanted[match.group(2)]:
            store = captured[match.group(2)]
            index = int(match.group(1))
            module.register_forward_hook(
                lambda _module, _inputs, output, store=store, index=index: store.__setitem__(index, output))
            if index not in attentions:
                attention = model.get_submodule(name.rsplit(".", 1)[0])
                attentions[index] = attention
                if rope:
                    attention.register_forward_pre_hook(position_embeddings_hook(positions, index),
                                                        with_kwargs=True)
    # Fail before the forward pass when a wanted projection is not one module per layer.
    for proj in captured:
        problem = wanted[proj] and projection_problem(proj, found[proj], num_layers, architecture, fused,
                                                      options if proj == "k_proj" else None)
        if problem:
            raise SystemExit(f"kvdump.py: error: {problem}")

    # A DynamicCache built without the config keeps every token in every layer; the model's default
    # cache keeps only the last sliding_window - 1 tokens of sliding-window layers.
    cache = DynamicCache()
    with torch.inference_mode():
        # Only ids and mask: a generic tokenizer's token_type_ids would add GPT-2's token-type embedding.
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=True,
              **{cache_argument(model): cache})

    def to_numpy(tensor):
        return tensor.detach().to(torch.float32).cpu().numpy()

    cached = cache_pairs(cache)
    # A model whose forward swallowed the cache argument leaves it empty: never write an empty or partial dump.
    if len(cached) != num_layers:
        raise SystemExit(f"kvdump.py: error: the cache holds {len(cached)} layers of keys and values, but "
                         f"{architecture} has {num_layers}; this model's forward does not fill the cache it was given")
    projections = {"q_proj": None, "k_proj": None}
    if options:
        for proj, store in captured.items():
            problem = wanted[proj] and projection_problem(proj, store.keys(), len(cached), architecture, fused,
                                                          options if proj == "k_proj" else None)
            if problem:
                raise SystemExit(f"kvdump.py: error: {problem}")
        try:
            with torch.inference_mode():
                rebuilt = rebuild_queries_and_keys(
                    [attentions[i] for i in range(num_layers)],
                    [captured["q_proj"][i] for i in range(num_layers)] if args.queries else None,
                    [captured["k_proj"][i] for i in range(num_layers)], [key for key, _ in cached], positions,
                    rope, (num_heads, num_kv_heads, head_dim))
        except RotationError as error:
            raise SystemExit(f"kvdump.py: error: {unsupported(options, architecture, str(error))}")
        if args.queries:
            projections["q_proj"] = [to_numpy(query) for query, _ in rebuilt]
        if args.pre_rope_keys:
            projections["k_proj"] = [to_numpy(key) for _, key in rebuilt]
    pairs = [(to_numpy(k), to_numpy(v)) for k, v in cached]
    layers = assemble_layers(pairs, projections["q_proj"], projections["k_proj"],
                             num_heads, num_kv_heads, head_dim)

    attrs = {
        "model": args.model,
        "revision": resolve_revision(args.model, model.config),
        "text_source": "; ".join(os.path.abspath(p) for p in args.text),
        "created_by": "tools/kvdump.py",
        "architecture": architecture,
        "rope": rope_description(architecture, module_classes, model.config),
        "model_dtype": str(model.dtype).removeprefix("torch."),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        **rope_attributes(architecture, module_classes, model.config, head_dim),
    }
    if args.queries:  # kvstat's attention measures need queries rotated like the keys
        attrs["query_rope"] = "post-RoPE" if rope else "none"
    write_canonical_dump(args.out, layers, batch["attention_mask"].numpy(), attrs, args.dtype)
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    print(f"wrote {args.out}: {len(layers)} layers, kinds {sorted(layers[0])}, "
          f"key shape {list(layers[0]['key'].shape)}, lengths {lengths}, {args.dtype}")


if __name__ == "__main__":
    main()
