#!/usr/bin/env python3
"""Checks an opf export with Hugging Face transformers.

Usage: check_export.py DIR [--tolerance 1e-4]

DIR is a directory written by opf's `save_pretrained` (config.json + model.safetensors), plus
`opf_inputs.json` ({"input_ids", "attention_mask"} and, for BERT, "token_type_ids": [batch][seq]
ints) and `opf_logits.json` ({"shape": [batch, labels], "data": flat row-major floats}) as
written by the export tests in crates/opf-models/tests/opf.rs (BERT) and
crates/opf-models/tests/parity_bart.rs (BART; run them with OPF_EXPORT_DIR set to keep the
files). The script loads DIR with `AutoModelForSequenceClassification`, runs the batch in eval
mode (float32, eager attention) and compares with opf's logits:

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
from transformers import AutoModelForSequenceClassification


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="exported model directory")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()

    inputs = json.loads((args.dir / "opf_inputs.json").read_text())
    expected = json.loads((args.dir / "opf_logits.json").read_text())

    model, info = AutoModelForSequenceClassification.from_pretrained(
        args.dir,
        output_loading_info=True,
        dtype=torch.float32,
        attn_implementation="eager",
    )
    model.eval()
    problems = {k: v for k, v in info.items() if v}
    if problems:
        print(f"FAIL loading {args.dir}: {problems}")
        return 1

    batch = {
        name: torch.tensor(inputs[name], dtype=torch.long)
        for name in ("input_ids", "token_type_ids", "attention_mask")
        if name in inputs
    }
    with torch.no_grad():
        logits = model(**batch).logits.double()
    want = torch.tensor(expected["data"], dtype=torch.float64).reshape(expected["shape"])
    if tuple(logits.shape) != tuple(want.shape):
        print(f"FAIL shape: transformers {tuple(logits.shape)}, opf {tuple(want.shape)}")
        return 1

    diff = logits - want
    max_rel = (diff.abs().max() / want.abs().max()).item()
    frob_rel = (diff.norm() / want.norm()).item()
    print(
        f"{args.dir}: {type(model).__name__}, logits {tuple(want.shape)}, "
        f"max-abs relative error {max_rel:.3e}, Frobenius relative error {frob_rel:.3e} "
        f"(tolerance {args.tolerance:g})"
    )
    if not (max_rel < args.tolerance and frob_rel < args.tolerance):
        print("FAIL")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
