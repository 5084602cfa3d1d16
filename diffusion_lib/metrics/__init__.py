"""Sample-quality metrics that run offline on a CPU.

- :mod:`.digits`: the digits report (FD with its matched floor, accuracy, diversity);
- :mod:`.classifier`: the shipped digit classifier and its features;
- :mod:`.frechet` (FD), :mod:`.kid` (KID, the unbiased MMD² with the cubic kernel,
  Bińkowski et al. 2018, with a jackknife SE);
- :mod:`.estimates`: a value with its standard error and degrees of freedom
  (:class:`Estimate`, 95 % interval ± t·SE), made over seeds (:func:`over_seeds`,
  Student-t with k − 1 df) or by :func:`bootstrap` (normal); :func:`differs` (Welch's
  test); :func:`t_quantile` and :func:`t_cdf` (Student's t without scipy);
- :mod:`.per_class`: per-class accuracy and diversity with intervals;
- :mod:`.toy`: 2-D toys: sliced Wasserstein SW₂ to fresh true points or to an
  oracle's exact distribution (:mod:`diffusion_lib.exact.oracle`), with the floor.

Every name below imports from here: ``from diffusion_lib.metrics import digits_quality``.
"""

from ..models import DigitClassifier
from .classifier import (
    ClassifierTrainConfig,
    class_accuracy,
    classifier_features,
    load_classifier,
    random_shift,
    train_classifier,
)
from .digits import (
    DigitsQuality,
    MatchedMetric,
    digits_matched,
    digits_quality,
    diversity,
    fit_class_counts,
    heldout_halves,
    matched_real_indices,
    stratified_indices,
)
from .estimates import (
    Estimate,
    bootstrap,
    differs,
    over_seeds,
    t_cdf,
    t_quantile,
    welch_df,
    wilson_interval,
)
from .frechet import frechet_distance, frechet_distance_from_features, gaussian_stats
from .kid import kid, polynomial_kernel
from .toy import (
    ToyQuality,
    evaluate_toy,
    oracle_distance,
    sliced_wasserstein,
    toy_floor,
    toy_quality,
)

__all__ = [
    "ClassifierTrainConfig",
    "DigitClassifier",
    "DigitsQuality",
    "Estimate",
    "MatchedMetric",
    "ToyQuality",
    "bootstrap",
    "class_accuracy",
    "classifier_features",
    "differs",
    "digits_matched",
    "digits_quality",
    "diversity",
    "evaluate_toy",
    "fit_class_counts",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_stats",
    "heldout_halves",
    "kid",
    "load_classifier",
    "matched_real_indices",
    "oracle_distance",
    "over_seeds",
    "polynomial_kernel",
    "random_shift",
    "sliced_wasserstein",
    "stratified_indices",
    "t_cdf",
    "t_quantile",
    "toy_floor",
    "toy_quality",
    "train_classifier",
    "welch_df",
    "wilson_interval",
]
