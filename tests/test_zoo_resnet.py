"""The weights="imagenet" path of chapter 5, end to end and offline: a checkpoint under torchvision's
file name in a temporary $TORCH_HOME, a tiny generated ImageFolder, no network."""

from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import models as tv_models

import qhelpers.course
from qhelpers import checks, models, ptq, quant
from qhelpers import data as qdata
from qhelpers.course import zoo
from qhelpers.train import evaluate

CLASSES = ["tench", "goldfish", "great white shark"]  # ImageNet classes 0, 1, 2


@pytest.fixture
def checkpoint(torch_home):
    """A (random, seeded) ResNet-18 state dict saved where torchvision looks for IMAGENET1K_V1."""
    torch.manual_seed(0)
    state = tv_models.resnet18(weights=None).state_dict()
    path = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return path, state


def _image_folder(root: Path, classes=CLASSES, per_class: int = 3) -> Path:
    g = torch.Generator().manual_seed(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = 60 + 10 * i, 80 - 5 * c  # varied sizes: the weights' transforms resize and crop
            pixels = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(root / name / f"img{i}.png")
    return root


def test_checkpoint_path_follows_torch_home(torch_home):
    assert models.checkpoint_path() == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"


def test_missing_weights_say_what_to_do(torch_home):
    with pytest.raises(models.WeightsUnavailableError, match="weights='none'"):
        models.load_resnet18("imagenet")
    with pytest.raises(ValueError, match="choose 'none'"):
        models.load_resnet18("pretrained")


@pytest.mark.parametrize(
    "names, expected",
    [(["tench", "goldfish"], [0, 1]), (["7", "42", "999"], [7, 42, 999]), ([f"n{i:08d}" for i in range(1000)], list(range(1000)))],
)
def test_class_indices(names, expected):
    assert qdata.class_indices(names) == expected


@pytest.mark.parametrize("names, match", [(["cats", "dogs"], "cannot map"), (["1000"], "not ImageNet indices"), ([], "no class")])
def test_class_indices_rejects(names, match):
    with pytest.raises(ValueError, match=match):
        qdata.class_indices(names)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        qdata.image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a usable ImageFolder"):
        qdata.image_folder(tmp_path / "empty")


def test_loaders_split_calibration_from_evaluation(tmp_path):
    folder = _image_folder(tmp_path / "val")
    loaders = qdata.imagenet_loaders(folder, calibration_images=4, batch_size=2)
    cal, test = loaders.train.dataset, loaders.test.dataset
    assert len(cal) == 4 and len(test) == 5
    assert not set(cal.indices) & set(test.indices)
    x, y = next(iter(loaders.test))
    assert x.shape == (2, 3, 224, 224) and set(y.tolist()) <= {0, 1, 2}
    with pytest.raises(ValueError, match="leave images to evaluate"):
        qdata.imagenet_loaders(folder, calibration_images=9)


def test_imagenet_path_end_to_end(checkpoint, tmp_path):
    """The chapter's weights='imagenet' path: load, evaluate FP32, quantize (eager), evaluate INT8."""
    path, state = checkpoint
    qhelpers.course.setup(0)
    folder = _image_folder(tmp_path / "val")
    rn = zoo.resnet18_with_data("imagenet", imagenet_dir=folder, calibration_images=3)
    assert (rn.resolution, rn.channels, rn.data.dataset) == (224, 3, "imagenet")
    loaded = rn.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())  # the checkpoint's weights, from the file

    fp32 = evaluate(rn.model, rn.data.test)
    # the same predictions by hand: PIL image -> the weights' transforms -> model
    folder_ds = rn.data.test.dataset
    with torch.inference_mode():
        by_hand = [int(rn.model(qdata.preprocess()(Image.open(folder_ds.dataset.samples[i][0]).convert("RGB"))[None]).argmax())
                   for i in folder_ds.indices]
    assert fp32.predictions.tolist() == by_hand
    labels = [folder_ds.dataset.samples[i][1] for i in folder_ds.indices]  # ImageFolder order = CLASSES order = 0, 1, 2
    assert fp32.accuracy == pytest.approx(sum(p == t for p, t in zip(by_hand, labels)) / len(labels))

    calibration = qdata.calibration_batches(rn.data, 2, batch_size=2)
    assert calibration[0].shape == (2, 3, 224, 224)
    q = ptq.ptq_eager(rn.model, calibration, fuse=lambda m: m.fuse_model(is_qat=False))
    int8 = evaluate(q, rn.data.test)
    assert 0.0 <= int8.accuracy <= 1.0 and len(int8.predictions) == len(labels)
    with torch.inference_mode():
        x = next(iter(rn.data.test))[0]
        assert quant.sqnr_db(rn.model(x), q(x)) > 10  # INT8 tracks FP32


def test_imagenet_needs_a_folder(checkpoint):
    with pytest.raises(ValueError, match="needs imagenet_dir"):
        zoo.resnet18_with_data("imagenet", imagenet_dir="")


def test_plain_resnet_computes_the_same_function():
    from qhelpers.models import resnet18_mnist

    torch.manual_seed(0)
    model = resnet18_mnist(stem="small_pool").eval()
    plain = models.plain_resnet(model)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(plain(x), model(x), atol=1e-5)
    assert not hasattr(plain, "fuse_model")
