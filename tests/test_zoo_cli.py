"""The zoo (fetch, verify, offline drop-in) and the CLI's clean evaluation and error handling."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from robustadder.cli import main
from robustadder.models import create_model, load_zoo, save_checkpoint
from robustadder.models.checkpoint import infer_arch
from robustadder.models.zoo import DEFAULT_MANIFEST

from helpers import tree

OFFICIAL_SHA = "fe3ad7c15573d34cddd9b3ec2eed12d9c2c818e59cd7d0797a954d6f76ea375b"


def run(*args):
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_manifest_has_the_official_release():
    entry = load_zoo(DEFAULT_MANIFEST)["ann20-official"]
    assert entry.arch == "resnet20_adder" and entry.sha256 == OFFICIAL_SHA and entry.accuracy == 91.8
    assert entry.url.endswith("d94dc43a0f2a7448c8c38bcf638062de89f2d34d/models/ResNet20-AdderNet.pth")


@pytest.fixture
def toy_zoo(tmp_path, monkeypatch):
    """A manifest whose 'remote' weights are a file:// URL, so fetching is tested offline."""
    torch.manual_seed(0)
    remote = tmp_path / "remote" / "toy.pth"
    remote.parent.mkdir()
    torch.save({f"module.{k}": v for k, v in create_model("resnet20_conv").state_dict().items()}, remote)
    sha = hashlib.sha256(remote.read_bytes()).hexdigest()
    manifest = tmp_path / "zoo.toml"
    manifest.write_text(
        f'[models.toy]\narch = "resnet20_conv"\nurl = "{remote.as_uri()}"\nfilename = "toy.pth"\n'
        f'sha256 = "{sha}"\naccuracy = 10.0\n'
        f'[models.broken]\narch = "resnet20_conv"\nurl = "{remote.as_uri()}"\nfilename = "b.pth"\n'
        f'sha256 = "{"0" * 64}"\n'
    )
    monkeypatch.setenv("ROBUSTADDER_ZOO", str(manifest))
    return remote


def test_zoo_fetches_verifies_and_caches(toy_zoo, isolated_home):
    entry = load_zoo()["toy"]
    assert not entry.present()
    loaded = entry.load()
    assert loaded.name == "toy" and loaded.arch.name == "resnet20_conv"
    assert entry.present() and entry.local_path() == isolated_home / "weights" / "toy.pth"
    toy_zoo.unlink()  # second use needs no network
    assert entry.load().weights_sha256 == loaded.weights_sha256


def test_zoo_checksum_mismatch_saves_nothing(toy_zoo, isolated_home):
    code, _, err = run("eval", "--model", "broken", "--n", "1")
    assert code == 2 and "expected" in err and "Traceback" not in err
    assert tree(isolated_home) in ([], ["weights"])


def test_zoo_offline_drop_in_and_corrupt_cache(toy_zoo, isolated_home):
    (isolated_home / "weights").mkdir()
    (isolated_home / "weights" / "toy.pth").write_bytes(toy_zoo.read_bytes())
    toy_zoo.unlink()
    assert load_zoo()["toy"].load().arch.name == "resnet20_conv"
    (isolated_home / "weights" / "toy.pth").write_bytes(b"garbage")
    code, _, err = run("eval", "--model", "toy", "--n", "1")
    assert code == 2 and "delete the file" in err


def test_official_release_offline_explains_how_to_drop_in(isolated_home, monkeypatch):
    monkeypatch.setattr("robustadder.fetch.urllib.request.urlopen", _offline)
    code, _, err = run("eval", "--model", "ann20-official", "--n", "1")
    assert code == 2
    assert "ResNet20-AdderNet.pth" in err and str(isolated_home / "weights") in err


def _offline(*args, **kwargs):
    import urllib.error

    raise urllib.error.URLError("network is unreachable")


