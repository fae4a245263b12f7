"""Writes tests/fixtures/tiny-bart-tokenizer.json: a word-level tokenizer with BART's special
tokens (`<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3) and pair template (`<s> a </s></s> b </s>`, the
RobertaProcessing BART's tokenizer uses), lower-cased words split on whitespace and
punctuation, and a vocabulary of the MRPC fixture words whose ids fit the tiny random BART
fixture (vocab_size 100). No padding is configured, as in `facebook/bart-base`'s tokenizer.json,
so the pad id comes from the `<pad>` token.

Run: .venv/bin/python crates/opf-cli/scripts/gen_tiny_bart_tokenizer.py
"""

import csv
from collections import Counter
from pathlib import Path

from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel

root = Path(__file__).resolve().parent.parent
specials = ["<s>", "<pad>", "</s>", "<unk>"]
pre = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
counts = Counter()
mrpc = root.parent / "opf-glue" / "tests" / "fixtures" / "glue" / "MRPC"
for split in ["train", "dev", "test"]:
    with open(mrpc / f"fixture-{split}.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            for text in (row["#1 String"], row["#2 String"]):
                counts.update(w for w, _ in pre.pre_tokenize_str(text.lower()))
# Most frequent first; at most 96 words so that ids stay < 100.
words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:96]
vocab = {t: i for i, t in enumerate(specials + words)}
tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
tok.normalizer = normalizers.Lowercase()
tok.pre_tokenizer = pre
tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=False, add_prefix_space=False)
tok.add_special_tokens(specials)
out = root / "tests" / "fixtures" / "tiny-bart-tokenizer.json"
tok.save(str(out))
enc = tok.encode("The company said profits rose 5 percent .", "Profits rose .")
print(out, len(vocab), "tokens;", enc.tokens, enc.ids)
assert max(enc.ids) < 100
assert enc.tokens[0] == "<s>" and enc.tokens.count("</s>") == 3 and enc.tokens[-1] == "</s>"
