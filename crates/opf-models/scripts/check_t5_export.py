#!/usr/bin/env python3
"""Checks an opf T5 export with Hugging Face transformers.

Usage: check_t5_export.py DIR [DIR ...] [--tolerance 1e-4]

Each DIR is a directory written by opf's `T5ForConditionalGeneration::save_pretrained`
(config.json + model.safetensors), plus `opf_inputs.json` ({"input_ids", "attention_mask",
"decoder_input_ids"}: [batch][seq] ints) and `opf_logits.json` ({"shape": [batch, tgt, vocab],
"data": flat row-major floats}) as written by the export test in
crates/opf-models/tests/parity_t5.rs (run it with OPF_EXPORT_DIR set to keep the files). The
script loads DIR with `T5ForConditionalGeneration`, runs the batch in eval mode (float32, eager
attention) and compares with opf's logits:

* max |a - b| / max |b| and the relative Frobenius error ||a - b|| / ||b|| must both be below the
  tolerance (default 1e-4);
* the checkpoint must load without missing, unexpected or mismatched tensors.

Exit status 0 on success, 1 on a mismatch.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from transformers import T5ForConditionalGeneration


def check(directory: Path, tolerance: float) -> bool:
    inputs = json.loads((directory / "opf_inputs.json").read_text())
    expected = json.loads((directory / "opf_logits.json").read_text())
    model, info = T5ForConditionalGeneration.from_pretrained(
        directory, output_loading_info=True, dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()
    problems = {k: v for k, v in info.items() if v}
    if problems:
        print(f"FAIL loading {directory}: {problems}")
        return False
    batch = {name: torch.tensor(inputs[name], dtype=torch.long) for name in inputs}
    with torch.no_grad():
        logits = model(**batch).logits.double()
    want = torch.tensor(expected["data"], dtype=torch.float64).reshape(expected["shape"])
    if tuple(logits.shape) != tuple(want.shape):
        print(f"FAIL shape: transformers {tuple(logits.shape)}, opf {tuple(want.shape)}")
        return False
    diff = logits - want
    max_rel = (diff.abs().max() / want.abs().max()).item()
    frob_rel = (diff.norm() / want.norm()).item()
    untied = model.lm_head.weight is not model.shared.weight
    print(
        f"{directory}: untied head {untied}, scaled output {model.config.scale_decoder_outputs}, "
        f"logits {tuple(want.shape)}, max-abs relative error {max_rel:.3e}, "
        f"Frobenius relative error {frob_rel:.3e} (tolerance {tolerance:g})"
    )
    return max_rel < tolerance and frob_rel < tolerance


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", type=Path, nargs="+", help="exported model directories")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()
    ok = all([check(d, args.tolerance) for d in args.dirs])
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
