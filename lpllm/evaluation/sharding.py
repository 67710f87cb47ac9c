"""Reading one list of inputs with several processes (`accelerate launch`, `torchrun`): each process reads a
contiguous shard of the list, and the readings are gathered back in input order, so N processes give the output of
one.

`accelerate.PartialState` learns the processes from the launcher's environment; a program started without a launcher
is one process, and the functions here hand its list back whole. Shards are contiguous (process 0 takes the first
`ceil(n / N)` items), so concatenating the shards in process order is the input order.
"""

import torch
from accelerate import PartialState
from accelerate.utils import gather_object

from .recognizers import pick_device


def process_state(device: str | torch.device | None = None) -> PartialState:
    """The processes this program runs as, each with its device: `device` when given, else the launcher's (one GPU
    per process), else the CPU.

    Processes that read on the CPU join a gloo group: accelerate only forms one there when asked to (`cpu=True`),
    and would otherwise leave every launched process reading the whole list on its own.
    """
    if device is not None:
        cpu = torch.device(device).type == "cpu"
    else:
        cpu = not torch.cuda.is_available()
    return PartialState(cpu=cpu)


def reading_device(state: PartialState, device: str | torch.device | None = None) -> torch.device:
    """`device` when given, else this process's device under a launcher (`cuda:<local rank>` on GPUs), else
    `pick_device`'s (cuda if available, else cpu)."""
    if device is None and state.use_distributed:
        return state.device
    return pick_device(device)


def shard(items: list, state: PartialState) -> list:
    """This process's contiguous part of `items` (all of them on a single process)."""
    with state.split_between_processes(list(items)) as part:
        return list(part)


def gather_shards(results: list, state: PartialState) -> list:
    """Every process's `results` (one entry per item of its shard), concatenated in process order on every
    process: the input order when the shards came from `shard`."""
    if state.num_processes == 1:
        return list(results)
    return gather_object(list(results))


def end_processes(state: PartialState) -> None:
    """Waits for every process, then leaves the process group: a process that exits while the group is alive can
    abort the others (gloo's threads) and the launcher with them."""
    if state.use_distributed:
        state.wait_for_everyone()
        state.destroy_process_group()


__all__ = ["end_processes", "gather_shards", "process_state", "reading_device", "shard"]
