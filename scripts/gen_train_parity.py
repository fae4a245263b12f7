"""Training-trajectory fixture for crates/opf-train/tests/torch_parity.rs.

Fine-tunes the tiny random BERT fixture (crates/opf-models/tests/fixtures/tiny-bert) for a few
steps exactly as ../shared/reference/hf_mrpc.py does (torch.optim.AdamW with the
bias/LayerNorm no-decay groups, get_linear_schedule_with_warmup, clip_grad_norm_ 1.0), with
dropout off so both sides are deterministic, and records per step the loss, the gradient norm
before clipping and the learning rate, plus the logits on every batch after training.

Two trajectories: `torch_adamw` (torch.optim.AdamW, as hf_mrpc.py) and `hf_adamw` (the
`transformers.AdamW` v4.0 update that OPF's ChildTuningAdamW and opf use: ε added to the raw √v,
decoupled decay after the update; `transformers/optimization.py` v4.0.0 `AdamW.step`), written
out below because transformers 5 no longer ships it.

A third run, `hf_adamw_dropout`, keeps the config's dropout (0.1) after torch.manual_seed(0):
opf reproduces its masks with PyTorch's generator (crates/opf-models/src/rng.rs).

Usage (from the repository root, in the venv with torch and transformers):
    .venv/bin/python scripts/gen_train_parity.py
"""

import json
import math
import pathlib

import numpy as np
import torch
import transformers
from transformers import BertForSequenceClassification, get_linear_schedule_with_warmup

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = ROOT / "crates/opf-models/tests/fixtures/tiny-bert"
OUT = ROOT / "crates/opf-train/tests/fixtures/train-parity.json"

LR, WEIGHT_DECAY, WARMUP, EPOCHS = 5e-3, 0.01, 2, 2
N_BATCHES, BATCH, MAX_LEN, VOCAB = 4, 5, 16, 99


def batches(rng):
    out = []
    for _ in range(N_BATCHES):
        lens = rng.integers(6, MAX_LEN + 1, size=BATCH)
        width = int(lens.max())
        ids = np.zeros((BATCH, width), dtype=np.int64)
        types = np.zeros((BATCH, width), dtype=np.int64)
        mask = np.zeros((BATCH, width), dtype=np.int64)
        for r, n in enumerate(lens):
            ids[r, :n] = rng.integers(1, VOCAB, size=n)
            first = int(rng.integers(2, n - 1))
            types[r, first:n] = 1
            mask[r, :n] = 1
        labels = rng.integers(0, 3, size=BATCH)
        out.append({"input_ids": ids.tolist(), "token_type_ids": types.tolist(),
                    "attention_mask": mask.tolist(), "labels": labels.tolist()})
    return out


class HfAdamW(torch.optim.Optimizer):
    """transformers v4.0.0 AdamW.step (correct_bias=True)."""

    def __init__(self, params, lr, betas, eps):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=0.0))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                m, v, t = state["m"], state["v"], state["step"]
                m.mul_(b1).add_(p.grad, alpha=1.0 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1.0 - b2)
                denom = v.sqrt().add_(group["eps"])
                step_size = group["lr"] * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
                p.addcdiv_(m, denom, value=-step_size)
                if group["weight_decay"] > 0.0:
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])


def trajectory(data, optimizer_cls, dropout=False):
    torch.manual_seed(0)
    off = {} if dropout else dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification.from_pretrained(MODEL, dtype=torch.float32, **off)
    model.train()
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)],
         "weight_decay": WEIGHT_DECAY},
        {"params": [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)],
         "weight_decay": 0.0},
    ]
    optimizer = optimizer_cls(groups, lr=LR, betas=(0.9, 0.999), eps=1e-8)
    total = N_BATCHES * EPOCHS
    scheduler = get_linear_schedule_with_warmup(optimizer, WARMUP, total)
    steps = []
    for _ in range(EPOCHS):
        for b in data:
            t = {k: torch.tensor(v) for k, v in b.items()}
            lr = scheduler.get_last_lr()[0]
            out = model(**t)
            out.loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            steps.append({"loss": out.loss.item(), "grad_norm": norm.item(), "lr": lr})
    model.eval()
    with torch.no_grad():
        logits = [model(**{k: torch.tensor(v) for k, v in b.items() if k != "labels"})
                  .logits.tolist() for b in data]
    return {"steps": steps, "logits_after": logits}


def main():
    data = batches(np.random.default_rng(7))
    runs = {"hf_adamw": trajectory(data, HfAdamW),
            "torch_adamw": trajectory(data, torch.optim.AdamW),
            "hf_adamw_dropout": trajectory(data, HfAdamW, dropout=True)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "recipe": {"lr": LR, "weight_decay": WEIGHT_DECAY, "warmup_steps": WARMUP,
                   "total_steps": N_BATCHES * EPOCHS, "max_grad_norm": 1.0,
                   "adam_epsilon": 1e-8},
        "batches": data, **runs,
    }, indent=1))
    for name, run in runs.items():
        print(name, [round(s["loss"], 4) for s in run["steps"]])


if __name__ == "__main__":
    main()
