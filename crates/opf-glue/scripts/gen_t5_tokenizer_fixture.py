"""Writes crates/opf-glue/tests/fixtures/tiny-t5-tokenizer.json: a word-level tokenizer with T5's
special tokens and ids (`<pad>` 0, `</s>` 1, `<unk>` 2) and T5's template (`$A </s>`, no
`<s>`), lower-cased words split on whitespace and punctuation, and a vocabulary of the text-to-text
words (`mrpc`, `sentence1`, `:`, ..., the digits and `.`) plus the MRPC fixture words, whose
ids fit the tiny random T5 of opf-models (vocab_size 100). A `Fuse` decoder joins the tokens of a
decoded text without spaces, so a generated `3 . 8` reads back as `3.8` (T5's Metaspace decoder
gets there through its `▁` marks). No padding is configured, as in `t5-base`'s tokenizer.json,
so the pad id comes from the `<pad>` token.

Used by opf-glue's `T5Text` unit tests, opf-train's T5 trainer test and opf-cli's T5 end-to-end
test. Run: .venv/bin/python crates/opf-glue/scripts/gen_t5_tokenizer_fixture.py
"""

import csv
from collections import Counter
from pathlib import Path

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel

root = Path(__file__).resolve().parent.parent
specials = ["<pad>", "</s>", "<unk>"]
text_to_text = ["mrpc", "stsb", "cola", "sentence", "sentence1", "sentence2", ":", "."]
text_to_text += [str(d) for d in range(10)]
pre = pre_tokenizers.Whitespace()
counts = Counter()
mrpc = root / "tests" / "fixtures" / "glue" / "MRPC"
for split in ["train", "dev", "test"]:
    with open(mrpc / f"fixture-{split}.tsv", newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            for text in (row["#1 String"], row["#2 String"]):
                counts.update(w for w, _ in pre.pre_tokenize_str(text.lower()))
words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if w not in text_to_text]
vocab_list = (specials + text_to_text + words)[:100]
vocab = {t: i for i, t in enumerate(vocab_list)}
tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
tok.normalizer = normalizers.Lowercase()
tok.pre_tokenizer = pre
tok.post_processor = processors.TemplateProcessing(
    single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
)
tok.decoder = decoders.Fuse()
tok.add_special_tokens(specials)
out = root / "tests" / "fixtures" / "tiny-t5-tokenizer.json"
tok.save(str(out))
enc = tok.encode("mrpc sentence1: The company said profits rose 5 percent . sentence2: Profits rose .")
print(out, len(vocab), "tokens;", enc.tokens, enc.ids)
assert max(enc.ids) < 100 and enc.tokens[-1] == "</s>" and "<unk>" not in enc.tokens
target = tok.encode("3.8")
assert target.tokens == ["3", ".", "8", "</s>"], target.tokens
assert tok.decode([0] + target.ids + [0], skip_special_tokens=True) == "3.8"
