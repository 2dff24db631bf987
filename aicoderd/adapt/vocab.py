"""A public model's tokenizer, rebuilt from its GGUF the way llama.cpp (and so Ollama) reads it,
and proved identical to llama.cpp before anything is trained on it.

transformers rebuilds a GGUF's BPE tokenizer with a generic pre-tokenizer (it ignores
``tokenizer.ggml.pre``), and for a ``qwen2`` model type swaps in its own class whatever the file
says: a model trained on those ids would be served with others. So the tokenizer is built here
with ``tokenizers`` from the GGUF's tokens, merges, token types and pre-tokenizer tag, and
:func:`check_parity` compares its ids with llama.cpp's on code (the fixed prompts and the user's
own documents), in both modes training and serving use. Anything else is refused with the
reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aicoderd.errors import TrainingError
from aicoderd.export import constants as EC
from aicoderd.export import inference
from aicoderd.export.verify import PROMPTS
from aicoderd.export.vocab import CONTROL, QWEN2_REGEX, USER_DEFINED
from aicoderd.training.tokenizer import LLAMA3_REGEX

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

TOKENIZER_KEYS = "tokenizer."  # every key carried over to the adapted model's GGUF
_SPLIT_REGEXES = {EC.PRE_LLAMA3: LLAMA3_REGEX, EC.PRE_QWEN2: QWEN2_REGEX}
KNOWN_PRE = (EC.PRE_GPT2, *_SPLIT_REGEXES)
SAMPLE_CHARS = 2000  # of each corpus document the parity check reads
SAMPLE_DOCUMENTS = 16


@dataclass(frozen=True)
class Fim:
    """A model's own fill-in-the-middle tokens (prefix-suffix-middle order)."""

    prefix: int
    suffix: int
    middle: int


# Families of FIM tokens found by name when the GGUF names no FIM ids (first match wins).
FIM_FAMILIES = (
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),  # Qwen2.5-Coder, this project
    ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),  # DeepSeek-Coder  # noqa: RUF001
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),  # StarCoder, SantaCoder
    ("<PRE>", "<SUF>", "<MID>"),  # Code Llama's names
)
_FIM_KEYS = (
    ("tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.fim_suf_token_id"),
    ("tokenizer.ggml.prefix_token_id", "tokenizer.ggml.suffix_token_id"),  # older converters
)
_FIM_MIDDLE_KEYS = ("tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id")


@dataclass
class GGUFVocab:
    """What llama.cpp's tokenizer reads from a GGUF, and every ``tokenizer.*`` field as written
    (type included) to carry over unchanged."""

    model: str
    pre: str
    tokens: list[str]
    types: list[int]
    merges: list[str]
    add_bos: bool
    add_eos: bool
    bos: int | None
    eos: int
    fim: Fim | None
    fields: dict[str, tuple[Any, Any, Any]] = field(default_factory=dict)


