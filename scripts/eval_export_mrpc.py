#!/usr/bin/env python3
"""Evaluates an exported opf model directory on GLUE MRPC dev with Hugging Face transformers.

Usage: eval_export_mrpc.py DIR [--glue-dir ../shared/glue] [--max-length 128]

Loads DIR with AutoModelForSequenceClassification and AutoTokenizer (as any transformers user
would), predicts the 408 dev pairs in eval mode and prints accuracy and F1 (positive = 1), to
compare with the dev metrics opf reported for the same (merged) model.
"""

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--glue-dir", default="../shared/glue")
    ap.add_argument("--max-length", type=int, default=128)
    args = ap.parse_args()
    rows = Path(args.glue_dir, "MRPC", "dev.tsv").read_text(encoding="utf-8-sig").splitlines()[1:]
    rows = [r.split("\t") for r in rows if r]
    labels = [int(r[0]) for r in rows]
    tok = AutoTokenizer.from_pretrained(args.dir)
    model = AutoModelForSequenceClassification.from_pretrained(args.dir).eval()
    preds = []
    with torch.inference_mode():
        for i in range(0, len(rows), 32):
            chunk = rows[i:i + 32]
            enc = tok([r[3] for r in chunk], [r[4] for r in chunk], truncation=True,
                      max_length=args.max_length, padding=True, return_tensors="pt")
            preds += model(**enc).logits.argmax(-1).tolist()
    tp = sum(p == 1 and y == 1 for p, y in zip(preds, labels))
    fp = sum(p == 1 and y == 0 for p, y in zip(preds, labels))
    fn = sum(p == 0 and y == 1 for p, y in zip(preds, labels))
    acc = sum(p == y for p, y in zip(preds, labels)) / len(labels)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    print(json.dumps({"dir": args.dir, "examples": len(labels), "acc": acc, "f1": f1}))


if __name__ == "__main__":
    main()
