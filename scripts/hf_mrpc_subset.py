"""The PyTorch reference `../shared/reference/hf_mrpc.py` on the first N MRPC training rows.

`opf glue --max-train-samples N` trains on the first N rows of `train.tsv`; this wrapper gives the
reference the same subset and leaves everything else (recipe, dev set, seeding, timing, JSON) to
the unmodified script, so reduced-scale opf runs have a PyTorch run beside them:

    .venv/bin/python scripts/hf_mrpc_subset.py --max-train-samples 1000 \
        --lr 1e-4 --epochs 3 --seed 42 --json runs/torch-42.json
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "reference"))

import hf_mrpc  # noqa: E402


def main():
    argv = sys.argv[1:]
    if "--max-train-samples" not in argv:
        sys.exit("usage: hf_mrpc_subset.py --max-train-samples N [hf_mrpc.py arguments]")
    i = argv.index("--max-train-samples")
    try:
        n = int(argv[i + 1])
    except (IndexError, ValueError):
        sys.exit("--max-train-samples needs a positive integer")
    if n <= 0:
        sys.exit("--max-train-samples needs a positive integer")
    del argv[i : i + 2]

    read = hf_mrpc.read_mrpc

    def read_subset(path):
        s1, s2, labels = read(path)
        if os.path.basename(path) == "train.tsv":
            return s1[:n], s2[:n], labels[:n]
        return s1, s2, labels

    hf_mrpc.read_mrpc = read_subset
    sys.argv = [sys.argv[0]] + argv
    print("hf_mrpc_subset: the first %d training rows" % n, flush=True)
    hf_mrpc.main()


if __name__ == "__main__":
    main()
