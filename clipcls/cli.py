"""The ``clipcls`` command line.

Exit codes: 0 success; 2 usage or input error (bad taxonomy, unknown model,
missing file); 3 the run finished but some images could not be read (their
rows carry an ``error`` field).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

EXIT_OK, EXIT_USAGE, EXIT_PARTIAL = 0, 2, 3
# Kept here rather than imported so `clipcls --help` stays fast; a test checks it matches.
STRATEGY_CHOICES = ("topdown", "flat", "multilabel", "chils", "hybrid")
CSV_FIELDS = ("image", "label", "node", "path", "confidence", "stopped_at", "top_k", "metadata", "error")


class _Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal, or forced)."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.total, self.enabled, self.n, self.t0, self.last = total, enabled, 0, time.time(), 0.0

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.time()
        if self.enabled and (now - self.last > 0.2 or self.n == self.total):
            self.last = now
            rate = self.n / max(now - self.t0, 1e-9)
            if self.total:
                filled = int(30 * self.n / self.total)
                bar = "#" * filled + "." * (30 - filled)
                sys.stderr.write(f"\r[{bar}] {self.n}/{self.total} images {rate:.0f} img/s")
            else:
                sys.stderr.write(f"\r{self.n} images {rate:.0f} img/s")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _csv_row(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "image": d["image"], "label": d.get("label", ""), "node": d.get("node", ""),
        "path": "/".join(d.get("path", [])), "confidence": d.get("confidence", ""),
        "stopped_at": d.get("stopped_at") or "",
        "top_k": ";".join(f"{t['label']}:{t['score']:.4f}" for t in d.get("top_k", [])),
        "metadata": json.dumps(d["metadata"]) if d.get("metadata") else "", "error": d.get("error", ""),
    }


def _done_images(path: Path, fmt: str) -> set[str]:
    """Images already written to ``path``; a torn last line (killed mid-write) is cut off."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    if cut != len(data):
        with open(path, "r+b") as f:
            f.truncate(cut)
        data = data[:cut]
    done = set()
    text = data.decode("utf-8", errors="replace")
    if fmt == "jsonl":
        for line in text.splitlines():
            try:
                done.add(json.loads(line)["image"])
            except (ValueError, KeyError, TypeError):
                continue
    else:
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("image"):
                done.add(row["image"])
    return done


def _sources(inputs: Sequence[str], skip: set[str]) -> Iterator[str]:
    from clipcls._images import iter_image_paths

    for p in iter_image_paths(inputs):
        s = str(p)
        if s not in skip:
            yield s


def _count(inputs: Sequence[str]) -> int:
    from clipcls._images import iter_image_paths

    return sum(1 for _ in iter_image_paths(inputs))


def _make_classifier(args: argparse.Namespace, taxonomy: Any) -> Any:
    from clipcls._classify import Classifier

    from clipcls._images import DEFAULT_LIMITS, ImageLimits

    limits = ImageLimits(max_bytes=args.max_bytes or DEFAULT_LIMITS.max_bytes,
                         max_pixels=args.max_pixels or DEFAULT_LIMITS.max_pixels, allow_truncated=args.allow_truncated)
    clf = Classifier(taxonomy, args.model, args.pretrained, cache_dir=args.cache_dir,
                     batch_size=args.batch_size, workers=args.workers, image_limits=limits, backend=args.backend)
    if getattr(args, "probes", None):
        from clipcls._probes import load_probes

        clf.set_probes(load_probes(args.probes, clf))
    if getattr(args, "calibration", None):
        from clipcls._calibration import apply_calibration, load_calibration

        apply_calibration(clf, load_calibration(args.calibration, clf))
    return clf


