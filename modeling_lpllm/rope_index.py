"""Qwen3-VL's M-RoPE position ids, computed once per distinct row of a batch.

Qwen3-VL's `get_rope_index` walks the batch row by row in Python (group the row's token types, one `arange` per text
run, one position grid per image): ~0.2 ms a row on a 2-core CPU, ~7 ms of every training step of the embedded
model's batches of 32 plates. A row's positions depend only on its token types, its attention mask and the grids of
its images, not on the token ids. Plate batches repeat one prompt layout, so when every image of the batch has the
same grid, the rows that agree on token types and mask are computed once and the result is copied to the others.
Batches of mixed image sizes or with videos take the parent's path unchanged.
"""

import torch


def rope_index_per_distinct_row(
    rope_index,
    input_ids: torch.Tensor,
    mm_token_type_ids: torch.Tensor,
    image_grid_thw: torch.Tensor | None = None,
    video_grid_thw: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`rope_index(...)` (Qwen3-VL's `get_rope_index`: `(position_ids (3, batch, length), deltas (batch, 1))`),
    called on one representative of each distinct row and gathered back to every row; the same tensors as calling it
    on the whole batch."""
    arguments = dict(image_grid_thw=image_grid_thw, video_grid_thw=video_grid_thw, attention_mask=attention_mask)
    one_grid = (
        image_grid_thw is not None
        and video_grid_thw is None
        and len(image_grid_thw) > 0
        and bool((image_grid_thw == image_grid_thw[:1]).all())
    )
    if not one_grid or input_ids.shape[0] == 1:
        return rope_index(input_ids, mm_token_type_ids, **arguments, **kwargs)

    mask = attention_mask.to(torch.long) if attention_mask is not None else torch.ones_like(input_ids)
    # Token types under the mask are ignored by the parent, so they are zeroed here as well.
    signatures = torch.cat((mm_token_type_ids.to(torch.long) * mask, mask), dim=1)
    distinct, row_to_distinct = torch.unique(signatures, dim=0, return_inverse=True)
    if len(distinct) == input_ids.shape[0]:
        return rope_index(input_ids, mm_token_type_ids, **arguments, **kwargs)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    representatives = torch.full((len(distinct),), input_ids.shape[0], dtype=torch.long, device=input_ids.device)
    representatives = representatives.scatter_reduce(0, row_to_distinct, rows, reduce="amin")
    # Every image has the first one's grid, so the representatives' images take theirs from any prefix of the list.
    position_ids, deltas = rope_index(
        input_ids[representatives],
        mm_token_type_ids[representatives],
        image_grid_thw=image_grid_thw,
        video_grid_thw=None,
        attention_mask=None if attention_mask is None else attention_mask[representatives],
        **kwargs,
    )
    return position_ids[:, row_to_distinct], deltas[row_to_distinct]
