"""LP-LLM plate-recognition metrics as a local `evaluate` module (works offline: nothing comes from the Hub).

```python
import evaluate

from lpllm.evaluation import PLATE_METRICS_SCRIPT

metric = evaluate.load(str(PLATE_METRICS_SCRIPT))
metric.compute(predictions=["AB123", "AB12"], references=["AB123", "AB128"], regions=["EU", "EU"])
```

The numbers come from `lpllm.evaluation.metrics` (pure Python); this file only adapts them to the `evaluate` API and
applies the label normalisation first.
"""

import datasets
import evaluate

from lpllm.evaluation.metrics import compute_plate_metrics
from lpllm.evaluation.normalization import PlateNormalizer


_DESCRIPTION = """
License-plate recognition metrics: exact-match accuracy, CER (edit distance / label length), NED (LP-Diff),
partial matches with at least len-1 and len-2 characters right in place (LCOFL), per-position accuracy, length
accuracy, the most frequent confusion pairs, and breakdowns by region, source, degradation type and severity.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): plate strings read by the model.
    references (`list[str]`): ground-truth plate strings (non-empty).
    regions (`list[str]`, *optional*): region of each sample, for the region conventions and the breakdown.
    sources, subsets, degradations (`list[str]`, *optional*): group labels for the breakdowns.
    severities (`list`, *optional*): severity of each sample's degradation (number or name).
    normalize (`bool`, defaults to `True`): normalise both sides with `normalizer` before comparing.
    normalizer (`PlateNormalizer` or `dict`, *optional*): the normalisation settings; defaults to `PlateNormalizer()`
        (upper case, separators removed, O read as 0 on US plates).
    top_k_confusions (`int`, defaults to 20): number of confusion pairs listed.

Returns:
    A dict with `accuracy`, `cer`, `cer_per_plate`, `ned`, `partial_match`, `length_accuracy`,
    `per_position_accuracy`, `per_position_support`, `num_empty_predictions`, `confusion_pairs`,
    `confusion_matrix`, `breakdowns` and `num_samples`.

Example:
    >>> metric = evaluate.load(str(PLATE_METRICS_SCRIPT))
    >>> metric.compute(predictions=["AB-123"], references=["AB123"])["accuracy"]
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PlateMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(
        self,
        predictions,
        references,
        regions=None,
        sources=None,
        degradations=None,
        severities=None,
        subsets=None,
        normalize=True,
        normalizer=None,
        top_k_confusions=20,
    ):
        if normalize:
            if isinstance(normalizer, dict):
                normalizer = PlateNormalizer(**normalizer)
            normalizer = normalizer or PlateNormalizer()
            sample_regions = regions if regions is not None else [None] * len(references)
            predictions = [normalizer(pred, region) for pred, region in zip(predictions, sample_regions)]
            references = [normalizer(ref, region) for ref, region in zip(references, sample_regions)]
        return compute_plate_metrics(
            [pred or "" for pred in predictions],
            references,
            regions=regions,
            sources=sources,
            degradations=degradations,
            severities=severities,
            subsets=subsets,
            top_k_confusions=top_k_confusions,
        )