def cmd_classify(args: argparse.Namespace) -> int:
    for item in args.inputs:
        if not os.path.exists(item):
            raise _InputError(f"{item}: no such file or folder")
    # The path, not a loaded Taxonomy: a warm start from the compiled cache skips parsing the file.
    clf = _make_classifier(args, args.taxonomy)
    if args.verbose and clf.last_sync is not None:
        s = clf.last_sync
        print(f"clipcls: text index: encoded {s.encoded} node(s) ({s.texts_encoded} texts), reused {s.reused}, "
              f"removed {s.removed}", file=sys.stderr)
    out_path = Path(args.out) if args.out else None
    skip = _done_images(out_path, args.format) if (out_path and args.resume) else set()
    total = _count(args.inputs) - len(skip) if (args.progress or (sys.stderr.isatty() and not args.quiet)) else None
    progress = _Progress(total, enabled=total is not None)
    append = bool(out_path and args.resume and out_path.exists())
    f: TextIO = open(out_path, "a" if append else "w", encoding="utf-8", newline="") if out_path else sys.stdout
    writer = None
    if args.format == "csv":
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if not append or out_path is None or out_path.stat().st_size == 0:
            writer.writeheader()
    n_err = n = 0
    kw = dict(strategy=args.strategy, threshold=args.threshold, top_k=args.top_k, beam=args.beam)
    try:
        stream = clf.iter_classify(_sources(args.inputs, skip), on_error="raise" if args.fail_fast else "record", **kw)
        for pred in stream:
            d = pred.to_dict()
            n += 1
            n_err += pred.error is not None
            if args.format == "jsonl":
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
            elif args.format == "csv":
                assert writer is not None
                writer.writerow(_csv_row(d))
            else:
                if pred.error:
                    f.write(f"{d['image']}\tERROR\t{d['error']}\n")
                else:
                    stop = f" (stopped at {pred.stopped_at})" if pred.stopped_at else ""
                    f.write(f"{d['image']}\t{d['label']}\t{d['confidence']:.3f}\t{' > '.join(d['path'])}{stop}\n")
            # Rows are flushed as they are written so a killed run keeps them (see --resume).
            f.flush()
            progress.update()
    finally:
        progress.close()
        if out_path:
            f.close()
    if n_err:
        print(f"clipcls: {n_err} of {n} image(s) could not be read; their rows carry an 'error' field", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def cmd_taxonomy(args: argparse.Namespace) -> int:
    from clipcls._taxonomy import load_taxonomy, save_taxonomy

    tax = load_taxonomy(args.file)
    if args.action == "validate":
        print(f"{args.file}: ok ({len(tax)} nodes, {len(tax.leaves())} leaves, {'tree' if tax.is_tree() else 'DAG'})")
        return EXIT_OK
    if args.action == "show":
        _print_tree(tax)
        return EXIT_OK
    if args.action == "add":
        meta = json.loads(args.metadata) if args.metadata else None
        if meta is not None and not isinstance(meta, dict):
            raise _InputError("--metadata must be a JSON object")
        fields = dict(label=args.label, synonyms=args.synonym or None, prompts=args.prompt or None,
                      description=args.description, threshold=args.threshold, metadata=meta)
        change = (lambda c: c.add_class(args.id, args.parent, **fields))
    elif args.action == "remove":
        change = (lambda c: c.remove_class(args.id))
    else:
        change = (lambda c: c.rename_class(args.id, label=args.label, synonyms=args.synonym or None))
    if args.no_index:
        t = tax.copy()
        if args.action == "add":
            t.add_node(args.id, args.parent, **{k: v for k, v in fields.items() if v is not None})
        elif args.action == "remove":
            t.remove_node(args.id)
        else:
            t.update_node(args.id, label=args.label, synonyms=args.synonym or None)
        save_taxonomy(t)
    else:
        clf = _make_classifier(args, args.file)  # the path: a warm start from the compiled cache
        change(clf)
        s = clf.last_sync
        if s is not None:
            print(f"clipcls: text index: encoded {s.encoded} node(s) ({s.texts_encoded} texts), reused {s.reused}, "
                  f"removed {s.removed}", file=sys.stderr)
    print(f"{args.file}: {args.action} {args.id}: done")
    return EXIT_OK


def cmd_probe(args: argparse.Namespace) -> int:
    from clipcls._probes import train_probes

    if args.steps < 10:
        raise _InputError("--steps must be at least 10")
    clf = _make_classifier(args, args.taxonomy)
    probes, report = train_probes(clf, args.data, balance=not args.no_balance, mixup=args.mixup, seed=args.seed,
                                  steps=args.steps)
    out = Path(args.out) if args.out else Path(f"{Path(args.taxonomy).stem}.probes.safetensors")
    probes.save(out)
    print(f"{report['images']} labelled images ({report['encoded']} encoded, {report['images'] - report['encoded']} from the cache), "
          f"{report['classes']} classes, {'multi' if report['multilabel'] else 'single'}-label")
    print("parent\tchildren\texamples\talpha\tlam\tsteps\tchosen by")
    for h in report["heads"]:
        print(f"{h['parent']}\t{h['children']}\t{h['n']}\t{h['alpha']:.2f}\t{h['lam']}\t{h['steps']}\t{h['selection']}")
    print(f"wrote {out}; use it with `clipcls classify --probes {out} ...`")
    return EXIT_OK


def _labelled(args: argparse.Namespace, clf: Any) -> tuple[Any, Any]:
    from clipcls._data import load_labelled

    ds = load_labelled(args.data, clf.taxonomy)
    X = clf.embed_files(ds.paths)
    k = clf.last_images_encoded
    print(f"{len(ds)} labelled images from {args.data} ({k} encoded, {len(ds) - k} from the cache)")
    return ds, X


def cmd_eval(args: argparse.Namespace) -> int:
    from clipcls._evaluate import evaluate

    clf = _make_classifier(args, args.taxonomy)
    ds, X = _labelled(args, clf)
    counts = clf.probes.class_counts_ if clf.probes is not None else None
    rep = evaluate(clf, X, ds.labels, paths=ds.paths, train_counts=counts, level=args.level, strategies=args.strategy)
    print(rep.table())
    print(f"\ntop-down ECE (15 bins): {100 * rep.ece:.2f}%")
    if rep.multilabel is not None:
        print(f"multi-label: mAP {100 * rep.multilabel['mAP']:.1f}%, macro F1 {100 * rep.multilabel['macro_f1']:.1f}%")
    for c in rep.coverage:
        print(f"threshold {c.threshold:<4g} coverage {100 * c.coverage:5.1f}%  leaf accuracy {100 * c.leaf_accuracy:5.1f}%")
    for w in rep.warnings:
        print(f"warning: {w}")
    if args.report:
        from clipcls._report import write_report

        print(f"report: {write_report(rep, clf.taxonomy, args.report)}")
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    import numpy as np

    from clipcls._calibration import ece_of, fit_calibration

    if not 0.0 <= args.holdout < 1.0:
        raise _InputError("--holdout must be in [0, 1)")
    if args.target_precision is not None and not 0.0 < args.target_precision <= 1.0:
        raise _InputError("--target-precision must be in (0, 1]")
    args.calibration = None
    clf = _make_classifier(args, args.taxonomy)
    ds, X = _labelled(args, clf)
    if ds.multilabel:
        raise _InputError("calibrate needs single-label data (one leaf per image)")
    truth = [ls[0] for ls in ds.labels]
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(truth))
    n_check = int(round(args.holdout * len(truth)))
    check, fit = order[:n_check], order[n_check:]
    cal = fit_calibration(clf, X[fit], [truth[i] for i in fit], strategy=args.strategy,
                          target_precision=args.target_precision)
    print(f"temperature {cal.temperature:.3f} fitted on {len(fit)} images; ECE there {100 * cal.ece_before:.2f}% -> "
          f"{100 * cal.ece_after:.2f}%")
    if n_check:
        before = ece_of(clf, X[check], [truth[i] for i in check], args.strategy)
        saved = clf.temperature
        clf.temperature = cal.temperature
        after = ece_of(clf, X[check], [truth[i] for i in check], args.strategy)
        clf.temperature = saved
        print(f"on {n_check} held-out images: ECE {100 * before:.2f}% before, {100 * after:.2f}% after")
    if cal.thresholds:
        print("per-node thresholds for precision >= " + f"{args.target_precision:g}: "
              + ", ".join(f"{k} {v:.3f}" for k, v in cal.thresholds.items()))
    out = Path(args.out) if args.out else Path(f"{Path(args.taxonomy).stem}.calibration.json")
    cal.save(out)
    print(f"wrote {out}; use it with `clipcls classify --calibration {out} ...`")
    return EXIT_OK


