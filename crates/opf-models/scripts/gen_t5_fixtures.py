#!/usr/bin/env python3
"""Generate the T5 parity fixtures of crates/opf-models/tests/fixtures/.

Usage (from the workspace root; needs torch and transformers, no network):

    .venv/bin/python crates/opf-models/scripts/gen_t5_fixtures.py

Writes
  tiny-t5/config.json, tiny-t5/model.safetensors
      T5 v1.0 style: `feed_forward_proj="relu"`, lm_head tied to `shared` (decoder output scaled
      by d_model^-0.5). vocab 100, d_model 32, d_kv 4, 4 heads (inner width 16 != d_model),
      d_ff 37, 2 encoder + 2 decoder blocks, 8 relative-position buckets, max distance 16.
  tiny-t5-gated/config.json, tiny-t5-gated/model.safetensors
      T5 v1.1 style: `feed_forward_proj="gated-gelu"` (gelu_new), `tie_word_embeddings=false`
      with its own `lm_head.weight` (no output scaling). vocab 100, d_model 16, d_kv 4, 4 heads,
      d_ff 24, 2 encoder + 3 decoder blocks. transformers 5 always
      ties and reads `tie_word_embeddings=false` as `scale_decoder_outputs=false`; it keeps a
      checkpoint `lm_head.weight` that differs from `shared.weight` untied. The files are written
      by hand (config as a v1.1 checkpoint has it) and the references computed from the model
      reloaded with `from_pretrained`, so they are what transformers makes of the files.
  tiny-t5.json, tiny-t5-gated.json
      A padded encoder batch, labels with -100, decoder inputs (`_shift_right(labels)`), and in
      eval mode: the encoder last hidden state, the decoder logits, the loss (cross-entropy
      ignoring -100) with and without label smoothing 0.1, and greedy
      `generate(max_new_tokens=8, num_beams=1, do_sample=False, use_cache=False)` ids. The eos id of each model
      is chosen so that one row stops early and is padded while another runs to the limit.
  t5-buckets.json
      `T5Attention._relative_position_bucket` for relative positions -200..200, bidirectional
      and causal, for (32 buckets, max distance 128) and (8, 16).

Every parameter is redrawn with a large spread (see `randomize`) so that attention is far from
uniform, the relative-position bias matters and a transposed weight would show. References use
eager attention. Floats are rounded to 7 significant digits; tensors are stored as
{"shape": [...], "data": [flat row-major list]}.
"""

import json
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import T5Config, T5ForConditionalGeneration
from transformers.models.t5.modeling_t5 import T5Attention

ROOT = Path(__file__).resolve().parents[3]
OUT = ROOT / "crates" / "opf-models" / "tests" / "fixtures"

INPUT_IDS = [
    [13, 27, 45, 98, 60, 61, 1],
    [5, 6, 7, 8, 1, 0, 0],
    [90, 11, 1, 0, 0, 0, 0],
]
LABELS = [
    [4, 9, 16, 25, 1],
    [33, 2, 1, -100, -100],
    [71, 1, -100, -100, -100],
]


def tensor_json(t: torch.Tensor) -> dict:
    t = t.detach().to(torch.float64).contiguous()
    return {"shape": list(t.shape), "data": [float(f"{x:.7g}") for x in t.flatten().tolist()]}


def randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Embeddings and relative-position biases N(0, 1), layer-norm weights 1 + N(0, 0.1²),
    projections N(0, 0.5²) (smaller spreads make greedy decoding repeat one token)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if "layer_norm" in name:
                p.copy_(1.0 + 0.1 * noise)
            elif name in ("shared.weight", "lm_head.weight") or "relative_attention_bias" in name:
                p.copy_(noise)
            else:
                p.copy_(0.5 * noise)


def state_dict(model: T5ForConditionalGeneration, untied: bool) -> dict:
    """The tensors a `save_pretrained` checkpoint holds: no `embed_tokens` ties, `lm_head` only
    when untied."""
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    for key in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
        sd.pop(key, None)
    if not untied:
        sd.pop("lm_head.weight", None)
    return sd


def generate(model, input_ids, attention_mask, eos):
    model.generation_config.eos_token_id = eos
    return model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        max_new_tokens=8,
        num_beams=1,
        do_sample=False,
        # Decoding without the KV cache is the same computation; with num_decoder_layers !=
        # num_layers the cache of transformers 5.24 is sized for the encoder and raises.
        use_cache=False,
    )


