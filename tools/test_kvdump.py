# Tests for tools/kvdump.py against real transformers models: tiny randomly initialised Llama, Mistral
# (sliding window), Qwen2 (use_sliding_window), Gemma 2 (alternating sliding/full layers), Qwen3, OLMo 2
# and Gemma 3 (key norms before RoPE), SmolLM3 (a NoPE layer), GPT-2 (no RoPE, fused c_attn), OPT (no
# RoPE), GPT-J and CodeGen (interleaved RoPE, no rotary module in 4.57), built from configs in temporary
# folders (no hub downloads). The dumped queries must reproduce the model's own attention weights with the
# dumped keys. The pure helpers (revision from a fake hub cache, the rope attribute, the fused-projection
# message) run without torch;
# the end-to-end tests skip without torch + transformers, so CI skips them: scripts/check-dumper.sh
# installs both into a venv and runs them. Run: python -m pytest tools/test_kvdump.py

import json
import os
import shutil
import subprocess
import sys
import types

import h5py
import numpy as np
import pytest

import kvdump

TOOLS = os.path.dirname(os.path.abspath(__file__))
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
WINDOW = 4  # sliding window, far shorter than the dumped text
MAX_TOKENS = 24
TEXTS = {"a.txt": "the quick brown fox jumps over the lazy dog " * 2, "b.txt": "a lazy dog"}
LENGTHS = [MAX_TOKENS, len(TEXTS["b.txt"])]  # the byte-level tokenizer gives one token per byte


# --- pure helpers (no torch) -------------------------------------------------