def _print_tree(tax: Any) -> None:
    seen: set[str] = set()
    stack = [(tax.root, 0)]
    while stack:
        n, d = stack.pop()
        node = tax.node(n)
        extra = f" ({', '.join(node.synonyms)})" if node.synonyms else ""
        again = " [also above]" if n in seen else ""
        print(f"{'  ' * d}{n}: {node.label}{extra}{again}")
        if n in seen:
            continue
        seen.add(n)
        stack.extend((c, d + 1) for c in reversed(tax.children(n)))


def cmd_models(args: argparse.Namespace) -> int:
    from clipcls._encoder import list_models
    from clipcls.zoo import DEFAULT_MODEL

    for name, desc in list_models().items():
        star = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{star}\t{desc}")
    if args.all:
        import open_clip

        for m, tag in open_clip.list_pretrained():
            print(f"{m}\t--pretrained {tag}\t(downloads weights)")
    return EXIT_OK


class _InputError(Exception):
    pass


def _unit(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return v


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return v


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="embedded model name, open_clip architecture, hf-hub:org/repo or local-dir:PATH (default: embedded)")
    p.add_argument("--pretrained", default=None, help="pretrained tag or local checkpoint file, with an open_clip architecture")
    p.add_argument("--cache-dir", default=None, help="text-index cache (default $CLIPCLS_CACHE or ~/.cache/clipcls)")
    p.add_argument("--batch-size", type=_positive, default=64)
    p.add_argument("--workers", type=_positive, default=4, help="threads decoding images")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="run the image tower on torch or ONNX Runtime (pip install 'clipcls[onnx]')")
    p.add_argument("--max-pixels", type=_positive, default=None, help="refuse larger images (default: Pillow's ~89M)")
    p.add_argument("--max-bytes", type=_positive, default=None, help="refuse larger files (default: 64 MiB)")
    p.add_argument("--allow-truncated", action="store_true", help="decode truncated files instead of refusing them")
    p.add_argument("-v", "--verbose", action="store_true", help="log cache and encoder activity to stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipcls", description="Zero-shot hierarchical image classification on CLIP.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("classify", help="classify images and folders")
    p.add_argument("inputs", nargs="+", metavar="IMAGES_OR_FOLDERS")
    p.add_argument("--taxonomy", required=True, help="taxonomy file (YAML or JSON)")
    p.add_argument("--strategy", choices=STRATEGY_CHOICES, default="topdown")
    p.add_argument("--threshold", type=_unit, default=None, help="score needed to go one level deeper (0..1)")
    p.add_argument("--top-k", type=_positive, default=5)
    p.add_argument("--beam", type=_positive, default=1, help="top-down beam width")
    p.add_argument("--format", choices=("jsonl", "csv", "table"), default="jsonl")
    p.add_argument("--out", default=None, help="write rows here instead of stdout")
    p.add_argument("--resume", action="store_true", help="skip images already in --out and append")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first unreadable image (exit 2)")
    p.add_argument("--probes", default=None, help="linear probes file from `clipcls probe train`")
    p.add_argument("--calibration", default=None, help="calibration file from `clipcls calibrate`")
    p.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_model_args(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("taxonomy", help="validate, show or edit a taxonomy file")
    p.add_argument("action", choices=("validate", "show", "add", "remove", "rename"))
    p.add_argument("file")
    p.add_argument("id", nargs="?", help="node id (add, remove, rename)")
    p.add_argument("--parent", action="append", help="parent id (repeat for a DAG); add only")
    p.add_argument("--label")
    p.add_argument("--synonym", action="append", help="repeatable")
    p.add_argument("--prompt", action="append", help="explicit prompt text (repeatable)")
    p.add_argument("--description")
    p.add_argument("--threshold", type=_unit)
    p.add_argument("--metadata", help="JSON object copied into predictions")
    p.add_argument("--no-index", action="store_true", help="edit the file only; the next classify encodes the change")
    _add_model_args(p)
    p.set_defaults(func=cmd_taxonomy)

    p = sub.add_parser("probe", help="train linear probes on labelled images")
    p.add_argument("action", choices=("train",))
    p.add_argument("--taxonomy", required=True)
    p.add_argument("--data", required=True, help="folder of class subfolders, or a CSV / JSONL manifest")
    p.add_argument("--out", default=None, help="probes file (default: <taxonomy>.probes.safetensors)")
    p.add_argument("--no-balance", action="store_true", help="do not weight classes by inverse frequency")
    p.add_argument("--mixup", type=float, default=0.0, help="feature-level MixUp strength (0 = off)")
    p.add_argument("--steps", type=_positive, default=1000)
    p.add_argument("--seed", type=int, default=0)
    _add_model_args(p)
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("eval", help="measure a taxonomy and model on labelled images, and write a report")
    p.add_argument("--taxonomy", required=True)
    p.add_argument("--data", required=True, help="folder of class subfolders, or a CSV / JSONL manifest")
    p.add_argument("--probes", default=None)
    p.add_argument("--calibration", default=None)
    p.add_argument("--report", default=None, metavar="DIR", help="write DIR/index.html")
    p.add_argument("--level", type=int, default=None, help="collapse the confusion matrix to this depth")
    p.add_argument("--strategy", action="append", default=None, choices=("flat", "topdown", "beam", "bottomup", "chils", "hybrid"),
                   help="compare only these (repeatable; default: all); top-down greedy always runs")
    _add_model_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("calibrate", help="fit a temperature (and per-node thresholds) on held-out labelled images")
    p.add_argument("--taxonomy", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--probes", default=None)
    p.add_argument("--strategy", choices=("topdown", "flat", "chils", "hybrid"), default="topdown")
    p.add_argument("--target-precision", type=float, default=None, help="also fit per-node thresholds for it")
    p.add_argument("--holdout", type=float, default=0.0, help="share kept aside to report ECE before/after")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="default: <taxonomy>.calibration.json")
    _add_model_args(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("models", help="list models")
    p.add_argument("--all", action="store_true", help="also list open_clip's pretrained tags")
    p.set_defaults(func=cmd_models)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from clipcls._errors import ClipclsError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "taxonomy" and args.action in ("add", "remove", "rename") and not args.id:
        parser.error(f"taxonomy {args.action} needs a node id")
    if args.command == "taxonomy" and args.action == "add" and not args.parent:
        parser.error("taxonomy add needs --parent")
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(message)s", stream=sys.stderr)
    if not getattr(args, "verbose", False):
        # open_clip logs at INFO on the root logger; keep the terminal quiet.
        logging.getLogger().setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except (ClipclsError, _InputError) as e:
        print(f"clipcls: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("clipcls: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
