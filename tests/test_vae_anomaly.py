"""The VAE log-variance analysis: detector, perturbation measure, any-AutoencoderKL loading."""
import json

import pytest
import torch

from pipeline import approx_decoder, decode, model, vae_anomaly
from pipeline.model import ModelError


def clean_map(seed=0, shape=(64, 64)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * 0.05 - 0.2


def test_the_floor_is_read_from_diffusers():
    assert vae_anomaly.clamp_range() == (-30.0, 20.0)


def test_detector_finds_planted_anomalies_and_nothing_in_a_clean_map():
    assert vae_anomaly.detect(clean_map(), -30.0, 0.5, 8.0) == []
    m = clean_map()
    m[10, 20] = -30.0   # at the clamp floor, as in SD 1.x's encoder
    m[40, 41] = -3.0    # far below this image's typical value, not at the floor
    found = vae_anomaly.detect(m, -30.0, 0.5, 8.0)
    assert [(a["y"], a["x"]) for a in found] == [(10, 20), (40, 41)]  # most extreme first
    assert found[0]["at_floor"] and found[0]["outlier"]
    assert not found[1]["at_floor"] and found[1]["outlier"] and found[1]["z"] < -8
    # a constant map has no spread: only the floor test can fire
    flat = torch.full((8, 8), -1.0)
    assert vae_anomaly.detect(flat, -30.0, 0.5, 8.0) == []
    flat[3, 4] = -29.8
    assert [(a["y"], a["x"]) for a in vae_anomaly.detect(flat, -30.0, 0.5, 8.0)] == [(3, 4)]


def test_ordinary_position_keeps_away_from_anomalies_and_the_border():
    m = clean_map()
    y, x = vae_anomaly.ordinary_position(m, [(32, 32)], distance=4)
    assert 4 <= y < 60 and 4 <= x < 60 and max(abs(y - 32), abs(x - 32)) >= 4
    assert vae_anomaly.ordinary_position(m, [(32, 32)]) == (y, x)  # deterministic


@pytest.fixture(scope="module")
def per_pixel():
    torch.manual_seed(0)
    return approx_decoder.ApproxDecoder(hidden=12)


def test_zero_perturbation_changes_nothing(per_pixel):
    z = torch.randn(1, 4, 16, 16)
    numbers, change = vae_anomaly.effect(z, decode.approx, per_pixel, 5, 7, 0.0, 8, 0.02)
    assert change.abs().max() == 0
    assert numbers["changed_outside"] == 0 and numbers["mean_change_outside"] == 0


def test_a_per_pixel_decoder_is_local(per_pixel):
    z = torch.randn(1, 4, 16, 16)
    numbers, change = vae_anomaly.effect(z, decode.approx, per_pixel, 5, 7, 3.0, 8, 0.0)
    assert numbers["mean_change_inside"] > 0            # the patch itself changes
    assert numbers["changed_outside"] == 0 and numbers["max_change_outside"] == 0
    assert change[5 * 8:6 * 8, 7 * 8:8 * 8].min() > 0 and change.shape == (128, 128)


def test_a_mixing_decoder_is_not_local():
    # a decoder that spreads one position over the whole image is what the measure must catch
    def global_decoder(latents, net):
        return latents.mean((1, 2, 3), keepdim=True).expand(-1, 3, 8 * latents.shape[2],
                                                            8 * latents.shape[3]).clamp(-1, 1)

    z = torch.zeros(1, 4, 8, 8)
    numbers, _ = vae_anomaly.effect(z, global_decoder, None, 2, 2, 10.0, 8, 0.01)
    assert numbers["changed_outside"] == 1.0


def test_any_autoencoderkl_directory_loads(preview_model_dir, tmp_path):
    # a bare AutoencoderKL folder (not a pipeline) goes through the same option
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(preview_model_dir / "vae")
    vae.save_pretrained(tmp_path / "some-vae")
    loaded, info = model.load_vae("unused.json", str(tmp_path / "some-vae"), "cpu")
    assert info["id"].startswith("some-vae@") and info["scaling_factor"] == 0.18215
    mean, logvar = vae_anomaly.encode(loaded, torch.zeros(3, 64, 64))
    assert mean.shape == (1, 4, 8, 8) and logvar.shape == (8, 8)
    loaded, info = model.load_vae("unused.json", str(preview_model_dir), "cpu")  # pipeline dir
    assert info["id"].startswith("preview@")


def test_bad_vae_argument_is_named(tmp_path):
    with pytest.raises(ModelError, match=r"vae directory /no/such does not exist"):
        model.check_vae_arg("/no/such")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"has neither config.json nor vae/config.json"):
        model.check_vae_arg(str(tmp_path / "empty"))
    assert model.check_vae_arg("stabilityai/sdxl-vae") == "stabilityai/sdxl-vae"


def test_analysis_in_the_built_article(project):
    result = json.loads((project / "build/vae/anomaly.json").read_text())
    assert result["floor"] == -30.0 and len(result["images"]) == 8
    e = result["experiment"]
    assert (e["anomalous"]["y"], e["anomalous"]["x"]) != (e["ordinary"]["y"], e["ordinary"]["x"])
    # recomputed from the stored map, independently of vae_anomaly.detect: the spot is the
    # subject's lowest log-variance (flagged or not), the ordinary position is near the median
    from safetensors.torch import load_file

    subject = result["subject"].removesuffix(".vae.png")
    logvar = load_file(str(project / "build/vae/maps.safetensors"))[f"{subject}.logvar"].double()
    spot, plain = e["anomalous"], e["ordinary"]
    assert logvar[spot["y"], spot["x"]].item() == pytest.approx(spot["logvar"])
    assert spot["logvar"] == pytest.approx(logvar.min().item())
    median = logvar.median()
    spread = 1.4826 * (logvar - median).abs().median()
    z = ((spot["logvar"] - median) / spread).item()
    cfg = result["config"]
    flagged = spot["logvar"] <= result["floor"] + cfg["floor_margin"] or z <= -cfg["robust_z"]
    assert result["subject_flagged"] == flagged
    assert abs(plain["logvar"] - median.item()) < abs(spot["logvar"] - median.item())
    text = (project / "public/sd15-image-sizes/index.html").read_text()
    caption = f"{e['anomalous']['changed_outside']:.1%} of pixels outside its patch"
    assert caption in text  # the measured numbers are in the caption
    flat = " ".join(text.split())  # the page says what the test found, by its own verdict
    lowest = min(i["logvar_min"] for i in result["images"])
    negative = lowest > result["floor"] + cfg["floor_margin"]
    assert ("no encoded image comes near the clamp floor" in flat) == negative
