#!/usr/bin/env python3
"""Synthetic Llama-3.1-8B-shaped KV-cache dump for kvstat's benchmarks.

Writes a kvstat.dump/1 file (canonical layout, see tools/kvstat_dumpfile.py):

  /layers/{i}/key, /layers/{i}/value   [1, kv_heads, tokens, head_dim], i = 0..L-1
      chunked (1, kv_heads, 256, head_dim), NO compression (benchmarks measure
      read + compute speed, not gzip), attributes axes="bhtd", dtype=<dtype>
  /attention_mask [1, tokens] uint8 (all ones), /lengths [1] int64 = tokens
  root attributes kvstat_format, model, created_by, dtype (+ a few generator
      parameters, all strings)

Structure, so every statistic `kvstat analyze` reports has something to find:

  * a per-layer latent "residual stream" R_l [tokens, 128]: R_0 = W_0,
    R_l = a R_{l-1} + b W_l (a = --layer-share, a^2 + b^2 = 1), where each W_l
    column is a unit-variance AR(1) process along tokens (rho in
    {0.9, 0.97, 0.99, 0.997}): smooth, low-pass content, so the DCT
    low-frequency energy is high, and adjacent layers see correlated token
    representations, so adjacent-layer CKA is clearly non-zero;
  * keys  = R_l P_k,l diag(s_k) U_k,l^T  (rank 32, exponentially decaying s_k),
    values = R_l P_v,l diag(s_v) U_v,l^T (rank 96, power-law decaying s_v),
    where the orthonormal bases drift with depth: B_l = orth(a B_{l-1} + b G_l)
    (adjacent layers share part of their subspaces);
  * a small per-channel mean, isotropic Gaussian noise holding --noise (5 %) of
    each tensor's energy, 4 outlier key channels scaled x20 (the same channels
    in every layer, as in real Llama caches), and
    token 0 an attention sink (whole row x30, keys and values).

Memory stays O(--block) (default 4096 tokens, ~100 MB) whatever --tokens is:
the outer loop walks token blocks, the inner loop layers, and every tensor is
written with an h5py hyperslab write of whole chunks. The AR(1) filter state
is carried across blocks and every random stream is drawn row-major, so
--block changes the content only by float rounding (a few values differ by 1 ulp).

Usage:
  python3 Benchmarks/generate_llama_dump.py --tokens 32768 --out /tmp/llama32k.h5
  python3 Benchmarks/generate_llama_dump.py --tokens 2048 --layers 4 --out /tmp/small.h5
"""

import argparse
import os
import sys
import time

import h5py
import numpy as np
from scipy.signal import lfilter

