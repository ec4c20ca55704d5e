"""The transfer recipe: a pretrained backbone's weights read without torch, photos of any size
resized alike in training and serving, the recipe auto picks for photos, and real
LocalDagRunner runs that bless and push an EfficientNet-Lite0 model and warm-start from it.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import imagegen
from cli import main
from cli.main import explain
from pipeline.workspace import Workspace
from report.summary import summarize_run
from schema.curated import write_schema
from serving.model_dir import file_sha256
from trainer.backbones import registry
from trainer.backbones.provenance import WeightsSource
from trainer.backbones.torch_state import StateDictError, load_state_dict
from trainer.preprocessing import decode_images
from trainer.recipes import choose_recipe, from_recipe
from trainer.record import TrainingRecord

# --- a state dict as torch.save writes it, without torch --------------------------------------


class _Storage:
    def __init__(self, array: np.ndarray, key: str) -> None:
        self.array, self.key = array, key


def _fake_torch(monkeypatch) -> types.ModuleType:
    """Modules named like torch's, so that pickle writes the same global references."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    for name in ("FloatStorage", "LongStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))

    def _rebuild_tensor_v2(*args):  # pragma: no cover - only referenced, never called
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


class _Tensor:
    def __init__(self, storage: _Storage, shape: tuple[int, ...]) -> None:
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        stride = tuple(int(np.prod(self.shape[i + 1:])) for i in range(len(self.shape)))
        return (sys.modules["torch._utils"]._rebuild_tensor_v2,
                (self.storage, 0, self.shape, stride, False, collections.OrderedDict()))


class _Pickler(pickle.Pickler):
    def __init__(self, f, torch) -> None:
        super().__init__(f, protocol=2)
        self.torch = torch

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            kind = "LongStorage" if obj.array.dtype == np.int64 else "FloatStorage"
            return ("storage", getattr(self.torch, kind), obj.key, "cpu", obj.array.size)
        return None