def read(path: Path) -> GGUFVocab:
    """The tokenizer of the GGUF at ``path``; :class:`TrainingError` when llama.cpp's BPE
    would not tokenize it as rebuilt here."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    fields: dict[str, tuple[Any, Any, Any]] = {}
    values: dict[str, Any] = {}
    for key, f in reader.fields.items():
        if key.startswith(TOKENIZER_KEYS):
            item = f.types[1] if len(f.types) > 1 else None
            values[key] = f.contents()
            fields[key] = (values[key], f.types[0], item)
    model = str(values.get("tokenizer.ggml.model", ""))
    pre = str(values.get("tokenizer.ggml.pre", "default"))
    if model != EC.TOKENIZER_MODEL:
        raise TrainingError(
            f"{path.name}: its tokenizer is {model!r}; only byte-level BPE ('gpt2') vocabularies"
            " are rebuilt (SentencePiece models such as Code Llama are not supported yet)"
        )
    if pre not in KNOWN_PRE:
        raise TrainingError(
            f"{path.name}: pre-tokenizer {pre!r} is not one rebuilt here ({', '.join(KNOWN_PRE)});"
            " training on other token ids than llama.cpp's would be served wrong"
        )
    tokens = [str(t) for t in values["tokenizer.ggml.tokens"]]
    eos = values.get("tokenizer.ggml.eos_token_id")
    if eos is None:
        raise TrainingError(f"{path.name}: the vocabulary names no end-of-sequence token")
    bos = values.get("tokenizer.ggml.bos_token_id")
    return GGUFVocab(
        model=model,
        pre=pre,
        tokens=tokens,
        types=[int(t) for t in values.get("tokenizer.ggml.token_type") or [1] * len(tokens)],
        merges=[str(m) for m in values.get("tokenizer.ggml.merges") or []],
        add_bos=bool(values.get("tokenizer.ggml.add_bos_token", False)),
        add_eos=bool(values.get("tokenizer.ggml.add_eos_token", False)),
        bos=None if bos is None else int(bos),
        eos=int(eos),
        fim=find_fim(values, tokens),
        fields=fields,
    )


def find_fim(values: dict[str, Any], tokens: list[str]) -> Fim | None:
    """The FIM token ids the GGUF names, else a known family found in the vocabulary."""
    middle = next((values[k] for k in _FIM_MIDDLE_KEYS if k in values), None)
    for pre_key, suf_key in _FIM_KEYS:
        if pre_key in values and suf_key in values and middle is not None:
            return Fim(int(values[pre_key]), int(values[suf_key]), int(middle))
    index = {t: i for i, t in enumerate(tokens)}
    for family in FIM_FAMILIES:
        if all(t in index for t in family):
            return Fim(*(index[t] for t in family))
    return None


def _pre_tokenizer(pre: str) -> Any:
    from tokenizers import Regex, pre_tokenizers

    if pre == EC.PRE_GPT2:
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT_REGEXES[pre]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def build(v: GGUFVocab) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` that splits, merges and adds special tokens as llama.cpp."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, processors

    bpe = models.BPE(
        vocab={t: i for i, t in enumerate(v.tokens)},
        merges=[(a, b) for a, _, b in (m.partition(" ") for m in v.merges)],
        ignore_merges=v.pre == EC.PRE_LLAMA3,  # llama.cpp looks a whole word up first there
    )
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = _pre_tokenizer(v.pre)
    tok.decoder = decoders.ByteLevel()
    added = [
        AddedToken(t, special=kind == CONTROL, normalized=False)
        for t, kind in zip(v.tokens, v.types, strict=True)
        if kind in (CONTROL, USER_DEFINED)
    ]
    tok.add_tokens(added)
    single, pair = "$A", "$A $B"
    special: list[tuple[str, int]] = []
    if v.add_bos and v.bos is not None:
        single, pair = f"{v.tokens[v.bos]} $A", f"{v.tokens[v.bos]} $A $B"
        special.append((v.tokens[v.bos], v.bos))
    if v.add_eos:
        single, pair = f"{single} {v.tokens[v.eos]}", f"{pair} {v.tokens[v.eos]}"
        special.append((v.tokens[v.eos], v.eos))
    tok.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=sorted(set(special))
    )
    return tok


def wrap(tok: Tokenizer, v: GGUFVocab) -> PreTrainedTokenizerFast:
    """The tokenizer as transformers' fast tokenizer (what the training code takes)."""
    from transformers import PreTrainedTokenizerFast

    eos = v.tokens[v.eos]
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        bos_token=v.tokens[v.bos] if v.bos is not None else None,
        eos_token=eos,
        pad_token=eos,
        clean_up_tokenization_spaces=False,
    )


def encode_plain(tok: Tokenizer, text: str) -> list[int]:
    """Ids of document text: special-token strings inside it stay text (llama.cpp's
    ``parse_special = false``), nothing added."""
    tok.encode_special_tokens = True
    try:
        return list(tok.encode(text, add_special_tokens=False).ids)
    finally:
        tok.encode_special_tokens = False


def encode_prompt(tok: Tokenizer, text: str) -> list[int]:
    """Ids of a prompt as a server reads it: special tokens parsed, BOS/EOS as the model adds."""
    return list(tok.encode(text, add_special_tokens=True).ids)


@dataclass
class Parity:
    samples: int
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


def check_parity(gguf_path: Path, tok: Tokenizer, documents: list[str]) -> Parity:
    """Compare the rebuilt tokenizer with llama.cpp's own on the GGUF (its vocabulary only)."""
    texts = PROMPTS + [d[:SAMPLE_CHARS] for d in documents[:SAMPLE_DOCUMENTS]]
    llm = inference.load(gguf_path, n_ctx=64, vocab_only=True)
    problems: list[str] = []
    modes: list[tuple[str, Callable[[str], list[int]], dict[str, bool]]] = [
        ("document", lambda t: encode_plain(tok, t), {"add_bos": False, "special": False}),
        ("prompt", lambda t: encode_prompt(tok, t), {"add_bos": True, "special": True}),
    ]
    for text in texts:
        for mode, ours, flags in modes:
            theirs = list(llm.tokenize(text.encode("utf-8"), **flags))
            mine = ours(text)
            if mine != theirs:
                at = next(
                    (i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b), None
                )
                at = min(len(mine), len(theirs)) if at is None else at
                problems.append(
                    f"{mode} ids differ from llama.cpp at token {at} of {text[:40]!r}:"
                    f" rebuilt {mine[at : at + 4]}, llama.cpp {theirs[at : at + 4]}"
                )
                break
    del llm
    return Parity(len(texts), problems)
