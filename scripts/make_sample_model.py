"""Build hubcache's tiny, real TF2 SavedModel (the demo model and the interop tests' model).

Run it with a Python that has tensorflow (see ``.ci/tf-env.sh``)::

    python scripts/make_sample_model.py OUT_DIR [--check]

The model holds two variables, ``w = [1, 2, 3]`` and ``b = 0.5``, and computes
``y = x * w + b`` for a float32 vector ``x`` of length 3, plus ``total = sum(y)``.
For ``x = [1, 2, 3]``: ``y = [1.5, 4.5, 9.5]``, ``total = 15.5``.

It is exported with a ``serving_default`` signature (input ``x``, outputs ``y`` and
``total``), ``__call__`` (returns ``y``), and ``labels()`` which returns the text of the
asset ``assets/labels.txt`` (so a test can see assets resolve inside the cache dir).
``OUT_DIR`` must not exist or be empty. ``--check`` loads it back and checks the numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

LABELS = "sample\nmodel\n"
W = (1.0, 2.0, 3.0)
B = 0.5
EXAMPLE_X = (1.0, 2.0, 3.0)
EXAMPLE_Y = (1.5, 4.5, 9.5)
EXAMPLE_TOTAL = 15.5


def build(out_dir: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # noqa: PLC0415 - after the log level is set; --help needs no TF

    class Tiny(tf.Module):
        def __init__(self, labels_path: str) -> None:
            super().__init__(name="tiny")
            self.w = tf.Variable(W, dtype=tf.float32, name="w")
            self.b = tf.Variable(B, dtype=tf.float32, name="b")
            self.labels_file = tf.saved_model.Asset(labels_path)

        @tf.function(input_signature=[tf.TensorSpec([3], tf.float32, name="x")])
        def __call__(self, x):
            return x * self.w + self.b

        @tf.function(input_signature=[tf.TensorSpec([3], tf.float32, name="x")])
        def serve(self, x):
            y = self(x)
            return {"y": y, "total": tf.reduce_sum(y)}

        @tf.function(input_signature=[])
        def labels(self):
            return tf.io.read_file(self.labels_file)

    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise SystemExit(f"{out_dir} exists and is not empty")
    with tempfile.TemporaryDirectory() as tmp:
        labels_path = os.path.join(tmp, "labels.txt")
        with open(labels_path, "w", encoding="utf-8") as f:
            f.write(LABELS)
        module = Tiny(labels_path)
        tf.saved_model.save(
            module,
            out_dir,
            signatures={"serving_default": module.serve.get_concrete_function()},
        )


def check(model_dir: str) -> None:
    """Load ``model_dir`` with tf.saved_model.load and check every entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # noqa: PLC0415 - after the log level is set; --help needs no TF

    model = tf.saved_model.load(model_dir)
    x = tf.constant(EXAMPLE_X, tf.float32)
    out = model.signatures["serving_default"](x=x)
    got_y = tuple(float(v) for v in out["y"].numpy())
    got_total = float(out["total"].numpy())
    if got_y != EXAMPLE_Y or got_total != EXAMPLE_TOTAL:
        raise SystemExit(f"serving_default gave y={got_y} total={got_total}")
    if tuple(float(v) for v in model(x).numpy()) != EXAMPLE_Y:
        raise SystemExit("__call__ gave a wrong result")
    if model.labels().numpy().decode("utf-8") != LABELS:
        raise SystemExit("labels() did not read assets/labels.txt")
    print(f"ok: y={list(got_y)} total={got_total}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--check", action="store_true", help="load it back and check it")
    args = parser.parse_args(argv)
    build(args.out_dir)
    if args.check:
        check(args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