def build(name: str, seed: int, untied: bool, **config_kwargs) -> None:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=100,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        attn_implementation="eager",
        **config_kwargs,
    )
    model = T5ForConditionalGeneration(config)
    if untied:
        model.lm_head.weight = torch.nn.Parameter(torch.empty(config.vocab_size, config.d_model))
    randomize(model, torch.Generator().manual_seed(seed + 1000))
    model.eval()

    input_ids = torch.tensor(INPUT_IDS)
    attention_mask = (input_ids != 0).long()
    labels = torch.tensor(LABELS)

    # Pick an eos id that some row emits after at least one other token and that another row
    # never emits, so that generation shows both an early stop (padded afterwards) and a run to
    # the limit.
    with torch.no_grad():
        free = generate(model, input_ids, attention_mask, eos=None).tolist()
    choices = [
        (row, step, tok)
        for row, ids in enumerate(free)
        for step, tok in enumerate(ids[2:-1], start=2)
        if tok not in ids[: step] and tok != config.pad_token_id
        and any(tok not in other for other in free)
    ]
    assert choices, f"{name}: no usable eos id in {free}"
    stop_row, _, eos = choices[0]
    run_row = next(r for r, ids in enumerate(free) if eos not in ids)

    directory = OUT / name
    directory.mkdir(parents=True, exist_ok=True)
    save_file(state_dict(model, untied), directory / "model.safetensors", metadata={"format": "pt"})
    cfg = model.config.to_dict()
    cfg["eos_token_id"] = eos
    cfg["architectures"] = ["T5ForConditionalGeneration"]
    for key in ("scale_decoder_outputs", "dtype", "_attn_implementation_autoset"):
        cfg.pop(key, None)
    cfg["tie_word_embeddings"] = not untied
    (directory / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    model = T5ForConditionalGeneration.from_pretrained(directory, attn_implementation="eager")
    model.eval()
    assert model.config.scale_decoder_outputs == (not untied)
    assert (model.lm_head.weight is model.shared.weight) == (not untied)
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        smoothed = torch.nn.functional.cross_entropy(
            out.logits.reshape(-1, config.vocab_size),
            labels.reshape(-1),
            ignore_index=-100,
            label_smoothing=0.1,
        )
        generated = generate(model, input_ids, attention_mask, eos=eos)
    rows = generated.tolist()
    assert eos in rows[stop_row] and rows[stop_row][-1] == config.pad_token_id, rows
    assert eos not in rows[run_row] and len(rows[run_row]) == 9, rows

    fixture = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "input_ids": INPUT_IDS,
        "attention_mask": attention_mask.tolist(),
        "labels": LABELS,
        "decoder_input_ids": model._shift_right(labels).tolist(),
        "encoder_last_hidden_state": tensor_json(out.encoder_last_hidden_state),
        "logits": tensor_json(out.logits),
        "loss": float(out.loss),
        "loss_label_smoothing_0.1": float(smoothed),
        "generated": rows,
        "eos_token_id": eos,
        "num_params": sum(p.numel() for p in model.parameters()),
    }
    (OUT / f"{name}.json").write_text(json.dumps(fixture) + "\n")
    print(name, "eos", eos, "generated", rows)


def buckets() -> None:
    positions = torch.arange(-200, 201)
    out = {"relative_positions": positions.tolist(), "cases": []}
    for num_buckets, max_distance in [(32, 128), (8, 16)]:
        case = {"num_buckets": num_buckets, "max_distance": max_distance}
        for bidirectional in (True, False):
            key = "bidirectional" if bidirectional else "causal"
            case[key] = T5Attention._relative_position_bucket(
                positions, bidirectional, num_buckets, max_distance
            ).tolist()
        out["cases"].append(case)
    (OUT / "t5-buckets.json").write_text(json.dumps(out) + "\n")


def main() -> None:
    build("tiny-t5", 2, untied=False, d_model=32, d_kv=4, d_ff=37, num_layers=2, feed_forward_proj="relu")
    build(
        "tiny-t5-gated",
        1,
        untied=True,
        d_model=16,
        d_kv=4,
        d_ff=24,
        num_layers=2,
        num_decoder_layers=3,
        feed_forward_proj="gated-gelu",
    )
    buckets()


if __name__ == "__main__":
    main()
