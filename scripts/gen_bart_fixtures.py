#!/usr/bin/env python3
"""Generate the BART parity fixtures of crates/opf-models/tests/fixtures/.

Usage (from the workspace root):

    .venv/bin/python scripts/gen_bart_fixtures.py

Writes
  tiny-bart/config.json, tiny-bart/model.safetensors
      A seeded random BartForSequenceClassification: vocab 100, d_model 16, 2 encoder layers
      (4 heads, ffn 37) and 2 decoder layers (2 heads, ffn 24), max_position_embeddings 64,
      scale_embedding on, 3 labels. Encoder and decoder differ in heads and FFN width so that a
      mix-up shows. Every parameter is redrawn with a large spread (see `randomize`) so that
      attention is far from uniform, biases and LayerNorm affine terms are non-zero and a
      transposed weight would show.
  tiny-bart.json
      Inputs (a padded batch of sentence pairs, `<s> A </s></s> B </s>`, three <eos> per row)
      and, in eval mode, the encoder and decoder last hidden states, the decoder input ids made
      by `shift_tokens_right`, the classification logits, the cross-entropy loss for fixed labels
      and the parameter count.

The reference uses eager attention (the formula the Rust port follows). Floats are rounded to 7
significant digits; tensors are stored as {"shape": [...], "data": [flat row-major list]}.
"""

import json
from pathlib import Path

import torch
import transformers
from transformers import BartConfig, BartForSequenceClassification
from transformers.models.bart.modeling_bart import shift_tokens_right

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates" / "opf-models" / "tests" / "fixtures"


def tensor_json(t: torch.Tensor) -> dict:
    """A float tensor as shape + flat data rounded to 7 significant digits."""
    t = t.detach().to(torch.float64).contiguous()
    return {
        "shape": list(t.shape),
        "data": [float(f"{x:.7g}") for x in t.flatten().tolist()],
    }


def randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Redraws every parameter: weights N(0, 0.3²) (embeddings N(0, 1)), biases N(0, 0.1²),
    LayerNorm weights 1 + N(0, 0.1²)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif "shared" in name or "embed_positions" in name:
                p.copy_(noise)
            else:
                p.copy_(0.3 * noise)


def tiny_bart() -> None:
    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=100,
        d_model=16,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=2,
        encoder_ffn_dim=37,
        decoder_ffn_dim=24,
        max_position_embeddings=64,
        scale_embedding=True,
        num_labels=3,
        attn_implementation="eager",
    )
    model = BartForSequenceClassification(config)
    randomize(model, torch.Generator().manual_seed(1234))
    model.eval()

    directory = OUT / "tiny-bart"
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)

    # bos 0, pad 1, eos 2. Sentence pairs of different lengths, padded to 9.
    input_ids = torch.tensor(
        [
            [0, 17, 45, 2, 2, 60, 61, 62, 2],
            [0, 5, 6, 2, 2, 8, 2, 1, 1],
            [0, 90, 2, 2, 11, 2, 1, 1, 1],
        ]
    )
    attention_mask = (input_ids != config.pad_token_id).long()
    labels = torch.tensor([0, 2, 1])

    with torch.no_grad():
        base = model.model(input_ids=input_ids, attention_mask=attention_mask)
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)

    decoder_input_ids = shift_tokens_right(
        input_ids, config.pad_token_id, config.decoder_start_token_id
    )
    fixture = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "input_ids": input_ids.tolist(),
        "attention_mask": attention_mask.tolist(),
        "decoder_input_ids": decoder_input_ids.tolist(),
        "labels": labels.tolist(),
        "encoder_last_hidden_state": tensor_json(base.encoder_last_hidden_state),
        "last_hidden_state": tensor_json(base.last_hidden_state),
        "logits": tensor_json(out.logits),
        "loss": float(f"{out.loss.item():.7g}"),
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    (OUT / "tiny-bart.json").write_text(json.dumps(fixture) + "\n")
    print(f"wrote {directory} and tiny-bart.json")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    tiny_bart()
