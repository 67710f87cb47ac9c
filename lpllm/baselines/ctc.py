"""Character codec for CTC readers: index 0 is the blank, characters follow in charset order."""

import torch


class CTCCodec:
    """Encodes plate strings to CTC targets and greedy-decodes per-step scores back to strings.

    Args:
        charset: the characters the reader can output; must hold no repeats.
    """

    blank = 0

    def __init__(self, charset: str):
        if not charset:
            raise ValueError("A CTC reader needs a non-empty charset.")
        if len(set(charset)) != len(charset):
            raise ValueError("The charset holds repeated characters; each must appear once.")
        self.charset = charset
        self._index = {char: position + 1 for position, char in enumerate(charset)}

    @property
    def num_classes(self) -> int:
        return len(self.charset) + 1

    def encode(self, text: str) -> list[int]:
        """Class indices of `text`.

        Raises:
            ValueError: naming the characters of `text` outside the charset.
        """
        unknown = sorted(set(text) - set(self._index))
        if unknown:
            raise ValueError(f"{text!r} has characters outside the reader's charset: {''.join(unknown)!r}.")
        return [self._index[char] for char in text]

    def decode(self, logits: torch.Tensor) -> list[str]:
        """Greedy CTC decoding of `(batch, steps, classes)` scores: best class per step, repeats merged, blanks
        dropped."""
        texts = []
        for path in logits.argmax(dim=-1).tolist():
            chars, previous = [], self.blank
            for index in path:
                if index != previous and index != self.blank:
                    chars.append(self.charset[index - 1])
                previous = index
            texts.append("".join(chars))
        return texts


__all__ = ["CTCCodec"]
