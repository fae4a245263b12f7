"""PyTorch eager reference for `opf bench steps`: the same randomly initialised BERT shape, the
same fixed pair batch shape, the same step (forward, cross-entropy, backward, global-norm
clipping to 1.0, AdamW lr 2e-5 with no decay on biases and LayerNorm) and the same timing (median
of the timed steps after warm-up, synchronised), then inference time in eval mode.

Given the JSON of `opf bench steps --json` (--opf FILE) it prints the combined table with ratios
against PyTorch. Needs only torch and transformers; reads and downloads nothing.

  python3 torch_steps.py --device cuda --arch bert-base --steps 20 --opf opf.json
"""

import argparse
import json
import statistics
import sys
import time

import torch
from transformers import BertConfig, BertForSequenceClassification

ARCHS = {
    "bert-base": dict(),
    "minilm": dict(hidden_size=384, num_hidden_layers=6, intermediate_size=1536),
    "tiny": dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=37, max_position_embeddings=64),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--arch", default="bert-base", choices=sorted(ARCHS))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--opf", default="", help="JSON from `opf bench steps --json` to compare")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    config = BertConfig(num_labels=2, **ARCHS[args.arch])
    model = BertForSequenceClassification(config).to(device)
    model.train()
    b, t = args.batch, args.seq_len
    ids = torch.randint(1, config.vocab_size, (b, t), device=device)
    types = (torch.arange(t, device=device) >= t // 2).long().expand(b, t)
    mask = torch.ones(b, t, dtype=torch.long, device=device)
    labels = (torch.arange(b, device=device) % 2).long()
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
         "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
         "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=2e-5, eps=1e-8)
    times, loss = [], float("nan")
    for step in range(args.warmup + args.steps):
        sync(device)
        t0 = time.perf_counter()
        out = model(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss = out.loss.item()
        sync(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    model.eval()
    infer = []
    with torch.inference_mode():
        for step in range(args.warmup + args.steps):
            sync(device)
            t0 = time.perf_counter()
            model(input_ids=ids, token_type_ids=types, attention_mask=mask).logits.cpu()
            if step >= args.warmup:
                infer.append(time.perf_counter() - t0)
    ref = {"variant": "pytorch dense", "step_s": statistics.median(times),
           "infer_s": statistics.median(infer), "final_loss": loss,
           "params_train": sum(p.numel() for p in model.parameters())}
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(json.dumps({"card": card, "torch": torch.__version__, "reference": ref}), file=sys.stderr)
    if not args.opf:
        print(json.dumps(ref))
        return
    with open(args.opf) as fh:
        ours = json.load(fh)
    print(f"card {card} | torch {torch.__version__} | opf device {ours['device']} | {args.arch} | "
          f"batch {b} x {t} tokens | median of {args.steps} steps after {args.warmup} warm-up")
    print(f"{'variant':<24}{'params train':>14}{'step ms':>10}{'infer ms':>10}"
          f"{'step / torch':>14}{'infer / torch':>15}")
    for r in [ref] + ours["rows"]:
        name = r["variant"] if r is ref else "opf " + r["variant"]
        print(f"{name:<24}{r['params_train']:>14}{r['step_s'] * 1e3:>10.2f}{r['infer_s'] * 1e3:>10.2f}"
              f"{r['step_s'] / ref['step_s']:>14.3f}{r['infer_s'] / ref['infer_s']:>15.3f}")
    print("(opf `infer` is the trained model after merging MPO layers back; > 1 is slower than PyTorch)")


if __name__ == "__main__":
    main()
