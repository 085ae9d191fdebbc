from __future__ import annotations

import clipcls

EXPECTED = {
    "DEFAULT_MODEL", "STRATEGIES", "CacheError", "Classifier", "ClipclsError", "DataError", "Encoder",
    "ImageError", "LabelledImages", "ModelError", "Node", "NotFittedError", "OpenClipEncoder", "Prediction", "ProbeError", "Probes",
    "ScoredNode", "Taxonomy", "TaxonomyError", "TextIndex", "__version__", "default_cache_dir",
    "list_models", "load_image", "load_labelled", "load_probes", "load_taxonomy", "save_taxonomy", "train_probes",
    "Calibration", "EvalReport", "apply_calibration", "evaluate", "fit_calibration", "load_calibration", "write_report", "ImageLimits",
}


def test_public_api_is_curated() -> None:
    # Adding a public name is a decision: update EXPECTED and the README together.
    assert set(clipcls.__all__) == EXPECTED
    for name in clipcls.__all__:
        assert hasattr(clipcls, name), name


def test_errors_subclass_builtins() -> None:
    assert issubclass(clipcls.TaxonomyError, ValueError)
    assert issubclass(clipcls.ImageError, ValueError)
    assert issubclass(clipcls.ModelError, RuntimeError)
    assert issubclass(clipcls.NotFittedError, AttributeError)
    for name in ("TaxonomyError", "ImageError", "ModelError", "CacheError", "DataError", "ProbeError", "NotFittedError"):
        assert issubclass(getattr(clipcls, name), clipcls.ClipclsError)


def test_import_does_not_load_torch() -> None:
    import subprocess
    import sys

    code = "import sys, clipcls; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
