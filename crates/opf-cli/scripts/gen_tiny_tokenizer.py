"""Writes tests/fixtures/tiny-tokenizer.json: a BERT WordPiece tokenizer with a 73-token
vocabulary (specials, a-z, ##a-##z, digits, punctuation) whose ids fit the tiny random BERT
fixture (vocab_size 99), so end-to-end CLI tests run on a real tokenizer file.

Run: .venv/bin/python crates/opf-cli/scripts/gen_tiny_tokenizer.py
"""

import string
from pathlib import Path

from tokenizers import BertWordPieceTokenizer

specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
letters = list(string.ascii_lowercase)
vocab = specials + letters + ["##" + c for c in letters] + list(string.digits) + list(".,'-?!")
tok = BertWordPieceTokenizer({t: i for i, t in enumerate(vocab)}, lowercase=True)
out = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tiny-tokenizer.json"
tok.save(str(out))
enc = tok.encode("The company said profits rose 5 percent .", "Profits rose .")
print(out, len(vocab), "tokens;", enc.tokens[:8], enc.type_ids[-4:])
assert max(enc.ids) < 99
