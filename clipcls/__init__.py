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
from clipcls._images import load_image
from clipcls._index import TextIndex, default_cache_dir
from clipcls._data import LabelledImages, load_labelled
from clipcls._probes import Probes, load_probes, train_probes
from clipcls._taxonomy import Node, Taxonomy, load_taxonomy, save_taxonomy
from clipcls.zoo import DEFAULT_MODEL

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "STRATEGIES",
    "CacheError",
    "Classifier",
    "ClipclsError",
    "DataError",
    "Encoder",
    "ImageError",
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
    "default_cache_dir",
    "list_models",
    "load_image",
    "load_labelled",
    "load_probes",
    "load_taxonomy",
    "save_taxonomy",
    "train_probes",
]
