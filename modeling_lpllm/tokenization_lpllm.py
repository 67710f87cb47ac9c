"""An offline character-level tokenizer: every plate character is one token, CJK province characters included.

It is for LP-LLM models trained from scratch (no Hub, no pretrained vocabulary) and for tests. It keeps the
Qwen3-VL special tokens, so the Qwen3-VL prompt format and chat template work unchanged.
"""

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast


# The 31 province-level abbreviations that open a Chinese plate (CCPD's table order).
CN_PROVINCES = "皖沪津渝冀晋蒙辽吉黑苏浙京闽赣鲁豫鄂湘粤桂琼川贵云藏陕甘青宁新"
# Characters that end special Chinese plates (police, coach, Hong Kong/Macau, trailer, embassy, consulate).
CN_SPECIAL_SUFFIXES = "警学港澳挂使领"
DEFAULT_PLATE_CHARSET = string.digits + string.ascii_uppercase + CN_PROVINCES + CN_SPECIAL_SUFFIXES

# Qwen3-VL's special tokens, first in the vocabulary so their ids do not depend on the charset.
PAD_TOKEN = "<|endoftext|>"
IM_START_TOKEN = "<|im_start|>"
IM_END_TOKEN = "<|im_end|>"
VISION_START_TOKEN = "<|vision_start|>"
VISION_END_TOKEN = "<|vision_end|>"
IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"
UNKNOWN_TOKEN = "<unk>"
SPECIAL_TOKENS = (
    PAD_TOKEN,
    IM_START_TOKEN,
    IM_END_TOKEN,
    VISION_START_TOKEN,
    VISION_END_TOKEN,
    IMAGE_TOKEN,
    VIDEO_TOKEN,
    UNKNOWN_TOKEN,
)


def build_char_tokenizer(
    charset: str = DEFAULT_PLATE_CHARSET, whole_tokens: tuple[str, ...] | list[str] = ()
) -> PreTrainedTokenizerFast:
    """Builds a left-padding character-level tokenizer over `charset` plus printable ASCII (for prompt text).

    Args:
        charset: the characters plates are written with; each is one token.
        whole_tokens: strings that are one token each wherever they occur (matched before the text is split into
            characters), e.g. the chat template's role names and the usual prompt: a model reads a fixed
            instruction just as well as one token, and the sequences its language model runs over get shorter.

    Raises:
        ValueError: if `charset` is empty or contains a whitespace or control character other than the space, or if
            a whole token is empty, repeated, or spelled only with characters of `charset` (plate text must stay
            one token per character).
    """
    if not charset:
        raise ValueError("`charset` must contain at least one character.")
    bad = sorted({char for char in charset if (char.isspace() and char != " ") or not char.isprintable()})
    if bad:
        raise ValueError(f"`charset` must hold printable characters only; found {bad!r}.")
    whole_tokens = list(whole_tokens)
    if any(not isinstance(token, str) or not token for token in whole_tokens) or len(set(whole_tokens)) != len(
        whole_tokens
    ):
        raise ValueError(f"`whole_tokens` must be distinct non-empty strings; got {whole_tokens!r}.")
    plate_like = [token for token in whole_tokens if len(token) > 1 and set(token) <= set(charset)]
    if plate_like:
        raise ValueError(
            f"`whole_tokens` {plate_like!r} are spelled only with plate characters, so a plate's text could be read "
            "as one token; choose strings with a character outside `charset`."
        )
    characters = dict.fromkeys(string.printable + charset)  # ordered, without repeats
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for char in characters:
        vocab.setdefault(char, len(vocab))

    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNKNOWN_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=UNKNOWN_TOKEN,
        pad_token=PAD_TOKEN,
        eos_token=IM_END_TOKEN,
        padding_side="left",
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:7])})
    tokenizer.add_tokens([token for token in whole_tokens if token not in vocab])
    return tokenizer


def missing_characters(tokenizer, text: str) -> list[str]:
    """The characters of `text` that `tokenizer` cannot spell, in order of first appearance, without repeats.

    A character is missing when the tokenizer encodes it as its unknown token. The character-level tokenizer knows
    only its charset and printable ASCII; a byte-level BPE tokenizer (Qwen3-VL's) spells any character and has
    nothing missing. Whitespace and control characters are never plate characters and are not reported.
    """
    unknown_id = tokenizer.unk_token_id
    if unknown_id is None:
        return []
    candidates = [char for char in dict.fromkeys(text) if char.isprintable() and not char.isspace()]
    return [char for char in candidates if unknown_id in tokenizer.encode(char, add_special_tokens=False)]


def add_plate_characters(tokenizer, text: str) -> list[str]:
    """Adds every character of `text` that `tokenizer` cannot spell (`missing_characters`) as one new token each, at
    the end of the vocabulary, so the ids of the tokens it had stay as they were.

    The new tokens are added tokens (`tokenizer.add_tokens`): they are matched before the text is split into
    characters and saved with the tokenizer, so a saved processor spells and decodes them after loading.

    Returns:
        The characters added, in order of first appearance in `text`; their ids follow the old vocabulary in that
        order.
    """
    added = missing_characters(tokenizer, text)
    if added:
        tokenizer.add_tokens(added)
    return added


__all__ = [
    "add_plate_characters",
    "build_char_tokenizer",
    "missing_characters",
    "CN_PROVINCES",
    "DEFAULT_PLATE_CHARSET",
]