def fake_hub_repo(cache, repo_id, commits, main=None):
    """A hub-cache folder in huggingface_hub's layout: models--ORG--NAME/{refs/main, snapshots/COMMIT/}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    for commit in commits:
        (repo / "snapshots" / commit).mkdir(parents=True)
    if main is not None:
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(main)
    return repo


def test_revision_from_hub_cache_refs_main(tmp_path):
    fake_hub_repo(tmp_path, "org/model", [COMMIT, OTHER_COMMIT], main=COMMIT)
    assert kvdump.resolve_revision("org/model", cache_dir=str(tmp_path)) == COMMIT


def test_revision_from_the_only_snapshot(tmp_path):
    fake_hub_repo(tmp_path, "org/model", [OTHER_COMMIT])
    assert kvdump.resolve_revision("org/model", cache_dir=str(tmp_path)) == OTHER_COMMIT


def test_revision_unknown_when_ambiguous_or_absent(tmp_path):
    fake_hub_repo(tmp_path, "org/two", [COMMIT, OTHER_COMMIT], main="not-a-commit\n")
    for repo_id in ("org/two", "org/absent"):
        revision = kvdump.resolve_revision(repo_id, cache_dir=str(tmp_path))
        assert revision == f"unknown (not in the hub cache {tmp_path})"


def test_revision_of_local_folders(tmp_path):
    repo = fake_hub_repo(tmp_path, "org/model", [COMMIT], main=COMMIT)
    assert kvdump.resolve_revision(str(repo / "snapshots" / COMMIT)) == COMMIT
    (tmp_path / "plain").mkdir()
    assert kvdump.resolve_revision(str(tmp_path / "plain")) == "unknown (local folder)"
    # transformers 4.x records the commit on the config; it wins.
    config = types.SimpleNamespace(_commit_hash=OTHER_COMMIT)
    assert kvdump.resolve_revision(str(tmp_path / "plain"), config) == OTHER_COMMIT


def test_rope_description():
    config = types.SimpleNamespace(num_hidden_layers=4)
    post = kvdump.rope_description("LlamaForCausalLM", {"LlamaRotaryEmbedding", "Linear"}, config)
    assert post.startswith("key/value: model cache (post-RoPE)") and "NoPE" not in post
    assert "rotated by the model's own RoPE (post-RoPE)" in post and "k_norm if any (pre-RoPE" in post
    gpt2 = kvdump.rope_description("GPT2LMHeadModel", {"GPT2Attention", "Conv1D"}, config)
    assert gpt2.startswith("none (GPT2LMHeadModel applies no rotary position embedding)")
    # Falcon builds a rotary module even when its config selects ALiBi.
    alibi = kvdump.rope_description("FalconForCausalLM", {"FalconRotaryEmbedding"},
                                    types.SimpleNamespace(alibi=True))
    assert alibi.startswith("none (FalconForCausalLM applies ALiBi attention biases)")
    nope = kvdump.rope_description("SmolLM3ForCausalLM", {"SmolLM3RotaryEmbedding"},
                                   types.SimpleNamespace(no_rope_layers=[1, 1, 0, 1, 1, 0]))
    assert nope.startswith("key/value: model cache (post-RoPE)") and nope.endswith("key = key_pre_rope: 2, 5")


def test_rope_attributes():
    rotary = {"LlamaRotaryEmbedding"}
    v5 = types.SimpleNamespace(rope_parameters={"rope_type": "default", "rope_theta": 500000.0})
    assert kvdump.rope_attributes("LlamaForCausalLM", rotary, v5, 64) == {
        "rope_theta": 500000.0, "rope_style": "rotate-half", "rotary_dim": 64,
        "rope_scaling": '{"rope_type": "default"}'}
    v4 = types.SimpleNamespace(rope_theta=10000, partial_rotary_factor=0.25,
                               rope_scaling={"type": "linear", "factor": 2.0})
    assert kvdump.rope_attributes("PhiForCausalLM", {"PhiRotaryEmbedding"}, v4, 256) == {
        "rope_theta": 10000.0, "rope_style": "rotate-half", "rotary_dim": 64,
        "rope_scaling": '{"factor": 2.0, "type": "linear"}'}
    per_type = {"full_attention": {"rope_theta": 1e6}, "sliding_attention": {"rope_theta": 1e4}}
    assert kvdump.rope_attributes("Gemma3ForCausalLM", {"Gemma3RotaryEmbedding"},
                                  types.SimpleNamespace(rope_parameters=per_type), 64) == {
        "rope_style": "rotate-half", "rotary_dim": 64, "rope_scaling": json.dumps(per_type, sort_keys=True)}
    # transformers 4.x Gemma 3: rope_theta for full layers, rope_local_base_freq for sliding ones.
    gemma3_v4 = types.SimpleNamespace(rope_theta=1e6, rope_local_base_freq=1e4, rope_scaling=None)
    attrs = kvdump.rope_attributes("Gemma3ForCausalLM", {"Gemma3RotaryEmbedding"}, gemma3_v4, 64)
    assert "rope_theta" not in attrs and attrs["rope_style"] == "rotate-half"
    assert json.loads(attrs["rope_scaling"]) == {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                                 "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}
    assert kvdump.rope_attributes("GPT2LMHeadModel", {"Conv1D"}, v4, 64) == {}


@pytest.mark.parametrize("kind", ["gptj", "codegen"])
def test_gptj_and_codegen_rope_from_their_real_configs(kind):
    """In transformers 4.57 GPT-J and CodeGen have no *RotaryEmbedding module (5.x added one): their RoPE
    (interleaved pairs, theta 10000, the first config.rotary_dim channels) is recognised from the config."""
    transformers = pytest.importorskip("transformers")
    config_class, model_class, arguments = MODELS[kind]
    config = getattr(transformers, config_class)(**arguments)
    modules = {f"{model_class[:-len('ForCausalLM')]}Attention", "Linear", "Embedding"}
    assert not any("RotaryEmbedding" in name for name in modules)
    assert kvdump.rope_attributes(model_class, modules, config, 8) == {
        "rope_style": "interleaved", "rotary_dim": 4, "rope_theta": 10000.0}
    assert kvdump.rope_description(model_class, modules, config).startswith("key/value: model cache (post-RoPE)")


def test_projection_problem_names_architecture():
    assert kvdump.projection_problem("q_proj", [1, 0], 2, "LlamaForCausalLM", set()) is None
    fused = kvdump.projection_problem("q_proj", [], 2, "GPT2LMHeadModel", {"c_attn"})
    assert fused == ("--queries is unsupported for GPT2LMHeadModel: it fuses the attention projections into "
                     "c_attn; run without --queries")
    partial = kvdump.projection_problem("k_proj", [0], 2, "HybridForCausalLM", set())
    assert partial.startswith("--pre-rope-keys is unsupported for HybridForCausalLM: ")
    assert "layers.N.self_attn.k_proj is in 1 of its 2 layers" in partial


def test_dtype_keyword_follows_the_transformers_version():
    version = lambda text: types.SimpleNamespace(__version__=text)  # noqa: E731
    assert kvdump.dtype_argument(version("4.55.2")) == "torch_dtype"
    assert kvdump.dtype_argument(version("4.56.0")) == "dtype"
    assert kvdump.dtype_argument(version("5")) == "dtype"  # one number: no crash
    assert kvdump.dtype_argument(version("5.24.0.dev0")) == "dtype"


def test_max_tokens_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exit_info:
        kvdump.parse_args(["--model", "m", "--text", "t", "--max-tokens", "0", "--out", "o.h5"])
    assert exit_info.value.code == 2 and "--max-tokens must be at least 1" in capsys.readouterr().err


# --- tiny models (need torch + transformers) --------------------------------

ATTENTION = dict(vocab_size=257, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
MODELS = {  # kind: (config class, model class, config arguments)
    "llama": ("LlamaConfig", "LlamaForCausalLM", ATTENTION),
    "mistral": ("MistralConfig", "MistralForCausalLM", {**ATTENTION, "sliding_window": WINDOW}),
    # max_window_layers=1: layer 0 full attention, layer 1 sliding.
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM",
              {**ATTENTION, "use_sliding_window": True, "sliding_window": WINDOW, "max_window_layers": 1}),
    # Gemma 2 alternates sliding (even) and full (odd) layers.
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM",
               {**ATTENTION, "head_dim": 8, "sliding_window": WINDOW, "query_pre_attn_scalar": 8}),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(vocab_size=257, n_embd=32, n_layer=2, n_head=4, n_positions=64)),
    # Key norms before RoPE: Qwen3 and Gemma 3 per head, OLMo 2 over the whole k_proj output.
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {**ATTENTION, "head_dim": 8}),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", ATTENTION),
    # Gemma 3: layer 0 sliding (local RoPE theta), layer 1 full (global theta).
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM",
               {**ATTENTION, "head_dim": 8, "sliding_window": WINDOW, "query_pre_attn_scalar": 8,
                "layer_types": ["sliding_attention", "full_attention"]}),
    # SmolLM3: layer 1 skips RoPE (NoPE).
    "smollm3": ("SmolLM3Config", "SmolLM3ForCausalLM", {**ATTENTION, "no_rope_layers": [1, 0], "pad_token_id": 256}),
    # Phi: RoPE on the first half of each head's channels (partial_rotary_factor 0.5).
    "phi": ("PhiConfig", "PhiForCausalLM", {**ATTENTION, "partial_rotary_factor": 0.5}),
    # OPT: separate q/k/v projections, learned positions, no RoPE.
    "opt": ("OPTConfig", "OPTForCausalLM", dict(vocab_size=257, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                                                num_attention_heads=4, max_position_embeddings=64)),
    # GPT-J and CodeGen: interleaved RoPE on the first rotary_dim channels, no *RotaryEmbedding module.
    "gptj": ("GPTJConfig", "GPTJForCausalLM", dict(vocab_size=257, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                                   rotary_dim=4)),
    "codegen": ("CodeGenConfig", "CodeGenForCausalLM", dict(vocab_size=257, n_embd=32, n_layer=2, n_head=4,
                                                            n_positions=64, n_ctx=64, rotary_dim=4)),
}
SLIDING = ("mistral", "qwen2", "gemma2")
ROPE = ("llama", *SLIDING)
KEY_NORM = ("qwen3", "olmo2", "gemma3")


def save_byte_level_tokenizer(directory):
    """One token per byte (byte-level BPE, no merges): every transformers version and every tokenizer
    class that AutoTokenizer substitutes for a model type (transformers 5 rebuilds Qwen2's from the
    vocabulary) tokenizes the same way."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer,
                                         eos_token="<|endoftext|>").save_pretrained(directory)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """kind -> (folder with config, weights, tokenizer and the two texts, text paths); built once."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    built = {}

    def build(kind):
        if kind not in built:
            config_class, model_class, arguments = MODELS[kind]
            directory = tmp_path_factory.mktemp(f"tiny-{kind}")
            save_byte_level_tokenizer(directory)
            torch.manual_seed(0)
            config = getattr(transformers, config_class)(**arguments, bos_token_id=256, eos_token_id=256)
            getattr(transformers, model_class)(config).save_pretrained(directory)
            texts = []
            for name, text in TEXTS.items():
                (directory / name).write_text(text)
                texts.append(str(directory / name))
            built[kind] = directory, texts
        return built[kind]

    return build


def run_kvdump(model, texts, out, *options):
    kvdump.main(["--model", str(model), "--text", *texts, "--max-tokens", str(MAX_TOKENS), "--out", str(out),
                 "--dtype", "float32", *options])
    return h5py.File(out, "r")


def layer_arrays(cache):
    """(key, value) numpy arrays per layer of a transformers cache (4.x or 5.x)."""
    if hasattr(cache, "layers"):
        pairs = [(layer.keys, layer.values) for layer in cache.layers]
    else:
        pairs = list(zip(cache.key_cache, cache.value_cache))
    return [(k.float().numpy(), v.float().numpy()) for k, v in pairs]


def model_own_cache(directory, text, tokens):
    """The model's default cache after a forward pass over the first `tokens` tokens of `text`, alone."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = AutoTokenizer.from_pretrained(directory)(text, return_tensors="pt")["input_ids"][:, :tokens]
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    with torch.inference_mode():
        output = model(input_ids=ids, use_cache=True)
    cache = getattr(output, "cache", None)
    return layer_arrays(cache if cache is not None else output.past_key_values)


