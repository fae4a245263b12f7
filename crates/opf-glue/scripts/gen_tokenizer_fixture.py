"""Generate transformers' reference token ids for opf-glue's tokenization test.

Run from the workspace root (no network needed):
    HF_HOME=/work/shared/hf HF_HUB_OFFLINE=1 \
        .venv/bin/python crates/opf-glue/scripts/gen_tokenizer_fixture.py [GLUE_DIR]

GLUE_DIR defaults to $GLUE_DIR, then ../shared/glue. Uses
transformers.AutoTokenizer("sentence-transformers/all-MiniLM-L6-v2") (a BertTokenizerFast) with
truncation=True (longest_first) and no padding, the way HF run_glue.py tokenizes, on
  * the first 20 MRPC dev pairs (read like HF's DataProcessor._read_tsv: utf-8-sig, tab
    delimiter, quotechar=None; text_a = line[3], text_b = line[4]) at max_length 128 and 16;
  * the single sentences of the crate's own SST-2 train fixture at max_length 128 and 6.
Only guids and ids are stored (no GLUE text) in crates/opf-glue/tests/fixtures/tokenizer.json.
"""

import csv
import json
import os
import pathlib
import sys

import transformers
from transformers import AutoTokenizer

CRATE = pathlib.Path(__file__).resolve().parent.parent
WORKSPACE = CRATE.parent.parent
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def read_tsv(path):
    with open(path, "r", encoding="utf-8-sig") as f:
        return list(csv.reader(f, delimiter="\t", quotechar=None))


def encode(tok, a, b, max_length):
    enc = tok(a, b, truncation=True, max_length=max_length) if b is not None else tok(
        a, truncation=True, max_length=max_length
    )
    return {"input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"]}


def main():
    glue = pathlib.Path(
        sys.argv[1] if len(sys.argv) > 1 else os.environ.get("GLUE_DIR") or WORKSPACE.parent / "shared" / "glue"
    )
    tok = AutoTokenizer.from_pretrained(MODEL)
    mrpc = read_tsv(glue / "MRPC" / "dev.tsv")[1:21]
    sst = read_tsv(CRATE / "tests" / "fixtures" / "glue" / "SST-2" / "fixture-train.tsv")[1:]
    cases = []
    for max_length in (128, 16):
        cases.append(
            {
                "name": f"mrpc_dev_first20_max{max_length}",
                "source": "MRPC/dev.tsv",
                "max_length": max_length,
                "guids": [f"dev-{i + 1}" for i in range(len(mrpc))],
                "encodings": [encode(tok, line[3], line[4], max_length) for line in mrpc],
            }
        )
    for max_length in (128, 6):
        cases.append(
            {
                "name": f"own_sst2_train_max{max_length}",
                "source": "fixture:SST-2/train.tsv",
                "max_length": max_length,
                "guids": [f"train-{i + 1}" for i in range(len(sst))],
                "encodings": [encode(tok, line[0], None, max_length) for line in sst],
            }
        )
    out = CRATE / "tests" / "fixtures" / "tokenizer.json"
    out.write_text(
        json.dumps(
            {
                "generator": "crates/opf-glue/scripts/gen_tokenizer_fixture.py",
                "model": MODEL,
                "transformers": transformers.__version__,
                "tokenizer_class": type(tok).__name__,
                "cases": cases,
            },
            separators=(",", ":"),
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
