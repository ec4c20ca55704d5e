"""The baseline: a plain Keras script in the style of the blog tutorials, no TFX.

The TensorFlow "Convolutional Neural Network (CNN)" tutorial model (Conv32-Pool-Conv64-Pool-
Conv64-Dense64), Adam, pixels scaled to [0, 1], read from the same image folders (train/ and
test/; grayscale or RGB, at the images' own size), trained until a wall-time budget runs out,
then scored on the test split.

    python bench/tutorial_cnn.py --data DIR --seconds 600
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class TimeBudget:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def callback(self):
        import keras

        budget = self.seconds

        class Stop(keras.callbacks.Callback):
            def on_train_begin(self, logs=None) -> None:
                self.start = time.monotonic()

            def on_epoch_end(self, epoch, logs=None) -> None:
                elapsed = time.monotonic() - self.start
                print(f"[tutorial] epoch {epoch + 1} accuracy={logs['accuracy']:.4f} "
                      f"elapsed={elapsed:.0f}s", flush=True)
                # Stop when another epoch would overrun the budget.
                if elapsed * (epoch + 2) / (epoch + 1) > budget:
                    self.model.stop_training = True

        return Stop()


def _image_shape(data: Path) -> tuple[int, int, int]:
    from ingest.imageinfo import image_shape

    first_class = sorted(p for p in (data / "train").iterdir() if p.is_dir())[0]
    return image_shape(next(p for p in sorted(first_class.iterdir())).read_bytes())


def run(data: Path, seconds: float) -> dict:
    import keras
    import tensorflow as tf

    start = time.monotonic()
    height, width, channels = _image_shape(data)
    load = dict(image_size=(height, width), batch_size=64, label_mode="int", seed=0,
                color_mode="grayscale" if channels == 1 else "rgb")
    train = keras.utils.image_dataset_from_directory(data / "train", shuffle=True, **load)
    test = keras.utils.image_dataset_from_directory(data / "test", shuffle=False, **load)
    num_classes = len(train.class_names)
    scale = keras.layers.Rescaling(1.0 / 255)
    train = train.map(lambda x, y: (scale(x), y)).cache().prefetch(tf.data.AUTOTUNE)
    test = test.map(lambda x, y: (scale(x), y)).cache().prefetch(tf.data.AUTOTUNE)

    model = keras.Sequential([
        keras.Input((height, width, 1 if channels == 1 else 3)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(num_classes),
    ])
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    fit_start = time.monotonic()
    history = model.fit(train, epochs=1000, verbose=0,
                        callbacks=[TimeBudget(seconds).callback()])
    fit_seconds = time.monotonic() - fit_start
    _, accuracy = model.evaluate(test, verbose=0)
    return {
        "test_accuracy": float(accuracy),
        "epochs": len(history.history["loss"]),
        "fit_seconds": round(fit_seconds, 1),
        "total_seconds": round(time.monotonic() - start, 1),
        "budget_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train/ and test/")
    parser.add_argument("--seconds", type=float, required=True, help="training wall-time budget")
    args = parser.parse_args()
    print(json.dumps(run(args.data, args.seconds)))


if __name__ == "__main__":
    main()