FORMAT = "kvstat.dump/1"
CHUNK_TOKENS = 256
LATENT = 128                                   # dimension of the residual-stream latent
RHOS = (0.9, 0.97, 0.99, 0.997)                # AR(1) coefficients, LATENT/4 columns each
FLOAT16_MAX = 65504.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, required=True, help="sequence length T")
    p.add_argument("--out", required=True, help="output .h5 path (overwritten)")
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    p.add_argument("--block", type=int, default=4096,
                   help="tokens generated and written per step (rounded to a multiple of 256)")
    p.add_argument("--key-rank", type=int, default=32)
    p.add_argument("--value-rank", type=int, default=96)
    p.add_argument("--noise", type=float, default=0.05,
                   help="fraction of each tensor's energy that is isotropic noise")
    p.add_argument("--layer-share", type=float, default=0.9,
                   help="weight a of layer l-1 in layer l's latents and bases")
    p.add_argument("--outlier-channels", type=int, default=4)
    p.add_argument("--outlier-scale", type=float, default=20.0)
    p.add_argument("--sink-scale", type=float, default=30.0)
    a = p.parse_args(argv)
    if a.tokens < 1 or a.layers < 1 or a.kv_heads < 1 or a.head_dim < 1:
        p.error("--tokens, --layers, --kv-heads and --head-dim must be positive")
    channels = a.kv_heads * a.head_dim
    if not (0 < a.key_rank <= min(LATENT, channels) and 0 < a.value_rank <= min(LATENT, channels)):
        p.error(f"ranks must be in 1..{min(LATENT, channels)}")
    if not 0.0 <= a.layer_share < 1.0 or not 0.0 <= a.noise < 1.0:
        p.error("--layer-share and --noise must be in [0, 1)")
    if a.outlier_channels > channels:
        p.error("--outlier-channels exceeds kv_heads * head_dim")
    a.block = max(CHUNK_TOKENS, (a.block // CHUNK_TOKENS) * CHUNK_TOKENS)
    return a


def orthonormal(m):
    """Orthonormal basis (Q of a reduced QR, sign-fixed) of the columns of m."""
    q, r = np.linalg.qr(m)
    return q * np.sign(np.diag(r))[None, :]


def drifting_bases(rng, layers, n, r, share):
    """Per-layer n x r orthonormal bases, B_l = orth(share B_{l-1} + sqrt(1-share^2) G_l)."""
    other = np.sqrt(1.0 - share * share)
    bases = [orthonormal(rng.standard_normal((n, r)))]
    for _ in range(1, layers):
        g = rng.standard_normal((n, r)) / np.sqrt(n)   # columns of norm ~1, like B's
        bases.append(orthonormal(share * bases[-1] + other * g))
    return bases


def build_structure(a):
    """Per-layer [LATENT, C] maps, channel means, outlier scales, noise std (float32)."""
    rng = np.random.default_rng([a.seed, 0])
    c = a.kv_heads * a.head_dim
    # the same key channels are outliers in every layer, as in real Llama caches
    outliers = np.sort(rng.choice(c, a.outlier_channels, replace=False))
    specs = {
        # kind: (rank, singular-value profile, RMS at layer 0 -> last layer, mean size)
        "key": (a.key_rank, np.exp(-np.arange(a.key_rank) / 8.0), (1.0, 1.5), 0.2),
        "value": (a.value_rank, (1.0 + np.arange(a.value_rank)) ** -0.7, (0.5, 1.0), 0.05),
    }
    out = {}
    for kind, (rank, prof, (rms0, rms1), mean_size) in specs.items():
        p_bases = drifting_bases(rng, a.layers, LATENT, rank, a.layer_share)
        u_bases = drifting_bases(rng, a.layers, c, rank, a.layer_share)
        per_layer = []
        for l in range(a.layers):
            rms = rms0 + (rms1 - rms0) * l / max(1, a.layers - 1)
            # latents have unit variance and P, U are orthonormal, so the signal's
            # energy per entry is sum(s^2) / C: scale s so that it equals the
            # signal share (1 - noise) of rms^2.
            s = prof * np.sqrt((1.0 - a.noise) * rms * rms * c / np.sum(prof * prof))
            m = (p_bases[l] * s[None, :]) @ u_bases[l].T                 # [LATENT, C]
            mean = mean_size * rms * rng.standard_normal(c)
            scale = np.ones(c)
            if kind == "key" and a.outlier_channels:
                scale[outliers] = a.outlier_scale
            per_layer.append(dict(
                map=np.ascontiguousarray(m, dtype=np.float32),
                mean=mean.astype(np.float32),
                scale=scale.astype(np.float32),
                noise_std=np.float32(np.sqrt(a.noise) * rms),
            ))
        out[kind] = per_layer
    return out


class LatentStreams:
    """Unit-variance AR(1) innovation processes W_l [tokens, LATENT], block by block."""

    def __init__(self, seed, layers):
        self.rngs = [np.random.default_rng([seed, 1, l]) for l in range(layers)]
        self.rhos = np.repeat(np.asarray(RHOS), LATENT // len(RHOS))
        assert self.rhos.size == LATENT
        # start every process in its stationary distribution: zi = rho * y[-1], y[-1] ~ N(0,1)
        self.state = [(self.rhos * r.standard_normal(LATENT))[None, :] for r in self.rngs]

    def next_block(self, layer, n):
        e = self.rngs[layer].standard_normal((n, LATENT))
        w = np.empty_like(e)
        st = self.state[layer]
        width = LATENT // len(RHOS)
        for i, rho in enumerate(RHOS):
            cols = slice(i * width, (i + 1) * width)
            w[:, cols], st[:, cols] = lfilter([np.sqrt(1.0 - rho * rho)], [1.0, -rho],
                                              e[:, cols], axis=0, zi=st[:, cols])
        return w


def encode(x, dtype):
    """float32 block -> stored representation (float16, bfloat16 bits as uint16, float32)."""
    if dtype == "float32":
        return x
    if dtype == "float16":
        peak = float(np.abs(x).max())
        if peak > FLOAT16_MAX:
            raise SystemExit(f"value {peak:g} overflows float16; lower --outlier-scale/--sink-scale")
        return x.astype(np.float16)
    bits = x.view(np.uint32)                               # bfloat16, round to nearest even
    return ((bits + np.uint32(0x7FFF) + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def main(argv=None):
    a = parse_args(argv)
    t_start = time.perf_counter()
    c = a.kv_heads * a.head_dim
    share, other = a.layer_share, np.float32(np.sqrt(1.0 - a.layer_share ** 2))
    structure = build_structure(a)
    streams = LatentStreams(a.seed, a.layers)
    noise_rngs = {(l, k): np.random.default_rng([a.seed, 2, l, ki])
                  for l in range(a.layers) for ki, k in enumerate(("key", "value"))}
    store_dtype = {"float16": np.float16, "bfloat16": np.uint16, "float32": np.float32}[a.dtype]
    chunk = (1, a.kv_heads, min(CHUNK_TOKENS, a.tokens), a.head_dim)

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    # libver upper bound v110: the Swift side links Debian's libhdf5 1.10.
    # rdcc_nbytes=0: every write covers whole chunks, so skip the chunk cache; with
    # HDF5 2.x's 8 MiB default each of the 2L datasets would keep 8 MiB of chunks.
    with h5py.File(a.out, "w", libver=("earliest", "v110"), rdcc_nbytes=0) as f:
        f.attrs["kvstat_format"] = FORMAT
        f.attrs["model"] = "synthetic-llama-3.1-8b-shape"
        f.attrs["created_by"] = "Benchmarks/generate_llama_dump.py"
        f.attrs["dtype"] = a.dtype
        f.attrs["generator_params"] = (
            f"tokens={a.tokens} layers={a.layers} kv_heads={a.kv_heads} head_dim={a.head_dim} "
            f"seed={a.seed} key_rank={a.key_rank} value_rank={a.value_rank} noise={a.noise} "
            f"layer_share={a.layer_share} outlier_channels={a.outlier_channels} "
            f"outlier_scale={a.outlier_scale} sink_scale={a.sink_scale}")
        f.create_dataset("attention_mask", data=np.ones((1, a.tokens), np.uint8), track_times=False)
        f.create_dataset("lengths", data=np.array([a.tokens], np.int64), track_times=False)
        dsets = {}
        for l in range(a.layers):
            g = f.create_group(f"layers/{l}")
            for kind in ("key", "value"):
                ds = g.create_dataset(kind, shape=(1, a.kv_heads, a.tokens, a.head_dim),
                                      dtype=store_dtype, chunks=chunk, track_times=False)
                ds.attrs["axes"] = "bhtd"
                ds.attrs["dtype"] = a.dtype
                dsets[(l, kind)] = ds

        for t0 in range(0, a.tokens, a.block):
            n = min(a.block, a.tokens - t0)
            r = None
            for l in range(a.layers):
                w = streams.next_block(l, n)
                r = w if r is None else share * r + other * w        # residual-stream latent
                r32 = r.astype(np.float32)
                for kind in ("key", "value"):
                    st = structure[kind][l]
                    x = r32 @ st["map"]                               # [n, C] low-rank signal
                    x += noise_rngs[(l, kind)].standard_normal((n, c), dtype=np.float32) \
                        * st["noise_std"]
                    x += st["mean"]
                    x *= st["scale"]                                  # outlier channels
                    if t0 == 0:
                        x[0] *= a.sink_scale                          # attention sink
                    stored = encode(x, a.dtype)
                    dsets[(l, kind)][0, :, t0:t0 + n, :] = np.ascontiguousarray(
                        stored.reshape(n, a.kv_heads, a.head_dim).transpose(1, 0, 2))
            print(f"  tokens {t0 + n}/{a.tokens}  {time.perf_counter() - t_start:.1f}s",
                  file=sys.stderr, flush=True)

    elapsed = time.perf_counter() - t_start
    size = os.path.getsize(a.out)
    print(f"wrote {a.out}: {a.layers} layers x key/value [1, {a.kv_heads}, {a.tokens}, "
          f"{a.head_dim}] {a.dtype}, {size} bytes ({size / 2**30:.3f} GiB) in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
