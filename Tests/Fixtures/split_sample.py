#!/usr/bin/env python3
"""Splits a kvstat.dump/1 file by sequence: OUT/seq{b}.h5 holds sequence b alone (its valid tokens, the
same layers, kinds, dtype and root attributes). Batch tests analyse the pieces and check that the corpus
equals an analysis of the whole file. Usage: split_sample.py DUMP OUTDIR [TAG]; a TAG (stored as the root
attribute `tag`) makes files with the same tensors but different bytes, hence different content ids."""
import sys
from pathlib import Path

import h5py
import numpy as np

source, out = sys.argv[1], Path(sys.argv[2])
tag = sys.argv[3] if len(sys.argv) > 3 else None
out.mkdir(parents=True, exist_ok=True)
with h5py.File(source, "r") as f:
    lengths = f["lengths"][()]
    for b, n in enumerate(lengths):
        with h5py.File(out / f"seq{b}.h5", "w", libver=("earliest", "v110")) as g:
            for key, value in f.attrs.items():
                g.attrs[key] = value
            g.attrs["text_source"] = f"sequence {b} of {Path(source).name}"
            if tag is not None:
                g.attrs["tag"] = tag
            g.create_dataset("lengths", data=np.array([n], dtype=np.int64))
            g.create_dataset("attention_mask", data=np.ones((1, int(n)), dtype=np.uint8))
            for layer in f["layers"]:
                for kind in f["layers"][layer]:
                    d = f["layers"][layer][kind]
                    dataset = g.create_dataset(f"layers/{layer}/{kind}", data=d[b:b + 1, :, :int(n), :])
                    for key, value in d.attrs.items():
                        dataset.attrs[key] = value
