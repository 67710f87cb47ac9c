"""`SFTTrainer` that also reads validation plates with greedy generation at every evaluation, so exact match and
CER (not only the loss) are logged and can pick the best checkpoint (`metric_for_best_model: eval_exact_match`)."""

from tqdm.auto import tqdm
from trl import SFTTrainer

from lpllm.evaluation.metrics import summary_metrics
from lpllm.evaluation.recognizers import VisionLanguageRecognizer

from .clock import TrainingClock
from .collator import completion_text
from .optimizers import build_muon_with_adamw
from .schedules import WallClockCosineSchedule


def read_dataset(
    model, processor, dataset, batch_size: int, device, max_new_tokens: int | None = None, description="reading"
):
    """Greedy readings of every row of a plate dataset (`images`, `completion`), by the evaluation's reader:
    returns `(predictions, labels)`. `max_new_tokens` None reads with the model's generation config."""
    reader = VisionLanguageRecognizer(model, processor, name="training", device=device, max_new_tokens=max_new_tokens)
    predictions, labels = [], []
    for start in tqdm(range(0, len(dataset), batch_size), desc=description, leave=False):
        rows = dataset[start : start + batch_size]
        predictions.extend(reader.read(rows["images"]))
        labels.extend(completion_text(completion) for completion in rows["completion"])
    return predictions, labels


class PlateSFTTrainer(SFTTrainer):
    """Args beyond `SFTTrainer`'s:
    generation_eval_dataset: rows (`images`, `completion`) read with generation at each evaluation; None to skip.
    generation_batch_size, max_new_tokens: of that generation; `max_new_tokens` None for the model's generation
        config (which training sets from the recipe).
    lr_budget_minutes: when set, the learning rate follows `WallClockCosineSchedule` over these minutes of training
        instead of `lr_scheduler_type` over `max_steps`.
    training_clock: the `TrainingClock` that counts training time: started by `train()`, standing still while
        `evaluate()` runs, read by that schedule and by the `minutes` logged beside every value (share it with a
        `TimeBudgetCallback`); None: a new one.
    decoded_train_dataset: the training rows, decoded in memory (`DecodedPlateSplit`), served in place of
        `train_dataset` (which TRL still inspects); None to read `train_dataset`.
    train_sampler: the order of the training rows (`MixtureSampler` of a weighted mixture); None for the Trainer's
        own shuffling.
    muon: train the linear layers' weight matrices with Muon and the rest with `args.optim`'s AdamW
        (`MuonWithAdamW`), instead of `args.optim` for all.
    muon_newton_schulz_steps: iterations of Muon's orthogonalisation.
    """

    def __init__(
        self,
        *args,
        generation_eval_dataset=None,
        generation_batch_size=32,
        max_new_tokens=None,
        lr_budget_minutes=None,
        decoded_train_dataset=None,
        train_sampler=None,
        training_clock=None,
        muon=False,
        muon_newton_schulz_steps=5,
        **kwargs,
    ):
        self.muon = muon
        self.muon_newton_schulz_steps = muon_newton_schulz_steps
        self.train_sampler = train_sampler
        super().__init__(*args, **kwargs)
        self.decoded_train_dataset = decoded_train_dataset
        self.lr_budget_minutes = lr_budget_minutes
        self.generation_eval_dataset = generation_eval_dataset
        self.generation_batch_size = generation_batch_size
        self.max_new_tokens = max_new_tokens
        self.training_clock = training_clock if training_clock is not None else TrainingClock()

    def train(self, *args, **kwargs):
        self.training_clock.start()
        return super().train(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        if self.train_sampler is None:
            return super()._get_train_sampler(train_dataset)
        return self.train_sampler

    def get_train_dataloader(self):
        if self.decoded_train_dataset is None:
            return super().get_train_dataloader()
        # The same sampler (seeded, sharded across processes) and collator as for `train_dataset`, over other storage.
        return self._get_dataloader(
            dataset=self.decoded_train_dataset,
            description="Training",
            batch_size=self._train_batch_size,
            sampler_fn=self._get_train_sampler,
            is_training=True,
        )

    def log(self, logs, *args, **kwargs):
        # Minutes of training beside every logged value, so runs compare at equal training time.
        if self.training_clock.started:
            logs = {**logs, "minutes": round(self.training_clock.seconds() / 60, 3)}
        super().log(logs, *args, **kwargs)

    def create_optimizer(self, model=None):
        if not self.muon or self.optimizer is not None:
            return super().create_optimizer(model)
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            raise ValueError(
                "`muon` orthogonalises whole weight matrices, and FSDP and DeepSpeed shard them across processes: "
                "train with Muon on one process or with DDP (`recipes/accelerate/ddp.yaml`)."
            )
        model = self.model if model is None else model
        self.optimizer = build_muon_with_adamw(
            model, self.get_decay_parameter_names(model), self.args, self.muon_newton_schulz_steps
        )
        return self.optimizer

    def create_scheduler(self, num_training_steps, optimizer=None):
        if self.lr_budget_minutes is None or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        self.lr_scheduler = WallClockCosineSchedule(
            optimizer or self.optimizer,
            self.args.get_warmup_steps(num_training_steps),
            self.lr_budget_minutes,
            clock=self.training_clock.seconds,
        )
        self._created_lr_scheduler = True
        return self.lr_scheduler

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        with self.training_clock.paused():
            return self._evaluate_with_generation(eval_dataset, ignore_keys, metric_key_prefix)

    def _evaluate_with_generation(self, eval_dataset, ignore_keys, metric_key_prefix):
        metrics = {}
        if eval_dataset is not None or self.eval_dataset is not None:
            metrics = super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        if self.generation_eval_dataset is not None and len(self.generation_eval_dataset) > 0:
            was_training = self.model.training
            predictions, labels = read_dataset(
                self.model,
                self.processing_class,
                self.generation_eval_dataset,
                self.generation_batch_size,
                self.args.device,
                max_new_tokens=self.max_new_tokens,
                description="generation eval",
            )
            self.model.train(was_training)
            summary = summary_metrics(predictions, labels)
            generation_metrics = {
                f"{metric_key_prefix}_exact_match": summary["accuracy"],
                f"{metric_key_prefix}_cer": summary["cer"],
            }
            self.log(generation_metrics)
            metrics.update(generation_metrics)
        return metrics
