"""The model resolver (zoo name, torch.export program, FILE.py:factory) and the user's data
(.npz, image folder): what they accept, and the one-line errors for what they do not."""
import os

import numpy as np
import pytest
import torch

from tvm_quantmcu import data, models, pipeline
from tvm_quantmcu.cli import main
from tvm_quantmcu.models import ModelSpecError, resolve
from tvm_quantmcu.userdata import DataError

HERE = os.path.dirname(os.path.abspath(__file__))
NET = os.path.join(HERE, "net.py")


def test_zoo_name_keeps_working():
    ref = resolve("mbv2-fmnist")
    assert (ref.kind, ref.name, ref.input_shape) == ("zoo", "mbv2-fmnist", (1, 64, 64))
    assert ref.digest == models.checkpoint_hash("mbv2-fmnist") and ref.trained
    assert not resolve("mbv2-imagenet").trained


def test_factory_with_checkpoint(tmp_path):
    torch.manual_seed(1)
    from importlib.util import module_from_spec, spec_from_file_location
    spec = spec_from_file_location("net_for_test", NET)
    mod = module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.make_avgpool()
    ckpt = tmp_path / "w.pt"
    torch.save(net.state_dict(), ckpt)
    ref = resolve(f"{NET}:make_avgpool", str(ckpt))
    assert (ref.kind, ref.name, ref.input_shape) == ("factory", "net-make_avgpool", (1, 28, 28))
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(ref.build()(x), net.eval()(x))           # the checkpoint's weights
    # other weights → another identity (policies and firmware bind to it)
    torch.save(mod.make_avgpool().state_dict(), tmp_path / "w2.pt")
    assert resolve(f"{NET}:make_avgpool", str(tmp_path / "w2.pt")).digest != ref.digest


def test_exported_program_file(tmp_path):
    from importlib.util import module_from_spec, spec_from_file_location
    spec = spec_from_file_location("net_for_test2", NET)
    mod = module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.make_avgpool().eval()
    path = tmp_path / "lenet.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(1, 1, 28, 28),)), path)
    ref = resolve(str(path))
    assert (ref.kind, ref.name, ref.input_shape) == ("program", "lenet", (1, 28, 28))
    imp = pipeline.load(ref)
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    want = net(torch.from_numpy(x)).detach().numpy()
    assert np.allclose(imp.torch_model(torch.from_numpy(x)).detach().numpy(), want, atol=1e-5)
    from tvm_quantmcu.graph import run_float
    assert np.abs(run_float(imp.graph, x) - want).max() < 1e-4
    with pytest.raises(ModelSpecError, match="exported for input 1×28×28"):
        resolve(str(path), input_shape=(1, 32, 32))
    with pytest.raises(ModelSpecError, match="holds its weights"):
        resolve(str(path), checkpoint=str(tmp_path / "w.pt"))


@pytest.mark.parametrize("spec, kw, msg", [
    ("no-such-model", {}, "unknown model 'no-such-model'"),
    ("/no/such/net.py:make", {}, "does not exist"),
    (f"{NET}:nope", {}, "has no function 'nope' (callables defined there: LeNet, make"),
    (f"{NET}:make", {"input_shape": (3, 28, 28)}, "does not accept input 1×3×28×28"),
    (f"{NET}:make", {"checkpoint": "/no/such/w.pt"}, "checkpoint /no/such/w.pt does not exist"),
    ("mbv2-fmnist", {"input_shape": (1, 28, 28)}, "takes input 1×64×64"),
])
def test_model_errors(spec, kw, msg):
    with pytest.raises(ModelSpecError) as e:
        resolve(spec, **kw)
    assert msg in str(e.value)


