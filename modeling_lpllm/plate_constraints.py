"""Pattern-constrained decoding: a logits processor that lets `generate` write only plate texts fitting a pattern.

The generated text of a row is read through a small automaton whose states are `(alive, k)`: `k` plate characters
written so far and `alive` the patterns these characters fit, position by position. A token is allowed in state
`(alive, k)` when its text, separators (`plate_patterns.SEPARATORS`) removed, is non-empty and fits positions
`k, k+1, ...` of some alive pattern; end of sequence is allowed when an alive pattern has exactly `k` positions.
Everything else scores -inf. Each state's token mask is computed once, vectorised over the tokens whose text is made
of pattern characters only, and a state's successor once per token, so a decoding step costs a few dictionary
look-ups per row and one masked fill. (outlines-core or llguidance would compile such patterns too, but remote code
can count on torch and transformers only, and a plate pattern is a fixed-length automaton of a few states.)
"""

from collections.abc import Sequence
from numbers import Integral

import numpy as np
import torch
from transformers import LogitsProcessor
from transformers.utils import logging

from .plate_patterns import parse_plate_pattern, strip_separators


logger = logging.get_logger(__name__)

# State 0: a row that has ended (or left every pattern), where only end of sequence is allowed; state 1: the start.
_DEAD, _START = 0, 1


