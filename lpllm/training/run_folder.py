"""What a training run may do with an `--output_dir` that already holds something.

A run folder holds an earlier run's checkpoints and final model, hours of compute: it is resumed
(`--resume_from_checkpoint`) or refused, and replaced only with `--overwrite_output_dir true`. A folder that holds
anything else is someone's files, which no flag lets a run delete. The check runs before the model and the data
load, so a refusal costs nothing; the replacement waits until they have loaded, so a run that fails to start
leaves the earlier one as it was.
"""

import shutil
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging

from .final_evaluation import FINAL_EVAL_DIR
from .mixture import MIXTURE_FILE


logger = logging.get_logger(__name__)

FINAL_DIR = "final"
TRAINER_STATE = "trainer_state.json"
TRAINING_ARGS = "training_args.bin"


def _checkpoints(output_dir: Path) -> list[Path]:
    return sorted(
        path for path in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if (path / TRAINER_STATE).is_file()
    )


def run_outputs(output_dir: str | Path) -> list[Path]:
    """What an earlier run of ours left in `output_dir`: its checkpoints, final model, final evaluations, logs and
    trainer state (the files `save_model` writes beside them are overwritten by the next run's, not listed)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    outputs = _checkpoints(output_dir)
    if (output_dir / FINAL_DIR / "config.json").is_file():
        outputs.append(output_dir / FINAL_DIR)
    names = (
        FINAL_EVAL_DIR, f".{FINAL_DIR}.staging", f"{FINAL_DIR}.previous", "runs", TRAINER_STATE, TRAINING_ARGS,
        MIXTURE_FILE,
    )
    for name in names:
        if (output_dir / name).exists():
            outputs.append(output_dir / name)
    return outputs


def _listing(paths, limit: int = 5) -> str:
    names = sorted(path.name + ("/" if path.is_dir() else "") for path in paths)
    return ", ".join(names[:limit]) + (f", ... ({len(names)} entries)" if len(names) > limit else "")


def check_output_dir(output_dir: str | Path, resume_from_checkpoint, overwrite_output_dir: bool) -> None:
    """Refuses an `output_dir` a run would overwrite without being asked to.

    Args:
        output_dir: `--output_dir`.
        resume_from_checkpoint: `--resume_from_checkpoint` as `resume_checkpoint` reads it: None, True (the last
            checkpoint in `output_dir`) or a checkpoint folder.
        overwrite_output_dir: `--overwrite_output_dir`.

    Raises:
        ValueError: naming the folder and the ways out, when `output_dir` holds an earlier run and the run neither
            resumes nor is asked to overwrite it; when it holds files that are not a run of ours; when the
            checkpoint to resume from does not exist.
    """
    output_dir = Path(output_dir)
    if resume_from_checkpoint is True:
        if not _checkpoints(output_dir):
            raise ValueError(
                f"--resume_from_checkpoint true: {output_dir} holds no {PREFIX_CHECKPOINT_DIR}-* folder to resume "
                "from (a run saves them with --save_strategy steps or epoch)."
            )
        return
    if resume_from_checkpoint is not None:
        if not Path(resume_from_checkpoint, TRAINER_STATE).is_file():
            raise ValueError(
                f"--resume_from_checkpoint {resume_from_checkpoint}: not a checkpoint folder (no {TRAINER_STATE})."
            )
        return
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"--output_dir {output_dir} is a file; it must be a folder for the run.")
    if not output_dir.is_dir() or not any(output_dir.iterdir()):
        return
    outputs = run_outputs(output_dir)
    if not outputs:
        raise ValueError(
            f"--output_dir {output_dir} is not empty and holds no earlier training run "
            f"({_listing(output_dir.iterdir())}); "
            "a run never writes into someone's files, not even with --overwrite_output_dir. Choose a new or empty "
            "folder."
        )
    if not overwrite_output_dir:
        raise ValueError(
            f"--output_dir {output_dir} holds an earlier run ({_listing(outputs)}). Resume it with "
            "--resume_from_checkpoint true, or replace it with --overwrite_output_dir true, or choose another folder."
        )


def clear_earlier_run(output_dir: str | Path) -> None:
    """Deletes what `run_outputs` lists, so that the new run's checkpoints are the only ones a later resume finds."""
    for path in run_outputs(output_dir):
        logger.warning(f"--overwrite_output_dir: deleting the earlier run's {path}")
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