def test_factory_needs_an_input_shape(tmp_path):
    f = tmp_path / "plain.py"
    f.write_text("from torch import nn\n"
                 "def build():\n    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), "
                 "nn.LazyLinear(10))\n"
                 "def broken():\n    raise RuntimeError('no weights here')\n"
                 "def not_a_module():\n    return 3\n")
    with pytest.raises(ModelSpecError, match="give --input-shape C,H,W"):
        resolve(f"{f}:build")
    assert resolve(f"{f}:build", input_shape="1,12,12").input_shape == (1, 12, 12)
    with pytest.raises(ModelSpecError, match="calling broken\\(\\) failed: RuntimeError: no "):
        resolve(f"{f}:broken", input_shape=(1, 12, 12))
    with pytest.raises(ModelSpecError, match="returned int, not a torch.nn.Module"):
        resolve(f"{f}:not_a_module", input_shape=(1, 12, 12))
    ckpt = tmp_path / "other.pt"
    torch.save({"w": torch.zeros(2)}, ckpt)
    with pytest.raises(ModelSpecError, match="does not fit"):
        resolve(f"{f}:build", str(ckpt), (1, 12, 12))


def test_npz_splits_layouts_and_resize(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    nhwc = rng.integers(0, 256, (6, 20, 20, 3), dtype=np.uint8)
    np.savez(path, images=nhwc, labels=np.arange(6))
    src = data.source(str(path))
    x = src.split("test").images((3, 20, 20))
    assert x.shape == (6, 3, 20, 20) and x.dtype == np.float32
    assert np.allclose(x, nhwc.transpose(0, 3, 1, 2) / 255.0)
    assert len(src.split("train")) == 6                 # one set serves every split
    with pytest.raises(data.DataShapeError, match="pass --data-resize"):
        src.check((3, 32, 32))
    with pytest.raises(data.DataShapeError, match="3 channel"):
        src.check((1, 20, 20))
    big = data.source(str(path), resize=True).split("train").images((3, 32, 32), 0, 2)
    assert big.shape == (2, 3, 32, 32) and 0.0 <= big.min() and big.max() <= 1.0
    np.savez(path, train_images=nhwc[:4], train_labels=np.zeros(4, np.int64),
             test_images=nhwc[4:], test_labels=np.ones(2, np.int64))
    src = data.source(str(path))
    assert len(src.split("train")) == 4 and list(src.split("test").labels) == [1, 1]
    np.savez(path, images=rng.normal(size=(2, 1, 20, 20)), labels=np.arange(2))
    with pytest.raises(DataError, match="store raw pixels"):
        data.source(str(path)).split("test").images((1, 20, 20))
    np.savez(path, pics=nhwc)
    with pytest.raises(DataError, match="needs 'images' and 'labels'"):
        data.source(str(path)).split("test")
    path.write_bytes(path.read_bytes()[:60])            # truncated: not a zip any more
    with pytest.raises(DataError, match="not a readable .npz"):
        data.source(str(path)).split("test")


def test_image_folder(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(
                tmp_path / c / f"{i}.png")
    split = data.source(str(tmp_path), resize=True).split("test")
    assert list(split.labels) == [0, 0, 0, 1, 1, 1]
    x = split.images((3, 16, 16), 2, 5)
    assert x.shape == (3, 3, 16, 16)
    assert split.images((1, 16, 16), 0, 1).shape == (1, 1, 16, 16)      # grey on demand
    with pytest.raises(data.DataShapeError, match="24×30 but the model takes 16×16"):
        data.source(str(tmp_path)).check((3, 16, 16))
    with pytest.raises(DataError, match="does not exist"):
        data.source(str(tmp_path / "none")).split("test")


@pytest.mark.parametrize("argv, msg", [
    (["eval", "--model", "/no/such/net.py:make"], "does not exist"),
    (["eval", "--model", f"{NET}:nope"], "has no function 'nope'"),
    (["plan", "--sram-kb", "8", "--model", f"{NET}:make", "--input-shape", "1,28"],
     "give C,H,W"),
    (["search", "--model", "mbv2-fmnist", "--data", "/no/such.npz"], "does not exist"),
    (["deploy", "--model", f"{NET}:make", "--input-shape", "2,28,28"], "does not accept input"),
])
def test_cli_errors_are_one_line(capsys, argv, msg):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, err