def write_state_dict(path: Path, arrays: dict[str, np.ndarray], monkeypatch,
                     zipped: bool = False) -> None:
    """torch.save(state_dict) in the legacy format (or the zip one), written by hand."""
    torch = _fake_torch(monkeypatch)
    storages = [_Storage(np.ascontiguousarray(a), str(i)) for i, a in enumerate(arrays.values())]
    state = collections.OrderedDict(
        (name, _Tensor(s, tuple(a.shape))) for (name, a), s in zip(arrays.items(), storages,
                                                                     strict=True))
    body = io.BytesIO()
    _Pickler(body, torch).dump(state)
    if zipped:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", body.getvalue())
            for s in storages:
                archive.writestr(f"archive/data/{s.key}", s.array.tobytes())
        return
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001,
                       {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(body.getvalue())
        pickle.dump([s.key for s in storages], f, protocol=2)
        for s in storages:
            f.write(np.int64(s.array.size).tobytes() + s.array.tobytes())


@pytest.mark.parametrize("zipped", [False, True], ids=["legacy", "zip"])
def test_the_reader_reads_a_state_dict_as_torch_save_writes_it(tmp_path, monkeypatch,
                                                               zipped) -> None:
    arrays = {"conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
              "bn.running_var": np.linspace(0, 1, 5, dtype=np.float32),
              "bn.num_batches_tracked": np.array(7, dtype=np.int64)}
    path = tmp_path / "weights.pth"
    write_state_dict(path, arrays, monkeypatch, zipped)
    monkeypatch.delitem(sys.modules, "torch")  # reading needs no torch
    read = load_state_dict(path)
    assert list(read) == list(arrays)
    for name, array in arrays.items():
        assert read[name].dtype == array.dtype and np.array_equal(read[name], array)


def test_the_reader_refuses_a_file_that_would_run_code(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        f.write(b"cos\nsystem\n(S'echo hacked'\ntR.")  # os.system('echo hacked')
    with pytest.raises(StateDictError, match="os.system"):
        load_state_dict(path)
    (tmp_path / "text.pth").write_text("not weights")
    with pytest.raises(StateDictError, match="not a readable PyTorch state dict"):
        load_state_dict(tmp_path / "text.pth")


def test_weights_that_do_not_fit_name_the_first_layer_and_both_shapes(tmp_path,
                                                                       monkeypatch) -> None:
    state = load_state_dict(registry.packaged_lite0_weights())
    state["_blocks.3._project_conv.weight"] = np.zeros((40, 96, 1, 1), np.float32)
    path = tmp_path / "other.pth"
    write_state_dict(path, state, monkeypatch)
    monkeypatch.delitem(sys.modules, "torch")
    with pytest.raises(registry.BackboneError) as error:
        registry.resolve_weights("efficientnet_lite0", str(path))
    assert "block3_project" in str(error.value)
    assert "(1, 1, 96, 40)" in str(error.value) and "(1, 1, 144, 40)" in str(error.value)


def test_keras_weights_offline_fail_fast_and_say_what_to_download(tmp_path,
                                                                  monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(registry, "_NETWORK_PROBE", ("127.0.0.1", 9))  # refused at once
    with pytest.raises(registry.BackboneError) as error:
        registry.resolve_weights("mobilenet_v3_small", "imagenet")
    text = str(error.value)
    assert "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5" in text
    assert "give the file with the training setting model.backbone_weights=PATH" in text
    assert "give the file with --backbone-weights PATH" in explain(error.value)
    with pytest.raises(registry.BackboneError, match="unknown backbone 'nope'.*efficientnet"):
        registry.resolve_weights("nope", "imagenet")


def test_bad_backbone_settings_exit_2_before_anything_runs(tmp_path, capsys) -> None:
    imagegen.write_folder(tmp_path / "photos", {"train": 3, "test": 1})
    args = ["run", "--data", str(tmp_path / "photos"), "--root", str(tmp_path / "root"),
            "--serving-dir", str(tmp_path / "serving")]
    assert main([*args, "--recipe", "fast", "--backbone", "efficientnet_lite0"]) == 2
    assert "--backbone efficientnet_lite0 needs the transfer recipe" in capsys.readouterr().err
    (tmp_path / "bad.pth").write_bytes(b"\x80\x02K\x01.")
    assert main([*args, "--backbone-weights", str(tmp_path / "bad.pth")]) == 2
    assert "not a PyTorch file" in capsys.readouterr().err
    assert main([*args, "--set", "backbone=resnet9000"]) == 2
    assert "unknown backbone 'resnet9000'" in capsys.readouterr().err
    assert not (tmp_path / "root" / "pipelines").exists()  # nothing ran


# --- the same bytes give the same tensor, whatever their size ---------------------------------


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_crop_keeps_the_centre_of_wide_and_tall_images() -> None:
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, 20:40] = 255  # the centre square is white, the sides black
    tall = np.ascontiguousarray(wide.transpose(1, 0, 2))
    for pixels in (wide, tall):
        out = decode_images(tf.constant([_png(pixels)]), 10, 10, 3, "crop").numpy()
        assert out.shape == (1, 10, 10, 3) and out.min() == pytest.approx(1.0)
        padded = decode_images(tf.constant([_png(pixels)]), 12, 12, 3, "pad").numpy()
        assert padded.shape == (1, 12, 12, 3) and padded.min() == 0.0  # black bands


@pytest.mark.parametrize(
    ("shape", "num_train", "sizes_vary", "recipe"),
    [
        ((375, 500, 3), 1800, True, "transfer"),  # pet photos of many sizes
        ((100, 100, 3), 1443, False, "transfer"),  # sign-language digits
        ((32, 32, 3), 1000, False, "transfer"),  # few small colour images
        ((32, 32, 3), 45000, True, "transfer"),
        ((32, 32, 3), 45000, False, "fast"),  # CIFAR-10 keeps the fast recipe
        ((96, 96, 3), 20000, False, "transfer"),
        ((28, 28, 1), 54000, False, "fast-gray"),  # grayscale keeps today's choices
        ((8, 8, 1), 1259, False, "classic"),  # the digits demo
        ((256, 256, 1), 2000, True, "classic"),
    ],
)
def test_auto_picks_the_backbone_for_colour_photos(shape, num_train, sizes_vary,
                                                    recipe) -> None:
    chosen, why = choose_recipe(shape, num_train, sizes_vary=sizes_vary)
    assert chosen == recipe, why
    if recipe == "transfer":
        config = from_recipe(chosen, (224, 224, 3), ("a", "b"), recipe_reason=why)
        assert config.model.backbone == "efficientnet_lite0" and config.model.resize_mode == "crop"
        assert config.preprocessing_config()["normalization"] == "minus_one_one"


# --- real runs ----------------------------------------------------------------------------


def _photo(class_name: str, rng: np.random.Generator, height: int, width: int) -> bytes:
    pixels = imagegen.class_pixels(class_name, rng, max(height, width))
    buffer = io.BytesIO()
    Image.fromarray(pixels[:height, :width]).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _write_photos(root: Path, per_class: dict[str, int]) -> None:
    """Colour-class photos of several sizes and aspect ratios, as phones and cameras give."""
    rng = np.random.default_rng(3)
    sizes = [(48, 64), (64, 48), (40, 40), (72, 96)]
    for split, count in per_class.items():
        for class_name in imagegen.CLASS_NAMES:
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{i:03d}.jpg").write_bytes(_photo(class_name, rng, *sizes[i % 4]))


@pytest.fixture(scope="module")
def transfer_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("transfer")
    _write_photos(base / "photos", {"train": 12, "test": 4})
    write_schema(len(imagegen.CLASS_NAMES), base / "schema.pbtxt")
    args = ["run", "--data", str(base / "photos"), "--root", str(base / "root"),
            "--pipeline-name", "photos", "--serving-dir", str(base / "serving"), "--schema",
            str(base / "schema.pbtxt"), "--input-size", "64", "--min-accuracy", "0.6",
            "--max-regression", "1"]
    store = str(Workspace(base / "root", "photos").metadata_path)
    runs = {}
    for name, extra in (("first", ["--epochs", "2"]), ("warm", ["--epochs", "2",
                                                                "--warm-start"])):
        code = main(args + extra)
        summary = summarize_run(store, "photos")
        runs[name] = (code, summary, TrainingRecord.read(summary.tensorboard_dir))
    return base, runs


def test_a_transfer_run_blesses_and_pushes_a_model_that_serves_any_size(transfer_runs) -> None:
    base, runs = transfer_runs
    code, summary, record = runs["first"]
    assert code == 0 and summary.blessed and summary.pushed
    config = record.config
    assert (config["recipe"], config["model"]["kind"], config["model"]["backbone"]) == (
        "transfer", "transfer", "efficientnet_lite0")
    assert "many sizes" in config["recipe_reason"] and config["image_shape"] == [64, 64, 3]
    transfer = record.transfer
    assert transfer.fine_tuned_blocks == 4 and transfer.feature_images_per_second > 0
    assert record.epochs_run == transfer.head_epochs_run + transfer.fine_tune_epochs_run

    version = Path(summary.pushed_destination)
    backbone = WeightsSource.read(version)
    weights = registry.packaged_lite0_weights()
    assert backbone.backbone == "efficientnet_lite0"
    assert backbone.sha256 == file_sha256(weights)
    assert "Apache-2.0" in backbone.licence
    assert summary.backbone == backbone  # what the console summary, runs and report show
    from report.lineage import model_lineage

    lineage = model_lineage(str(Workspace(base / "root", "photos").metadata_path),
                            version.name)
    assert lineage["backbone"] == json.loads(summary.to_json())["backbone"] == {
        key: value for key, value in backbone.to_data().items() if key != "schema_version"}

    serve = tf.saved_model.load(str(version)).signatures["serving_default"]
    rng = np.random.default_rng(11)
    images, names = [], []
    for class_name in imagegen.CLASS_NAMES:
        for height, width in ((30, 90), (120, 80)):  # sizes the training data never had
            images.append(_photo(class_name, rng, height, width))
            names.append(class_name)
    out = serve(image=tf.constant(images))
    assert out["probabilities"].shape == (6, 3)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)
    right = sum(n.decode() == name for n, name in zip(out["class_names"].numpy(), names,
                                                       strict=True))
    assert right >= 4, out["class_names"]  # 12 training photos a class, 2 epochs


def test_serving_gives_the_same_tensor_as_training_for_the_same_bytes(transfer_runs) -> None:
    """The Trainer's inputs (Transform's graph) and serving_default agree on every size."""
    import tensorflow_transform as tft

    from schema import features

    base, runs = transfer_runs
    summary = runs["first"][1]
    transform_dir = next((base / "root").glob("pipelines/photos/Transform/transform_graph/*"))
    layer = tft.TFTransformOutput(str(transform_dir)).transform_features_layer()
    model = tf.saved_model.load(summary.pushed_destination)
    rng = np.random.default_rng(5)
    for height, width in ((33, 97), (64, 64), (150, 50)):
        data = _photo("red", rng, height, width)
        # The saved layer's one trace takes every raw feature; serving_default's graph is the
        # same layer given the image alone (trainer/export.py).
        no_path = tf.SparseTensor(tf.zeros([0, 2], tf.int64), tf.constant([], tf.string), [1, 0])
        raw = {features.IMAGE_KEY: tf.constant([[data]]),
               features.LABEL_KEY: tf.constant([[0]], tf.int64),
               features.SOURCE_PATH_KEY: no_path}
        trained = layer(raw)[features.IMAGE_XF]
        served = model.tft_layer(raw)[features.IMAGE_XF]  # the graph serving_default runs
        assert trained.shape == (1, 64, 64, 3)
        np.testing.assert_array_equal(trained.numpy(), served.numpy())


def test_warm_start_with_a_backbone(transfer_runs) -> None:
    _, runs = transfer_runs
    code, summary, record = runs["warm"]
    first = runs["first"][1]
    assert code == 0 and record.warm_start.used
    assert record.warm_start.origin == first.pushed_destination
    assert record.transfer.head_epochs_run <= 16  # 0.4 of the recipe's 40


@pytest.mark.parametrize(
    ("short_side", "num_train", "input_size", "side"),
    [
        (375, 220, None, 288),  # a few hundred camera photos: the larger input
        (375, 1800, None, 224),  # thousands: the backbone's own, for time
        (100, 1443, None, 224),  # small photos are not upscaled further
        (200, 300, None, 224),
        (375, 220, 160, 160),  # --input-size decides
    ],
)
def test_the_input_side_follows_the_photos_and_their_number(short_side, num_train, input_size,
                                                            side) -> None:
    import argparse

    from cli.training import _transfer_side
    from ingest.manifest import ImageSizes

    sizes = ImageSizes(count=num_train, distinct_sizes=5, height_min=short_side,
                       height_median=short_side, height_max=500, width_min=short_side,
                       width_median=500, width_max=500, short_side_min=short_side,
                       short_side_median=short_side, short_side_max=500)
    info = types.SimpleNamespace(image_sizes=sizes, image_shape=(short_side, 500, 3))
    chosen, why = _transfer_side(argparse.Namespace(input_size=input_size),
                                 registry.get("efficientnet_lite0"), info, num_train)
    assert chosen == side, why
