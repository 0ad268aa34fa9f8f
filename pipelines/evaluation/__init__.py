"""Sample quality: FID/KID over a feature network, class accuracy of conditional samples, VAE reconstruction.

torch + onnxruntime + numpy/scipy; TensorFlow is imported only when InceptionV3 features are asked for and found.
"""

from pipelines.evaluation.classifier import EvalClassifierConfig, EvalCNN, TrainedClassifier, load_or_train
from pipelines.evaluation.metrics import GaussianStats, KIDResult, fid, frechet_distance, gaussian_stats, kid
from pipelines.evaluation.report import write_report
from pipelines.evaluation.runner import EvalConfig, evaluate

__all__ = [
    "EvalCNN", "EvalClassifierConfig", "EvalConfig", "GaussianStats", "KIDResult", "TrainedClassifier", "evaluate",
    "fid", "frechet_distance", "gaussian_stats", "kid", "load_or_train", "write_report",
]
