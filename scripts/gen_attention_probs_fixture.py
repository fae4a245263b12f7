"""Attention-probabilities fixture for crates/opf-models/src/fused.rs: PyTorch's eager attention.

As Hugging Face's `eager_attention_forward` (transformers v5.24.0, modeling_bert.py#L112):
`p = dropout(softmax(s · scaling + mask, -1))`, here with the dropout multiplier `noise` given
(a Bernoulli(0.9) mask scaled by 1/0.9) so that it is deterministic, and the gradient
`d(Σ p ⊙ w)/ds`. Scores `s` are `[2, 3, 6, 13]` (rows of 13, not a multiple of 8), the mask
HF's additive padding mask (`finfo(float32).min` on padded keys; the second example keeps 9 of
13 keys). Values and gradient in float32 (one thread) and float64 (the error bound).

Usage (from the repository root, in the venv with torch):
    .venv/bin/python scripts/gen_attention_probs_fixture.py
"""

import json
import pathlib

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/opf-models/tests/fixtures/attention_probs.json"

torch.set_num_threads(1)
B, H, Q, K = 2, 3, 6, 13
SCALING = 0.125
rng = np.random.default_rng(0)
s = (rng.standard_normal((B, H, Q, K)) * 4.0).astype(np.float32)
w = rng.standard_normal((B, H, Q, K)).astype(np.float32)
noise = ((rng.random((B, H, Q, K)) < 0.9) / np.float32(0.9)).astype(np.float32)
keep = np.ones((B, K), dtype=np.float32)
keep[1, 9:] = 0.0


def probs_and_grad(dtype):
    st = torch.from_numpy(s).to(dtype).requires_grad_(True)
    mask = (1.0 - torch.from_numpy(keep).to(dtype)) * torch.finfo(torch.float32).min
    p = torch.softmax(st * SCALING + mask[:, None, None, :], dim=-1) * torch.from_numpy(noise).to(
        dtype
    )
    (ds,) = torch.autograd.grad((p * torch.from_numpy(w).to(dtype)).sum(), st)
    return p.detach().numpy(), ds.numpy()


p32, g32 = probs_and_grad(torch.float32)
p64, g64 = probs_and_grad(torch.float64)
flat = lambda a: [float(v) for v in np.asarray(a).ravel()]
OUT.write_text(
    json.dumps(
        {
            "torch": torch.__version__,
            "shape": [B, H, Q, K],
            "scaling": SCALING,
            "scores": flat(s),
            "keep": flat(keep),
            "noise": flat(noise),
            "w": flat(w),
            "probs": flat(p32),
            "grad": flat(g32),
            "probs_f64": flat(p64),
            "grad_f64": flat(g64),
        }
    )
)
print(f"wrote {OUT}")
