"""GELU fixture for crates/opf-models/src/fused.rs: PyTorch's CPU `gelu` and its gradient.

`torch.nn.functional.gelu(x)` (approximate='none') and `d(Σ gelu(x) ⊙ g)/dx` in float32, one
thread, on a grid over [-10, 10] plus the tails and edge values, with `g` standard normal
(seed 0). The exact values in float64 (scipy's erf) are stored too, for the error bound.

Usage (from the repository root, in the venv with torch and scipy):
    .venv/bin/python scripts/gen_gelu_fixture.py
"""

import json
import pathlib

import numpy as np
import torch
from scipy.special import erf

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/opf-models/tests/fixtures/gelu.json"

torch.set_num_threads(1)
grid = np.linspace(-10.0, 10.0, 1001)
edges = [0.0, -0.0, 1e-30, -1e-30, 1e-7, -1e-7, 13.0, -13.0, 14.0, -14.0, 30.0, -30.0, 1e4, -1e4]
x = np.concatenate([grid, edges]).astype(np.float32)
g = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)

xt = torch.from_numpy(x.copy()).requires_grad_(True)
y = torch.nn.functional.gelu(xt)
(dx,) = torch.autograd.grad((y * torch.from_numpy(g)).sum(), xt)

xd = x.astype(np.float64)
cdf = 0.5 * (1.0 + erf(xd / np.sqrt(2.0)))
pdf = np.exp(-0.5 * xd * xd) / np.sqrt(2.0 * np.pi)

f32 = lambda a: [float(v) for v in np.asarray(a, dtype=np.float32)]
OUT.write_text(
    json.dumps(
        {
            "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "x": f32(x),
            "g": f32(g),
            "gelu": f32(y.detach().numpy()),
            "grad": f32(dx.numpy()),
            "gelu_exact": [float(v) for v in xd * cdf],
            "grad_exact": [float(v) for v in g.astype(np.float64) * (cdf + xd * pdf)],
        }
    )
)
print(f"wrote {OUT} ({len(x)} points)")
