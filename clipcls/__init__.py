"""clipcls: zero-shot and hierarchical image classification on CLIP.

>>> import clipcls
>>> tax = clipcls.load_taxonomy("taxonomies/shapes.yaml")        # doctest: +SKIP
>>> clf = clipcls.Classifier(tax)                                # embedded model  # doctest: +SKIP
>>> clf.classify(["star.png"], strategy="topdown", threshold=0.5)  # doctest: +SKIP
"""

from __future__ import annotations

from clipcls._classify import STRATEGIES, Classifier, Prediction, ScoredNode
from clipcls._encoder import Encoder, OpenClipEncoder, list_models
from clipcls._errors import (
    CacheError,
    ClipclsError,
    DataError,
    ImageError,
    ModelError,
    NotFittedError,
    ProbeError,
    TaxonomyError,
)
from clipcls._images import ImageLimits, load_image
from clipcls._index import TextIndex, default_cache_dir
from clipcls._calibration import Calibration, apply_calibration, fit_calibration, load_calibration
from clipcls._data import LabelledImages, load_labelled
from clipcls._evaluate import EvalReport, evaluate
from clipcls._probes import Probes, load_probes, train_probes
from clipcls._report import write_report
from clipcls._taxonomy import Node, Taxonomy, load_taxonomy, save_taxonomy
from clipcls.zoo import DEFAULT_MODEL

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "Calibration",
    "EvalReport",
    "STRATEGIES",
    "CacheError",
    "Classifier",
    "ClipclsError",
    "DataError",
    "Encoder",
    "ImageError",
    "ImageLimits",
    "LabelledImages",
    "ModelError",
    "Node",
    "NotFittedError",
    "OpenClipEncoder",
    "Prediction",
    "ProbeError",
    "Probes",
    "ScoredNode",
    "Taxonomy",
    "TaxonomyError",
    "TextIndex",
    "__version__",
    "apply_calibration",
    "default_cache_dir",
    "evaluate",
    "fit_calibration",
    "list_models",
    "load_calibration",
    "load_image",
    "load_labelled",
    "load_probes",
    "load_taxonomy",
    "save_taxonomy",
    "train_probes",
    "write_report",
]