def as_position_patterns(patterns) -> tuple[tuple[str, ...], ...]:
    """`patterns` as position tuples: a pattern string, or a sequence of pattern strings (`"@@@####"`) and position
    tuples (`resolve_patterns` output), repeats removed.

    Raises:
        ValueError: when `patterns` is empty or an entry is neither a valid pattern string nor a tuple of non-empty
            strings.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, Sequence) or not patterns:
        raise ValueError(f"`patterns` must be a non-empty list of plate patterns such as '@@@####'; got {patterns!r}.")
    resolved = []
    for entry in patterns:
        if isinstance(entry, str):
            resolved.append(parse_plate_pattern(entry))
        elif isinstance(entry, Sequence) and entry and all(isinstance(chars, str) and chars for chars in entry):
            resolved.append(tuple(entry))
        else:
            raise ValueError(
                f"A plate pattern must be a string such as '@@@####' or a tuple of the characters allowed at each "
                f"position; got {entry!r}."
            )
    return tuple(dict.fromkeys(resolved))


class PlatePatternLogitsProcessor(LogitsProcessor):
    """Hard constraint for `model.generate`: every row writes a text that fits one of `patterns`, then ends.

    Works with any tokenizer: one token per character (`build_char_tokenizer`) or byte-level BPE (Qwen3), where a
    token may hold several characters or a leading space. Spaces and dashes inside a token are ignored (`" AB"`
    extends the text by `AB`); a token of separators only, a special token other than end of sequence, and a token
    with any character outside the patterns are never allowed. A pattern character that no token spells alone or
    inside a longer token (a CJK character a BPE vocabulary splits into bytes) cannot be written; the constructor
    logs a warning naming such characters.

    Rows are independent (batch, beams, several views of a plate). Generation starts at `prompt_length`, the same for
    every row of left-padded prompts; with None it is the input length of the first call, so the processor serves one
    `generate` call; `reset()` readies it for the next one and keeps what it has computed.

    When `max_new_tokens` ends a row before its text fits a pattern, the text is cut short: leave room for the
    longest pattern plus end of sequence (a character-level model needs `len(pattern) + 1` tokens). A row for which
    no token is allowed may always end: only end of sequence gets through, so generation stops.

    Args:
        tokenizer: the tokenizer of the generated ids.
        patterns: pattern strings and/or position tuples (`as_position_patterns`), e.g. `resolve_patterns("BR")`.
        eos_token_id: the end-of-sequence id or ids (the model's `generation_config.eos_token_id`); None for the
            tokenizer's `eos_token_id`.
        prompt_length: the input length where generated tokens start; None to take it from the first call.
    """

    def __init__(
        self,
        tokenizer,
        patterns,
        eos_token_id: int | Sequence[int] | None = None,
        prompt_length: int | None = None,
    ):
        self.patterns = as_position_patterns(patterns)
        eos_token_id = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
        eos_token_ids = [eos_token_id] if isinstance(eos_token_id, Integral) else list(eos_token_id or [])
        if not eos_token_ids or not all(isinstance(token, Integral) and token >= 0 for token in eos_token_ids):
            raise ValueError(
                f"`eos_token_id` must be an id or a list of ids (generation must end); got {eos_token_id!r}."
            )
        self.eos_token_ids = [int(token) for token in eos_token_ids]
        self.prompt_length = self._start = prompt_length

        alphabet = sorted(set("".join(chars for positions in self.patterns for chars in positions)))
        char_index = {char: index for index, char in enumerate(alphabet)}
        longest = max(len(positions) for positions in self.patterns)
        pad = len(alphabet)  # the column every position allows: it fills tokens shorter than the longest one
        self.vocab_size = max(len(tokenizer), max(self.eos_token_ids) + 1)
        special = set(tokenizer.all_special_ids) | {
            index for index, token in getattr(tokenizer, "added_tokens_decoder", {}).items() if token.special
        }
        texts = tokenizer.batch_decode(
            [[index] for index in range(len(tokenizer))], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        self._token_text, token_ids, token_chars = {}, [], []
        for index, text in enumerate(texts):
            piece = strip_separators(text)
            if index in special or not piece or len(piece) > longest or not all(char in char_index for char in piece):
                continue
            self._token_text[index] = piece
            token_ids.append(index)
            token_chars.append([char_index[char] for char in piece] + [pad] * (longest - len(piece)))
        self._token_ids = np.array(token_ids, dtype=np.int64)
        self._token_chars = np.array(token_chars, dtype=np.int64).reshape(len(token_ids), longest)
        unspelled = sorted(set(alphabet) - set("".join(self._token_text.values())))
        if unspelled:
            logger.warning(f"No token spells {''.join(unspelled)!r}: plates holding them cannot be written.")

        # allowed[p, j, c]: pattern p takes character c at position j; positions past its end take only the pad.
        self._allowed = np.zeros((len(self.patterns), 2 * longest, pad + 1), dtype=bool)
        self._allowed[:, :, pad] = True
        for p, positions in enumerate(self.patterns):
            for j, chars in enumerate(positions):
                self._allowed[p, j, [char_index[char] for char in chars]] = True

        self._states = [None, (tuple(range(len(self.patterns))), 0)]
        self._state_index = {self._states[_START]: _START}
        self._transitions = {}
        self._mask_table = None  # (states, vocabulary) booleans on the scores' device, one row per state

    def reset(self, prompt_length: int | None = None):
        """Readies the processor for another `generate` call, whose generated tokens start at `prompt_length` (None:
        the input length of its first call). The automaton and the masks computed so far are kept."""
        self.prompt_length = self._start = prompt_length

    def _step(self, state: int, token: int) -> int:
        """The state after writing `token` in `state`."""
        key = (state, token)
        if key not in self._transitions:
            piece = self._token_text.get(token)
            following = _DEAD
            if state != _DEAD and piece is not None:
                alive, k = self._states[state]
                alive = tuple(p for p in alive if self._fits(p, k, piece))
                if alive:
                    following_key = (alive, k + len(piece))
                    if following_key not in self._state_index:
                        self._state_index[following_key] = len(self._states)
                        self._states.append(following_key)
                    following = self._state_index[following_key]
            self._transitions[key] = following
        return self._transitions[key]

    def _fits(self, pattern: int, k: int, piece: str) -> bool:
        positions = self.patterns[pattern]
        return k + len(piece) <= len(positions) and all(char in positions[k + j] for j, char in enumerate(piece))

    def _state_mask(self, state: int) -> np.ndarray:
        """The tokens allowed in `state`, as a boolean vector over the vocabulary."""
        mask = np.zeros(self.vocab_size, dtype=bool)
        complete = True
        if state != _DEAD:
            alive, k = self._states[state]
            offsets = k + np.arange(self._token_chars.shape[1])
            # fits[a, t]: token t's characters are allowed at positions k, k+1, ... of alive pattern a.
            fits = self._allowed[list(alive)][:, offsets[None, :], self._token_chars].all(axis=-1)
            mask[self._token_ids[fits.any(axis=0)]] = True
            complete = any(len(self.patterns[p]) == k for p in alive)
        if complete or not mask.any():
            mask[self.eos_token_ids] = True
        return mask

    def _masks(self, width: int, device: torch.device) -> torch.Tensor:
        """The mask table, with a row for every state met so far; `width` columns on `device`."""
        table = self._mask_table
        if table is None or table.shape[1] != width or table.device != device:
            table = torch.zeros(0, width, dtype=torch.bool, device=device)
        if len(table) < len(self._states):
            # A model's embedding may be wider than its tokenizer (padded) or narrower (ids it never writes).
            rows = np.zeros((len(self._states) - len(table), width), dtype=bool)
            size = min(width, self.vocab_size)
            for row, state in zip(rows, range(len(table), len(self._states))):
                row[:size] = self._state_mask(state)[:size]
            table = torch.cat([table, torch.from_numpy(rows).to(device)])
        self._mask_table = table
        return table

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._start is None:
            self._start = input_ids.shape[1]
        states = []
        for row in input_ids[:, self._start :].tolist():
            state = _START
            for token in row:
                state = self._step(state, token)
                if state == _DEAD:
                    break
            states.append(state)
        table = self._masks(scores.shape[-1], scores.device)
        allowed = table[torch.tensor(states, device=scores.device)]
        return scores.masked_fill(~allowed, float("-inf"))


__all__ = ["PlatePatternLogitsProcessor", "as_position_patterns"]
