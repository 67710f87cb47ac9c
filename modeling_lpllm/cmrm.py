"""The Character-Aware Multimodal Reasoning Module (CMRM) of LP-LLM.

K learnable character slot queries attend, over L layers, to the projected visual tokens of ONE image:

    S_0 = Q                                           (K x D)
    S_l = LayerNorm_l(S_{l-1} + MultiHeadAttn_l(S_{l-1}, H, H))
    g   = mean_k s_k                                  (D)
    H'_i = H_i + alpha * g                            for every visual token i

The output has the shape of the input, so the language model sees the same number of visual tokens.

Beyond the paper, the frames of one track (several images of one plate in one prompt) can share one context: `H` is
then the visual tokens of all its frames together, so the slots pool evidence across frames, and the one `g` is
added to every token of every frame (`forward(image_tokens, images_per_group)`).
"""

from itertools import accumulate

import torch
from torch import nn

from .configuration_lpllm import LPLLMConfig


class CMRMCrossAttention(nn.Module):
    """Multi-head attention from the slots (queries) to one image's visual tokens (keys and values).

    It computes exactly `softmax(Q K^T / sqrt(d)) V` with `K = H W_k^T + b_k`, `V = H W_v^T + b_v`, but in the
    cheaper association order: the key and value projections are folded into the K slot queries instead of being
    applied to every visual token, which turns O(N D^2) work into O(heads K N D) (about 10x less for a 2B model).
    """

    def __init__(self, config: LPLLMConfig):
        super().__init__()
        hidden_size = config.text_config.hidden_size
        self.num_heads = config.cmrm_num_heads
        self.head_dim = hidden_size // self.num_heads
        self.dropout = config.cmrm_dropout
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.o_proj = nn.Linear(hidden_size, hidden_size)

    def forward(
        self, slots: torch.Tensor, visual_tokens: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            slots: `(batch, K, D)`.
            visual_tokens: `(batch, N, D)`.
            key_padding_mask: `(batch, N)` boolean, True where a token is real; None when no token is padding.

        Returns:
            the attended slots `(batch, K, D)` and the attention weights `(batch, heads, K, N)` before dropout (each
            row sums to one; padding tokens get zero), as transformers' attention modules return them.
        """
        batch, num_slots, hidden_size = slots.shape
        query = self.q_proj(slots).view(batch, num_slots, self.num_heads, self.head_dim).transpose(1, 2)
        key_weight = self.k_proj.weight.view(self.num_heads, self.head_dim, hidden_size)
        value_weight = self.v_proj.weight.view(self.num_heads, self.head_dim, hidden_size)
        tokens = visual_tokens.unsqueeze(1)  # (batch, 1, N, D), shared by all heads

        # q . (W_k h + b_k) = (q W_k) . h + q . b_k; the second term is the same for every token, and softmax
        # ignores what is added to all its inputs alike, so it is left out.
        scores = torch.matmul(query, key_weight) @ tokens.transpose(-1, -2) / self.head_dim**0.5
        if key_padding_mask is not None:
            scores = scores.masked_fill(~key_padding_mask[:, None, None, :], torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(scores.dtype)
        dropped = nn.functional.dropout(weights, p=self.dropout, training=self.training)
        # Attention rows sum to one, so sum_i a_i (W_v h_i + b_v) = W_v (sum_i a_i h_i) + b_v.
        pooled_tokens = dropped @ tokens  # (batch, heads, K, D)
        value_bias = self.v_proj.bias.view(self.num_heads, 1, self.head_dim)
        attended = torch.matmul(pooled_tokens, value_weight.transpose(-1, -2)) + value_bias
        return self.o_proj(attended.transpose(1, 2).reshape(batch, num_slots, hidden_size)), weights


class CMRMLayer(nn.Module):
    """One refinement step `S <- LayerNorm(S + MultiHeadAttn(S, H, H))`."""

    def __init__(self, config: LPLLMConfig):
        super().__init__()
        self.cross_attention = CMRMCrossAttention(config)
        self.layer_norm = nn.LayerNorm(config.text_config.hidden_size)

    def forward(self, slots, visual_tokens, key_padding_mask=None):
        """The refined slots `(batch, K, D)` and this step's attention weights `(batch, heads, K, N)`."""
        attended, weights = self.cross_attention(slots, visual_tokens, key_padding_mask)
        return self.layer_norm(slots + attended), weights


class CharacterAwareReasoningModule(nn.Module):
    """Maps each image's projected visual tokens to visual tokens of the same shape, enriched with a global
    character context pooled from K slot queries (see the module docstring for the equations).

    `slot_queries` and, when learnable, `alpha` are raw parameters: the model's `_init_weights` initialises them.
    """

    def __init__(self, config: LPLLMConfig):
        super().__init__()
        config.check_cmrm_settings()
        hidden_size = config.text_config.hidden_size
        self.num_slots = config.cmrm_num_slots
        self.slot_queries = nn.Parameter(torch.empty(config.cmrm_num_slots, hidden_size))
        self.layers = nn.ModuleList(CMRMLayer(config) for _ in range(config.cmrm_num_layers))
        if config.cmrm_learnable_alpha:
            self.alpha = nn.Parameter(torch.full((), float(config.cmrm_alpha)))
        else:
            self.alpha = float(config.cmrm_alpha)

    def character_slots(
        self, visual_tokens: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Refined slots `S_L` of shape `(batch, K, D)` for padded visual tokens `(batch, N, D)`."""
        return self._refine(visual_tokens, key_padding_mask)[0]

    def _refine(self, visual_tokens, key_padding_mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        """`S_L` and the last layer's attention weights `(batch, heads, K, N)`."""
        slots = self.slot_queries.to(visual_tokens.dtype).unsqueeze(0).expand(visual_tokens.shape[0], -1, -1)
        for layer in self.layers:
            slots, weights = layer(slots, visual_tokens, key_padding_mask)
        return slots, weights

    def add_context(self, visual_tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """`H'_i = H_i + alpha * g` for visual tokens `(batch, N, D)` and contexts `g` `(batch, D)`."""
        alpha = self.alpha.to(visual_tokens.dtype) if isinstance(self.alpha, torch.Tensor) else self.alpha
        return visual_tokens + alpha * context.unsqueeze(1)

    def forward(
        self, image_tokens: list[torch.Tensor] | tuple[torch.Tensor, ...], images_per_group: list[int] | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Applies CMRM to each image independently, or to each group of images together.

        Args:
            image_tokens: one `(N_i, D)` tensor of projected visual tokens per image.
            images_per_group: how many consecutive images of `image_tokens` share one character context (the frames
                of one track), e.g. `[3, 1]`: the slots of the first group attend over the `N_0 + N_1 + N_2` tokens of
                its three images, and its `g` is added to all of them. None: every image on its own.

        Returns:
            a tuple of `(N_i, D)` tensors, in the same order.
        """
        enriched, _ = self.forward_with_slots(image_tokens, images_per_group)
        return enriched

    def forward_with_slots(
        self, image_tokens, images_per_group: list[int] | None = None
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Like `forward`, also returning each image's refined slots `S_L` as a `(num_images, K, D)` tensor (their
        mean over K is the character context `g`; the images of one group have the same)."""
        groups = self._group(image_tokens, images_per_group)
        padded, lengths, key_padding_mask = self._pad(groups)
        slots = self.character_slots(padded, key_padding_mask)
        if images_per_group is None:
            enriched = self.add_context(padded, slots.mean(dim=1))
            return tuple(row[:length] for row, length in zip(enriched, lengths)), slots
        slots = slots.repeat_interleave(torch.tensor(images_per_group, device=slots.device), dim=0)
        enriched = (
            self.add_context(tokens[None], context[None])[0] for tokens, context in zip(image_tokens, slots.mean(dim=1))
        )
        return tuple(enriched), slots

    def slot_attention(self, image_tokens) -> tuple[torch.Tensor, ...]:
        """Where each character slot looks: for each image of `image_tokens` (as in `forward`), the last layer's
        attention weights averaged over its heads, a `(K, N_i)` tensor whose rows sum to one. The slots are refined
        as in `forward`; nothing else is computed."""
        padded, lengths, key_padding_mask = self._pad(self._group(image_tokens))
        weights = self._refine(padded, key_padding_mask)[1].mean(dim=1)
        return tuple(row[:, :length] for row, length in zip(weights, lengths))

    def _group(self, image_tokens, images_per_group: list[int] | None = None) -> list[torch.Tensor]:
        """The images' tokens checked, and the tokens each group of `images_per_group` attends over: its images' tokens
        one after the other (attention does not depend on their order); each image alone for None."""
        if len(image_tokens) == 0:
            raise ValueError("CMRM got an empty list of images; at least one image's visual tokens are needed.")
        for index, tokens in enumerate(image_tokens):
            if tokens.dim() != 2 or tokens.shape[0] == 0 or tokens.shape[1] != self.slot_queries.shape[1]:
                raise ValueError(
                    f"CMRM expects each image's visual tokens as a non-empty (num_tokens, {self.slot_queries.shape[1]})"
                    f" tensor; image {index} has shape {tuple(tokens.shape)}."
                )
        if images_per_group is None:
            return list(image_tokens)
        if any(isinstance(count, bool) or count < 1 for count in images_per_group) or sum(images_per_group) != len(
            image_tokens
        ):
            raise ValueError(
                f"`images_per_group` must be positive counts adding up to the {len(image_tokens)} images; got "
                f"{list(images_per_group)}."
            )
        ends = list(accumulate(images_per_group))
        return [torch.cat(list(image_tokens[end - count : end])) for count, end in zip(images_per_group, ends)]

    @staticmethod
    def _pad(token_groups) -> tuple[torch.Tensor, list[int], torch.Tensor | None]:
        """The groups' tokens (`_group`) padded into `(num_groups, N_max, D)`, their lengths, and the key padding mask
        (None when every group has as many tokens)."""
        lengths = [tokens.shape[0] for tokens in token_groups]
        padded = nn.utils.rnn.pad_sequence(token_groups, batch_first=True)
        key_padding_mask = None
        if min(lengths) != max(lengths):
            positions = torch.arange(padded.shape[1], device=padded.device)
            key_padding_mask = positions[None, :] < torch.tensor(lengths, device=padded.device)[:, None]
        return padded, lengths, key_padding_mask