def rope_theta(directory):
    config = json.loads((directory / "config.json").read_text())
    return (config.get("rope_parameters") or {}).get("rope_theta") or config["rope_theta"]


def rotate(x, theta):
    """Hugging Face's default RoPE (rotate-half convention) of x [..., tokens, head_dim] at positions
    0, 1, ...; an independent numpy reference."""
    tokens, dim = x.shape[-2:]
    angles = np.arange(tokens)[:, None] * theta ** (-np.arange(0, dim, 2) / dim)[None, :]
    cos, sin = np.cos(np.concatenate([angles] * 2, axis=-1)), np.sin(np.concatenate([angles] * 2, axis=-1))
    half = dim // 2
    return x * cos + np.concatenate([-x[..., half:], x[..., :half]], axis=-1) * sin


@pytest.mark.parametrize("kind", [*ROPE, "gpt2"])
def test_every_token_equals_the_models_own_cache(tiny_model, tmp_path, kind):
    """Every dumped token, in every layer, equals the model's own default cache of a prefix ending there.

    The default cache of a sliding-window layer holds only the last few tokens, so prefixes ending at
    every multiple of that length together cover each position; K/V at a position depend only on the
    tokens up to it (causal model), so a prefix run is an independent reference for the dumped batch."""
    directory, texts = tiny_model(kind)
    with run_kvdump(directory, texts, tmp_path / "dump.h5") as f:
        assert list(f["lengths"][()]) == LENGTHS
        dumped = [(f[f"layers/{i}/key"][0], f[f"layers/{i}/value"][0]) for i in range(len(f["layers"]))]
    kept = [key.shape[-2] for key, _ in model_own_cache(directory, TEXTS["a.txt"], MAX_TOKENS)]
    if kind in SLIDING:
        assert min(kept) == WINDOW - 1, "the fixture no longer exercises the sliding window"
    else:
        assert kept == [MAX_TOKENS] * len(kept)
    step = min(kept)
    for end in range(MAX_TOKENS, 0, -step):
        for layer, (key, value) in enumerate(model_own_cache(directory, TEXTS["a.txt"], end)):
            n = key.shape[-2]
            assert n in (min(end, WINDOW - 1), end)
            np.testing.assert_allclose(dumped[layer][0][:, end - n:end], key[0], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(dumped[layer][1][:, end - n:end], value[0], rtol=1e-5, atol=1e-6)


def layer_thetas(f, directory):
    """RoPE theta per dumped layer: rope_theta, or for Gemma 3 the rope_scaling entry of the layer's type."""
    if "rope_theta" in f.attrs:
        return [float(f.attrs["rope_theta"])] * len(f["layers"])
    per_type = json.loads(f.attrs["rope_scaling"])
    layer_types = json.loads((directory / "config.json").read_text())["layer_types"]
    return [float(per_type[kind]["rope_theta"]) for kind in layer_types]


@pytest.mark.parametrize("kind", [*ROPE, *KEY_NORM])
def test_keys_are_rotated_pre_rope_keys(tiny_model, tmp_path, kind):
    """Every real token's key is the numpy RoPE of its key_pre_rope, in every layer: the cache holds all
    tokens, not only the last window, and in models with a key norm (Qwen3, OLMo 2, Gemma 3) key_pre_rope is
    k_norm's output, what RoPE rotates, not k_proj's."""
    directory, texts = tiny_model(kind)
    with run_kvdump(directory, texts, tmp_path / "dump.h5", "--queries", "--pre-rope-keys") as f:
        assert f.attrs["architecture"] == MODELS[kind][1]
        assert f.attrs["rope"].startswith("key/value: model cache (post-RoPE); query: q_proj output after")
        assert f.attrs["query_rope"] == "post-RoPE"
        assert f.attrs["revision"] == "unknown (local folder)"
        assert f.attrs["rope_style"] == "rotate-half" and int(f.attrs["rotary_dim"]) == 8
        thetas = layer_thetas(f, directory)
        if kind == "gemma3":
            assert "rope_theta" not in f.attrs and thetas[0] != thetas[1]
        else:
            assert thetas[0] == rope_theta(directory)
        for i in range(2):
            key, pre = f[f"layers/{i}/key"][()], f[f"layers/{i}/key_pre_rope"][()]
            assert key.shape == pre.shape == (2, 2, MAX_TOKENS, 8)
            assert f[f"layers/{i}/query"].shape == (2, 4, MAX_TOKENS, 8)
            for b, length in enumerate(LENGTHS):
                np.testing.assert_allclose(key[b, :, :length], rotate(pre[b, :, :length], thetas[i]),
                                           rtol=1e-5, atol=1e-5)


def own_attention_weights(directory, text, tokens):
    """The model's own attention weights [layer][heads, tokens, tokens] (eager attention,
    output_attentions) over the first `tokens` tokens of `text`, alone; with the model's config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = AutoTokenizer.from_pretrained(directory)(text, return_tensors="pt")["input_ids"][:, :tokens]
    model = AutoModelForCausalLM.from_pretrained(directory, attn_implementation="eager").eval()
    with torch.inference_mode():
        output = model(input_ids=ids, output_attentions=True)
    return [a[0].float().numpy() for a in output.attentions], model.config


@pytest.mark.parametrize("kind", [*ROPE, *KEY_NORM, "smollm3", "phi", "opt"])
def test_queries_reproduce_the_models_attention(tiny_model, tmp_path, kind):
    """softmax(q·kᵀ/√d) of the dumped (post-RoPE) queries and keys, causally masked, is the model's own eager
    attention: query head h meets KV head h // group (GQA); Gemma 2's logit soft-capping applied as the model
    does. SmolLM3's layer 1 has no RoPE: its queries stay unrotated like its keys. Phi rotates only 4 of 8
    channels. OPT has no RoPE at all."""
    directory, texts = tiny_model(kind)
    with run_kvdump(directory, texts, tmp_path / "dump.h5", "--queries") as f:
        assert f.attrs["query_rope"] == ("none" if kind == "opt" else "post-RoPE")
        dumped = [(f[f"layers/{i}/query"][0], f[f"layers/{i}/key"][0]) for i in range(len(f["layers"]))]
        if kind == "smollm3":
            assert f.attrs["rope"].endswith("key = key_pre_rope: 1")
        if kind == "phi":
            assert int(f.attrs["rotary_dim"]) == 4
    weights, config = own_attention_weights(directory, TEXTS["a.txt"], MAX_TOKENS)
    head_dim = dumped[0][0].shape[-1]
    assert getattr(config, "query_pre_attn_scalar", head_dim) == head_dim  # Gemma's scale is then 1/√d too
    cap = getattr(config, "attn_logit_softcapping", None)
    causal = np.triu(np.ones((MAX_TOKENS, MAX_TOKENS), dtype=bool), k=1)
    for layer, ((query, key), own) in enumerate(zip(dumped, weights)):
        assert own.shape == query.shape[:1] + (MAX_TOKENS, MAX_TOKENS) == (4, MAX_TOKENS, MAX_TOKENS)
        group = query.shape[0] // key.shape[0]
        logits = np.einsum("htd,hsd->hts", query, np.repeat(key, group, axis=0)) / np.sqrt(head_dim)
        if cap:
            logits = np.tanh(logits / cap) * cap
        masked = own == 0  # causal, and the window in sliding layers
        assert masked[:, causal].all() and not masked[:, np.eye(MAX_TOKENS, dtype=bool)].any()
        logits = np.where(masked, -np.inf, logits)
        ours = np.exp(logits - logits.max(axis=-1, keepdims=True))
        ours /= ours.sum(axis=-1, keepdims=True)
        np.testing.assert_allclose(ours, own, rtol=1e-4, atol=1e-6, err_msg=f"{kind} layer {layer}")


def test_queries_are_refused_when_the_cache_is_not_reproduced(tiny_model, tmp_path, monkeypatch):
    """When kvdump's recomputation of a layer's keys (norm, then the module's RoPE) does not give the cached
    keys, it refuses with one line and writes nothing, rather than dump queries rotated unlike the keys."""
    directory, texts = tiny_model("llama")
    rotate_like_module = kvdump.rotate_like_module
    monkeypatch.setattr(kvdump, "rotate_like_module", lambda attention, x, pe: rotate_like_module(attention, x, pe) * 2)
    for options in (["--queries"], ["--queries", "--pre-rope-keys"], ["--pre-rope-keys"]):
        with pytest.raises(SystemExit) as exit_info:
            run_kvdump(directory, texts, tmp_path / "refused.h5", *options)
        named = " and ".join(options)
        assert str(exit_info.value) == (
            f"kvdump.py: error: {named} {'are' if len(options) > 1 else 'is'} unsupported for LlamaForCausalLM: "
            "layer 0's cached keys are neither RoPE(k_norm(k_proj)) nor k_norm(k_proj) as kvdump recomputes them "
            f"with the attention module's own norm and RoPE; run without {named}")
        assert not (tmp_path / "refused.h5").exists()


@pytest.mark.parametrize("kind", ["qwen3", "gemma3", "phi"])
def test_cache_check_accepts_bfloat16_models(tiny_model, tmp_path, kind):
    """In a bfloat16 model the recomputed keys still pass the check (rounding is allowed for), and the queries
    stay close to the float32 model's."""
    import torch
    from transformers import AutoModelForCausalLM

    directory, texts = tiny_model(kind)
    half = tmp_path / "bf16"
    shutil.copytree(directory, half)
    AutoModelForCausalLM.from_pretrained(directory).to(torch.bfloat16).save_pretrained(half)
    with run_kvdump(half, texts, tmp_path / "bf16.h5", "--queries", "--pre-rope-keys") as f:
        assert f.attrs["model_dtype"] == "bfloat16" and f.attrs["query_rope"] == "post-RoPE"
        query = f["layers/0/query"][0]
    with run_kvdump(directory, texts, tmp_path / "f32.h5", "--queries") as f:
        np.testing.assert_allclose(query, f["layers/0/query"][0], rtol=0.05, atol=0.05 * np.abs(query).max())


def interleaved_rotate(x, theta, rotary_dim):
    """GPT-J's RoPE (pairs 2i, 2i+1 of the first rotary_dim channels) of x [..., tokens, head_dim] at
    positions 0, 1, ...; an independent numpy reference."""
    tokens = x.shape[-2]
    angles = np.arange(tokens)[:, None] * theta ** (-np.arange(0, rotary_dim, 2) / rotary_dim)[None, :]
    cos, sin = np.repeat(np.cos(angles), 2, axis=-1), np.repeat(np.sin(angles), 2, axis=-1)
    head = x[..., :rotary_dim]
    turned = np.stack([-head[..., 1::2], head[..., 0::2]], axis=-1).reshape(head.shape)
    return np.concatenate([head * cos + turned * sin, x[..., rotary_dim:]], axis=-1)


@pytest.mark.parametrize("kind", ["gptj", "codegen"])
def test_gptj_and_codegen_keys_follow_the_written_rope(tiny_model, tmp_path, kind):
    """The written rope_style/rotary_dim/rope_theta describe what the model does: its cached keys are the
    interleaved RoPE of its key projections (recomputed here from its own weights); --queries is refused."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, texts = tiny_model(kind)
    with pytest.raises(SystemExit, match=f"--queries is unsupported for {MODELS[kind][1]}: "):
        run_kvdump(directory, texts, tmp_path / "queries.h5", "--queries")
    with run_kvdump(directory, texts, tmp_path / "dump.h5") as f:
        assert f.attrs["rope"].startswith("key/value: model cache (post-RoPE)")
        assert (f.attrs["rope_style"], int(f.attrs["rotary_dim"]), float(f.attrs["rope_theta"])) == (
            "interleaved", 4, 10000.0)
        keys = [f[f"layers/{i}/key"][0] for i in range(2)]
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    inputs = {}
    for i, block in enumerate(model.transformer.h):
        block.ln_1.register_forward_hook(lambda _m, _i, out, i=i: inputs.__setitem__(i, out))
    ids = AutoTokenizer.from_pretrained(directory)(TEXTS["a.txt"], return_tensors="pt")["input_ids"][:, :MAX_TOKENS]
    with torch.inference_mode():
        model(input_ids=ids)
    for i, block in enumerate(model.transformer.h):
        with torch.inference_mode():
            if kind == "gptj":
                projected = block.attn.k_proj(inputs[i])[0]
            else:  # CodeGen's fused qkv_proj: 4 parallel groups of (query, value, key) columns
                groups = block.attn.qkv_proj(inputs[i])[0].reshape(MAX_TOKENS, 4, 3, -1)
                projected = groups[:, :, 2].reshape(MAX_TOKENS, -1)
        pre = projected.float().numpy().reshape(MAX_TOKENS, 4, 8).transpose(1, 0, 2)
        np.testing.assert_allclose(keys[i], interleaved_rotate(pre, 10000.0, 4), rtol=1e-4, atol=1e-5)


def test_gpt2_has_no_rope_and_fused_projections(tiny_model, tmp_path):
    directory, texts = tiny_model("gpt2")
    with run_kvdump(directory, texts, tmp_path / "dump.h5") as f:
        assert f.attrs["rope"].startswith("none (GPT2LMHeadModel applies no rotary position embedding)")
        assert f["layers/1/key"].shape == (2, 4, MAX_TOKENS, 8)
    for option in ("--queries", "--pre-rope-keys"):
        with pytest.raises(SystemExit) as exit_info:
            run_kvdump(directory, texts, tmp_path / "fused.h5", option)
        assert str(exit_info.value) == (f"kvdump.py: error: {option} is unsupported for GPT2LMHeadModel: it "
                                        f"fuses the attention projections into c_attn; run without {option}")
        assert not (tmp_path / "fused.h5").exists()


def test_text_without_tokens_is_an_error(tiny_model, tmp_path):
    directory, texts = tiny_model("llama")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(SystemExit, match=r"empty\.txt: the tokenizer gives no tokens"):
        run_kvdump(directory, [texts[0], str(empty)], tmp_path / "dump.h5")


def test_revision_of_a_model_loaded_from_the_hub_cache(tiny_model, tmp_path):
    """Loaded by hub id from a fake hub cache (offline), the dump names the commit refs/main points to;
    loaded from the snapshot folder itself, the folder's commit."""
    directory, texts = tiny_model("llama")
    cache = tmp_path / "hub"
    repo = fake_hub_repo(cache, "kvstat-test/tiny-llama", [OTHER_COMMIT, COMMIT], main=COMMIT)
    shutil.copytree(directory, repo / "snapshots" / COMMIT, dirs_exist_ok=True)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, os.path.join(TOOLS, "kvdump.py"), "--model", "kvstat-test/tiny-llama", "--text", *texts,
         "--max-tokens", "8", "--out", str(tmp_path / "hub.h5")],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "hub.h5", "r") as f:
        assert f.attrs["revision"] == COMMIT and f.attrs["model"] == "kvstat-test/tiny-llama"
    with run_kvdump(repo / "snapshots" / COMMIT, texts, tmp_path / "snapshot.h5") as f:
        assert f.attrs["revision"] == COMMIT
