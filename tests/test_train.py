"""Training the miniature (a few steps on the CPU) and the shipped weights."""
import json
import shutil

import pytest

from pipeline import model, spec as specmod, train

SPEC = specmod.load("figures.toml")
# 128-pixel portraits (16x16 latents) keep the smoke test to seconds; the real run uses 512
TINY = train.Settings(images=24, size=128, vae_images=16, vae_steps=12, vae_batch=4, vae_crop=64,
                      unet_steps=40, unet_batch=8, warmup=4, checkpoint_every=20, unet_lr=2e-3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    record = train.run(root / "model", SPEC.prompts, TINY, "cpu", root / "work", workers=1)
    return root, record


def test_training_smoke_loss_falls_and_the_model_loads(trained, tmp_path):
    root, record = trained
    assert record["finished"] and record["unet_steps_done"] == TINY.unet_steps
    curve = [loss for _, loss in record["unet_curve"]]
    assert curve[-1] < curve[0]
    vae = [mse for _, mse in record["vae_curve"]]
    assert vae[-1] < vae[0]
    directory = root / "model"
    model.check_shipped(directory)  # SHA256SUMS written and matching
    saved = json.loads((directory / "training.json").read_text())
    assert saved["settings"]["unet_steps"] == TINY.unet_steps and saved["device"].startswith("cpu")
    info = model.prepare(str(directory), tmp_path / "model.json")
    comps = model.load(str(tmp_path / "model.json"), "cpu")  # the same from_pretrained path
    assert comps.vae.config.scaling_factor == pytest.approx(record["scaling_factor"])
    assert info["geometry"]["train_size"] == 512  # the config's sample_size, as SD 1.5's


def test_a_stopped_run_resumes_where_it_stopped(trained, tmp_path):
    _, full = trained
    stopped = train.run(tmp_path / "model", SPEC.prompts, TINY, "cpu", tmp_path / "work",
                        time_limit=1e-9, workers=1)
    assert not stopped["finished"] and (tmp_path / "work" / "vae.pt").exists()
    resumed = train.run(tmp_path / "model", SPEC.prompts, TINY, "cpu", tmp_path / "work",
                        workers=1)
    assert resumed["finished"]
    assert resumed["unet_curve"] == full["unet_curve"]  # every draw is seeded by its step


def test_the_shipped_weights_match_their_recorded_fingerprint():
    model.check_shipped()
    record = json.loads((model.PREVIEW_DIR / "training.json").read_text())
    assert record["finished"] and record["unet_steps_done"] == record["settings"]["unet_steps"]
    total = sum(p.stat().st_size for p in model.PREVIEW_DIR.rglob("*") if p.is_file())
    assert total <= 25 * 10**6


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_damaged_shipped_file_is_named_with_the_fix(tmp_path, damage):
    copy = shutil.copytree(model.PREVIEW_DIR, tmp_path / "preview")
    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(model.ModelError) as err:
        model.check_shipped(copy)
    assert str(weights) in str(err.value) and "doit train" in str(err.value)
    assert damage in str(err.value)