def test_models_lists_the_zoo(toy_zoo):
    code, out, _ = run("models", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and rows["toy"]["parameters"] == 272_484 and rows["toy"]["present"] is False
    assert rows["toy"]["variant"] == "CNN" and rows["toy"]["accuracy"] == 10.0
    code, out, _ = run("models")
    assert code == 0 and "toy" in out and "resnet20_conv" in out


# -- clean evaluation ---------------------------------------------------------------------------------
def test_eval_thirdparty_json(shared_data, thirdparty):
    code, out, err = run(
        "eval", "--model", str(thirdparty), "--attack", "none", "--n", "64", "--data", str(shared_data), "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["n"] == 64 and result["model"] == thirdparty.name
    assert {"model", "n", "clean_accuracy", "seconds"} <= set(result)
    assert 80 <= result["clean_accuracy"] <= 100  # a 91.6 % model on 64 images


def test_official_format_gives_the_same_predictions(shared_data, thirdparty, tmp_path):
    """The same weights as the official release stores them: module. prefix, legacy, cuda:0."""
    state = torch.load(thirdparty, map_location="cpu", weights_only=True)
    official = tmp_path / "ResNet20-AdderNet.pth"
    original = torch.serialization.location_tag
    torch.serialization.location_tag = lambda s: "cuda:0"
    try:
        torch.save({f"module.{k}": v for k, v in state.items()}, official, _use_new_zipfile_serialization=False)
    finally:
        torch.serialization.location_tag = original
    from robustadder import evaluate

    a = evaluate(str(thirdparty), n=32, data=shared_data, progress=False)
    b = evaluate(str(official), n=32, data=shared_data, progress=False)
    np.testing.assert_array_equal(a["clean_pred"], b["clean_pred"])
    assert a.attrs["weights_sha256"] == b.attrs["weights_sha256"]


def test_eval_own_checkpoint_human_output(shared_data, tmp_path):
    path = tmp_path / "mine.pt"
    save_checkpoint(path, create_model("resnet20_conv_awn"), {"dataset": "cifar10"})
    code, out, err = run("eval", "--model", str(path), "--n", "8", "--data", str(shared_data))
    assert code == 0, err
    assert "clean accuracy" in out and "resnet20_conv_awn" in out and "8 CIFAR-10 test images (ids 0..7)" in out


# -- bad input: one line on stderr, exit 2, nothing written -------------------------------------------
@pytest.mark.parametrize(
    "make, args, match",
    [
        (None, ["--model", "ann99-magic"], "unknown model 'ann99-magic'"),
        (None, ["--model", "missing/ckpt.pt"], "checkpoint not found"),
        (lambda p: p.write_bytes(b"\x00" * 10), ["--model", "{f}"], "not a readable PyTorch checkpoint"),
        (lambda p: torch.save({"x": torch.zeros(2)}, p), ["--model", "{f}"], "does not look like a CIFAR ResNet"),
        (lambda p: None, ["--model", "{thirdparty}", "--data", "{tmp}/nodata"], "data directory not found"),
        (lambda p: None, ["--model", "{thirdparty}", "--batch-size", "0"], "--batch-size must be at least 1"),
        (lambda p: None, ["--model", "{thirdparty}", "--device", "cuda"], "no CUDA GPU"),
        (lambda p: None, ["--model", "{thirdparty}", "--backend", "fastest"], "unknown adder backend"),
        (lambda p: None, ["--model", "{thirdparty}", "--attack", "pgd-9000"], "unknown attack"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, thirdparty, shared_data, isolated_home, make, args, match):
    f = tmp_path / "input.pt"
    if make:
        make(f)
    before = tree(tmp_path)
    args = [a.format(f=f, thirdparty=thirdparty, tmp=tmp_path) for a in args]
    if "--data" not in args:
        args += ["--data", str(shared_data)]
    code, out, err = run("eval", *args, "--n", "4")
    assert code == 2, err
    assert match in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert tree(tmp_path) == before and tree(isolated_home) == []


def test_real_process_exit_code_and_stderr(tmp_path):
    bad = tmp_path / "random.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(2048))
    proc = subprocess.run([sys.executable, "-m", "robustadder", "eval", "--model", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "random.pt" in proc.stderr


# -- the project's own trained models ---------------------------------------------------------------
SHIPPED = sorted(name for name, entry in load_zoo(DEFAULT_MANIFEST).items() if entry.path)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_matches_its_manifest_entry(name):
    """A committed checkpoint is the file the manifest pins, and carries the recipe and accuracy it lists."""
    entry = load_zoo(DEFAULT_MANIFEST)[name]
    loaded = entry.load()  # verifies the file's sha256
    path = entry.local_path()
    assert loaded.arch.name == entry.arch
    meta = loaded.meta
    assert meta["accuracy"] == entry.accuracy and meta["accuracy_n"] == 10000, (meta, entry)
    assert meta["recipe"]["epochs"] > 0 and meta["dataset"] == entry.dataset
    assert path.stat().st_size < 5 * 2**20  # fp32 ResNet-20, no optimizer state in a shipped file
    # the keys alone say the architecture: the file loads by path without its metadata too
    state = {k: v for k, v in loaded.model.state_dict().items() if "input_" not in k}
    assert infer_arch(state, name).name == entry.arch


SEEDS = [name for name in SHIPPED if re.fullmatch(r".+-seed\d+", name)]


@pytest.mark.parametrize("name", SEEDS)
def test_a_training_seed_is_its_models_recipe_with_another_seed(name):
    """`NAME-seedK` is trained exactly as `NAME` but for the seed: what a class-level comparison assumes."""
    base, seed = re.fullmatch(r"(.+)-seed(\d+)", name).groups()
    zoo = load_zoo(DEFAULT_MANIFEST)
    own, other = ({**RECIPE_KEYS_ADDED_LATER, **zoo[m].load().meta["recipe"]} for m in (name, base))
    assert zoo[name].arch == zoo[base].arch and own["seed"] == int(seed) != other["seed"]
    assert {k: v for k, v in own.items() if k != "seed"} == {k: v for k, v in other.items() if k != "seed"}


DEPTH32 = [name for name in SHIPPED if re.fullmatch(r"(ann|cnn)32(-awn)?", name)]


@pytest.mark.parametrize("name", DEPTH32)
def test_a_depth_32_model_is_its_depth_20_recipe_at_depth_32(name):
    """`ann32` is trained exactly as `ann20` but for the depth: what the paper table's depth rows and the depth-32
    class answer compare (issue 39)."""
    base = name.replace("32", "20", 1)
    zoo = load_zoo(DEFAULT_MANIFEST)
    own, other = ({**RECIPE_KEYS_ADDED_LATER, **zoo[m].load().meta["recipe"]} for m in (name, base))
    assert zoo[name].arch == zoo[base].arch.replace("resnet20", "resnet32") and own["arch"] == "resnet32"
    assert {k: v for k, v in own.items() if k != "arch"} == {k: v for k, v in other.items() if k != "arch"}


#: recipe keys that the training code records since after the seed-0 models were trained, with the value those had
RECIPE_KEYS_ADDED_LATER = {"dataset": "cifar10"}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_reproduces_its_recorded_accuracy(name, shared_data, tmp_path):
    """`robustadder eval --model NAME --attack none --n 10000` gives the accuracy the zoo records."""
    entry = load_zoo(DEFAULT_MANIFEST)[name]
    code, out, err = run("eval", "--model", name, "--attack", "none", "--n", "10000", "--data", str(shared_data),
                         "--store", str(tmp_path / "s.sqlite"), "--json")  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["n"] == 10000
    assert round(result["clean_accuracy"], 2) == entry.accuracy
