#!/usr/bin/env python3
"""Generate the BERT parity fixtures of crates/opf-models/tests/fixtures/.

Usage (from the workspace root):

    HF_HOME=../shared/hf HF_HUB_OFFLINE=1 .venv/bin/python scripts/gen_bert_fixtures.py

Writes
  tiny-bert/config.json, tiny-bert/model.safetensors
      A seeded random BertForSequenceClassification (vocab 99, hidden 32, 2 layers, 4 heads,
      intermediate 37, 3 labels). Every parameter is redrawn with a large spread (see
      `randomize`) so that attention is far from uniform, biases and LayerNorm affine terms are
      non-zero and a transposed weight would show.
  tiny-bert.json
      Inputs (padded batch with token types) and, in eval mode, last_hidden_state,
      pooler_output, logits, the cross-entropy loss for fixed labels and the parameter count.
  minilm.json (only when the all-MiniLM-L6-v2 snapshot is in the HF cache)
      Four MRPC dev sentence pairs tokenized with padding, and the model's last_hidden_state
      and pooler_output.

Both references use eager attention (the formula the Rust port follows). Floats are rounded to
7 significant digits; tensors are stored as {"shape": [...], "data": [flat row-major list]}.
"""

import json
import os
import sys
from pathlib import Path

import torch
import transformers
from transformers import AutoModel, AutoTokenizer, BertConfig, BertForSequenceClassification

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates" / "opf-models" / "tests" / "fixtures"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"

# The first four pairs of GLUE MRPC dev.tsv (#1 String, #2 String), copied so the script does
# not depend on the data set.
MRPC_DEV_PAIRS = [
    (
        "He said the foodservice pie business doesn 't fit the company 's long-term growth strategy .",
        '" The foodservice pie business does not fit our long-term growth strategy .',
    ),
    (
        "Magnarelli said Racicot hated the Iraqi regime and looked forward to using his long years of training in the war .",
        'His wife said he was " 100 percent behind George Bush " and looked forward to using his years of training in the war .',
    ),
    (
        "The dollar was at 116.92 yen against the yen , flat on the session , and at 1.2891 against the Swiss franc , also flat .",
        "The dollar was at 116.78 yen JPY = , virtually flat on the session , and at 1.2871 against the Swiss franc CHF = , down 0.1 percent .",
    ),
    (
        "The AFL-CIO is waiting until October to decide if it will endorse a candidate .",
        "The AFL-CIO announced Wednesday that it will decide in October whether to endorse a candidate before the primaries .",
    ),
]


def tensor_json(t: torch.Tensor) -> dict:
    """A float tensor as shape + flat data rounded to 7 significant digits."""
    t = t.detach().to(torch.float64).contiguous()
    return {
        "shape": list(t.shape),
        "data": [float(f"{x:.7g}") for x in t.flatten().tolist()],
    }


def versions() -> dict:
    return {"torch": torch.__version__, "transformers": transformers.__version__}


def randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Redraws every parameter: weights N(0, 0.3²) (embeddings N(0, 1)), biases N(0, 0.1²),
    LayerNorm weights 1 + N(0, 0.1²)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif "embeddings" in name:
                p.copy_(noise)
            else:
                p.copy_(0.3 * noise)


def tiny_bert() -> None:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        type_vocab_size=2,
        num_labels=3,
        attn_implementation="eager",
    )
    model = BertForSequenceClassification(config)
    randomize(model, torch.Generator().manual_seed(1234))
    model.eval()

    directory = OUT / "tiny-bert"
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)

    # Three sequences of length 9: one full, two padded (pad id 0), with two segments each.
    input_ids = torch.tensor(
        [
            [2, 17, 45, 98, 3, 60, 61, 62, 3],
            [2, 5, 6, 7, 3, 8, 3, 0, 0],
            [2, 90, 3, 11, 3, 0, 0, 0, 0],
        ]
    )
    token_type_ids = torch.tensor(
        [
            [0, 0, 0, 0, 0, 1, 1, 1, 1],
            [0, 0, 0, 0, 0, 1, 1, 0, 0],
            [0, 0, 0, 1, 1, 0, 0, 0, 0],
        ]
    )
    attention_mask = (input_ids != 0).long()
    labels = torch.tensor([0, 2, 1])

    with torch.no_grad():
        base = model.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            labels=labels,
        )

    fixture = {
        "versions": versions(),
        "input_ids": input_ids.tolist(),
        "token_type_ids": token_type_ids.tolist(),
        "attention_mask": attention_mask.tolist(),
        "labels": labels.tolist(),
        "last_hidden_state": tensor_json(base.last_hidden_state),
        "pooler_output": tensor_json(base.pooler_output),
        "logits": tensor_json(out.logits),
        "loss": float(f"{out.loss.item():.7g}"),
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    (OUT / "tiny-bert.json").write_text(json.dumps(fixture) + "\n")
    print(f"wrote {directory} and tiny-bert.json")


def minilm() -> None:
    try:
        tokenizer = AutoTokenizer.from_pretrained(MINILM)
        model = AutoModel.from_pretrained(MINILM, attn_implementation="eager")
    except OSError as err:
        print(f"skipping {MINILM}: {err}", file=sys.stderr)
        return
    model.eval()
    first = [a for a, _ in MRPC_DEV_PAIRS]
    second = [b for _, b in MRPC_DEV_PAIRS]
    batch = tokenizer(first, second, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch)
    fixture = {
        "versions": versions(),
        "model": MINILM,
        "pairs": MRPC_DEV_PAIRS,
        "input_ids": batch["input_ids"].tolist(),
        "token_type_ids": batch["token_type_ids"].tolist(),
        "attention_mask": batch["attention_mask"].tolist(),
        "last_hidden_state": tensor_json(out.last_hidden_state),
        "pooler_output": tensor_json(out.pooler_output),
    }
    (OUT / "minilm.json").write_text(json.dumps(fixture) + "\n")
    print(f"wrote minilm.json, shape {list(out.last_hidden_state.shape)}")


if __name__ == "__main__":
    if "HF_HOME" not in os.environ:
        os.environ["HF_HOME"] = str(ROOT.parent / "shared" / "hf")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    OUT.mkdir(parents=True, exist_ok=True)
    tiny_bert()
    minilm()
