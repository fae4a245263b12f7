"""Fixture for crates/opf-models/src/rng.rs: draws of PyTorch's CPU generator.

Records torch.randperm (MRPC's 3668 training rows, seed 42), normal_ of a 2 x 384 classifier
weight right after torch.manual_seed(42) (what BertForSequenceClassification.from_pretrained
draws for a MiniLM head), then on the same generator a bernoulli_ mask and the next 31-bit
randint (the stream position after both), and the output of F.dropout on ones.

The Bernoulli kernel PyTorch uses on CPUs other than Intel's (`bernoulli_kernel`, one 53-bit
uniform per element) is the one rng.rs reproduces; on an Intel CPU PyTorch draws through MKL
and this script refuses to write the fixture.

Usage (from the repository root, in the venv with torch):
    .venv/bin/python scripts/gen_torch_rng.py
"""

import json
import pathlib

import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/opf-models/tests/fixtures/torch_rng.json"


class MersenneTwister:
    """std::mt19937 seeded as at::mt19937 (for the guard below only)."""

    def __init__(self, seed):
        self.mt = [seed & 0xFFFFFFFF]
        for i in range(1, 624):
            prev = self.mt[-1]
            self.mt.append((1812433253 * (prev ^ (prev >> 30)) + i) & 0xFFFFFFFF)
        self.i = 624

    def next(self):
        if self.i == 624:
            for k in range(624):
                y = (self.mt[k] & 0x80000000) | (self.mt[(k + 1) % 624] & 0x7FFFFFFF)
                self.mt[k] = self.mt[(k + 397) % 624] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
            self.i = 0
        y = self.mt[self.i]
        self.i += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        return y ^ (y >> 18)


def main():
    torch.set_num_threads(2)
    perm = torch.randperm(3668, generator=torch.Generator().manual_seed(42)).tolist()

    torch.manual_seed(42)
    normal = torch.empty(2, 384).normal_(0.0, 0.02).flatten().tolist()
    keep, n = 0.9, 5000
    mask = torch.empty(n).bernoulli_(keep)
    bits = "".join("1" if x else "0" for x in mask.tolist())
    next_u31 = int(torch.randint(0, 2**31, (1,)).item())

    torch.manual_seed(7)
    drop = F.dropout(torch.ones(300), p=0.1, training=True).tolist()

    # Guard: with MKL's Bernoulli streams (Intel CPUs) the mask frequency is right but the draws
    # differ; rng.rs models the default kernel. Check the first 64 draws against it.
    g = MersenneTwister(11)
    expect = [float((((g.next() << 32) | g.next()) & ((1 << 53) - 1)) * 2.0**-53 < 0.5)
              for _ in range(64)]
    probe = torch.empty(64).bernoulli_(0.5, generator=torch.Generator().manual_seed(11))
    if probe.tolist() != expect:
        raise SystemExit("this PyTorch draws Bernoulli masks through MKL (Intel CPU?): not the "
                         "default kernel rng.rs reproduces; generate the fixture elsewhere")

    out = {
        "torch": torch.__version__,
        "randperm_seed": 42, "randperm": perm,
        "normal_seed": 42, "normal_n": 768, "normal_std": 0.02, "normal": normal,
        "bernoulli_keep": keep, "bernoulli_n": n, "bernoulli": bits, "next_u32": next_u31,
        "dropout_seed": 7, "dropout_p": 0.1, "dropout": drop,
    }
    OUT.write_text(json.dumps(out) + "\n")
    print("wrote", OUT, OUT.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
