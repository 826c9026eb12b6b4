"""Model architectures: shapes, ranges, sizes, FLOPs, ICNR, padding, configs and presets.

The big presets are built on the meta device (shapes and parameter counts without allocating
or computing); real forward passes run on the small presets and on narrow twins of the big
ones (same arch and resolution, fewer channels), so the file stays fast on a CPU.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from faceswap.config import from_dict, to_dict
from faceswap.errors import BadInput
from faceswap.models import (
    ARCH_NAMES,
    ARCHS,
    PRESETS,
    Autoencoder,
    ModelConfig,
    build_model,
    count_parameters,
    flops_per_sample,
    load_preset,
    model_config_from,
    render_preset_yaml,
    write_preset_yaml,
)
from faceswap.models.layers import UpscaleBlock

# Exact sizes pin the architectures: a change here is a change of the model (and its weights).
PARAMS = {  # name: (total, encoder, one decoder)
    "original": (82_065_672, 69_662_976, 6_201_348),
    "lightweight": (14_754_440, 11_649_664, 1_552_388),
    "lightweight-128": (14_837_064, 11_698_496, 1_569_284),
    "lightweight-256": (14_867_240, 11_710_112, 1_578_564),
    "dfl-h128": (107_722_504, 77_018_880, 15_351_812),
    "sae-128": (60_657_288, 17_563_776, 21_546_756),
    "sae-256": (65_408_712, 22_315_200, 21_546_756),
    "sae-128-lite": (13_363_656, 10_663_488, 1_350_084),
    # liae: (total, encoder, one intermediate), the decoder checked in its own test
    "liae-64": (25_002_116, 1_029_248, 10_620_416),
    "liae-128": (61_673_604, 4_437_888, 13_125_888),
}
REAL_SIZE = ("original", "lightweight")  # cheap enough to run at full width on a CPU


def _meta(cfg: ModelConfig) -> Autoencoder:
    with torch.device("meta"):
        return build_model(cfg)


def _tiny(**kw) -> ModelConfig:
    base = {"arch": "sae", "resolution": 64, "encoder_dims": 8, "decoder_dims": 8}
    return ModelConfig(**{**base, "bottleneck": 32, **kw})


def _narrow(cfg: ModelConfig) -> ModelConfig:
    """Same arch and resolution, a fraction of the channels."""
    return dataclasses.replace(cfg, encoder_dims=8, decoder_dims=8, bottleneck=32)


@pytest.fixture(scope="module")
def original() -> Autoencoder:
    torch.manual_seed(0)
    return build_model(load_preset("original"))


def test_every_arch_has_a_builder():
    assert set(ARCHS) == set(ARCH_NAMES)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_sizes_and_shapes(name):
    cfg = load_preset(name)
    model = _meta(cfg)
    total, enc, dec = PARAMS[name]
    assert count_parameters(model) == total
    assert count_parameters(model.encoder) == enc
    r = cfg.resolution
    z = model.encode(torch.empty(2, 3, r, r, device="meta"))
    if cfg.arch == "liae":
        assert count_parameters(model.inter_ab) == count_parameters(model.inter_a) == dec
        assert z.ndim == 2  # flat features: the intermediates make the codes
    else:
        assert count_parameters(model.decoder_a) == count_parameters(model.decoder_b) == dec
        assert z.shape == (2, model.spec.latent_ch, model.spec.latent_grid, model.spec.latent_grid)
    for side in "ab":
        rgb, mask = model.decode(z, side)
        assert rgb.shape == (2, 3, r, r)
        assert mask.shape == (2, 1, r, r)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_forward_values(name):
    """A real forward at the preset's resolution: both sides, outputs in [0, 1]."""
    cfg = load_preset(name)
    if name not in REAL_SIZE:
        cfg = _narrow(cfg)
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    r = cfg.resolution
    x = torch.rand(2, 3, r, r)
    with torch.no_grad():
        z = model.encode(x)
        for side in "ab":
            rgb, mask = model.decode(z, side)
            assert rgb.shape == (2, 3, r, r) and mask.shape == (2, 1, r, r)
            for t in (rgb, mask):
                assert torch.isfinite(t).all()
                assert t.min() >= 0.0 and t.max() <= 1.0
            assert rgb.std() > 0  # not saturated or constant at init


def test_no_mask_when_not_learned():
    model = build_model(_tiny(learn_mask=False))
    rgb, mask = model(torch.rand(1, 3, 64, 64), "b")
    assert rgb.shape == (1, 3, 64, 64) and mask is None
    assert model.decoder_a.mask is None


def test_decoders_same_structure_separate_parameters(original):
    a, b = original.decoder_a, original.decoder_b
    assert a is not b
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [
        (k, v.shape) for k, v in b.state_dict().items()
    ]
    assert str(a) == str(b)
    ptrs_a = {p.data_ptr() for p in a.parameters()}
    assert ptrs_a.isdisjoint(p.data_ptr() for p in b.parameters())
    # Independently initialised.
    assert not torch.equal(a.rgb.weight, b.rgb.weight)


def test_encoder_is_shared_between_sides():
    model = build_model(_tiny())
    parts = model.parts()
    assert set(parts) == {"encoder", "decoder_a", "decoder_b"}
    assert parts["encoder"] is model.encoder
    assert parts["decoder_a"] is model.decoder_a and parts["decoder_b"] is model.decoder_b
    # Both sides train the same encoder weights; side a leaves decoder b untouched.
    x = torch.rand(2, 3, 64, 64)
    rgb, mask = model(x, "a")
    (rgb.mean() + mask.mean()).backward()
    grad_a = model.encoder.dense_in.weight.grad.clone()
    assert all(p.grad is None for p in model.decoder_b.parameters())
    assert all(
        p.grad is not None and torch.isfinite(p.grad).all() for p in model.decoder_a.parameters()
    )
    rgb, mask = model(x, "b")
    (rgb.mean() + mask.mean()).backward()
    assert not torch.equal(model.encoder.dense_in.weight.grad, grad_a)
    # Parameter names address the parts (weight import and freezing use them).
    prefixes = {k.split(".")[0] for k in model.state_dict()}
    assert prefixes == {"encoder", "decoder_a", "decoder_b"}


def test_decode_rejects_unknown_side():
    model = build_model(_tiny())
    with pytest.raises(ValueError, match="side"):
        model.decode(model.encode(torch.rand(1, 3, 64, 64)), "c")


def test_original_has_about_82m_parameters(original):
    n = count_parameters(original)
    assert abs(n - 82e6) / 82e6 < 0.02
    assert abs(count_parameters(original.encoder) - 69.6e6) / 69.6e6 < 0.01
    assert abs(count_parameters(original.decoder_a) - 6.2e6) / 6.2e6 < 0.01


def test_original_flops_per_sample(original):
    flops = flops_per_sample(original, 64)
    assert 9e9 <= flops["forward_backward"] <= 14e9
    assert 2.5 < flops["forward_backward"] / flops["forward"] < 3.1


def test_flops_meta_rebuild_matches_a_real_run():
    model = build_model(_tiny())

    class Wrapped(nn.Module):  # not an Autoencoder: measured by running it for real
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x, side):
            return self.inner(x, side)

    assert flops_per_sample(model) == flops_per_sample(Wrapped(model), 64)


def test_icnr_upscaler_has_no_checkerboard():
    torch.manual_seed(2)
    constant = torch.full((1, 16, 6, 6), 0.7)
    noise = torch.rand(1, 16, 6, 6)
    for x in (constant, noise):
        out = UpscaleBlock(16, 8, icnr=True)(x)  # (1, 8, 12, 12)
        phases = [out[..., i::2, j::2] for i in (0, 1) for j in (0, 1)]
        for p in phases[1:]:
            assert torch.equal(p, phases[0])
    out = UpscaleBlock(16, 8, icnr=False)(constant)
    assert not torch.equal(out[..., 0::2, 0::2], out[..., 1::2, 1::2])


def test_icnr_applies_to_every_upscaler():
    for icnr in (True, False):
        model = build_model(_tiny(icnr=icnr))
        ups = [m for m in model.modules() if isinstance(m, UpscaleBlock)]
        assert len(ups) == 1 + 2 * 3  # encoder + 3 per decoder
        for up in ups:
            w = up[0].weight  # (C * 4, Cin, 3, 3)
            repeated = all(torch.equal(w[0::4], w[k::4]) for k in (1, 2, 3))
            assert repeated == icnr


def test_reflect_padding_when_asked():
    zero, reflect = build_model(_tiny()), build_model(_tiny(padding="reflect"))
    padded = [m for m in reflect.modules() if isinstance(m, nn.Conv2d) and m.padding[0] > 0]
    assert len(padded) > 10
    assert all(m.padding_mode == "reflect" for m in padded)
    assert all(m.padding_mode == "zeros" for m in zero.modules() if isinstance(m, nn.Conv2d))
    reflect.load_state_dict(zero.state_dict())  # same weights, only the borders differ
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(zero(x, "a")[0], reflect(x, "a")[0])


def test_channels_last_matches_contiguous():
    torch.manual_seed(3)
    model = build_model(load_preset("lightweight")).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ref, _ = model(x, "a")
        model = model.to(memory_format=torch.channels_last)
        out, _ = model(x.to(memory_format=torch.channels_last), "a")
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_lightweight_128_adds_an_octave_around_the_64_px_model():
    """The 128 px form keeps every 64 px stage and the dense layers; it adds a half-width stage
    at each end, and no other size is accepted."""
    small, large = (_meta(load_preset(n)) for n in ("lightweight", "lightweight-128"))
    assert large.spec.enc[1:] == small.spec.enc and large.spec.enc[0] == small.spec.enc[0] // 2
    assert large.spec.dec[:-1] == small.spec.dec and large.spec.dec[-1] == small.spec.dec[-1] // 2
    assert large.encoder.dense_in.in_features == small.encoder.dense_in.in_features
    flops = {n: flops_per_sample(_meta(load_preset(n)))["forward_backward"]
             for n in ("lightweight", "lightweight-128", "sae-128-lite")}  # fmt: skip
    assert flops["lightweight-128"] < 1.5 * flops["lightweight"] < flops["sae-128-lite"]
    with pytest.raises(ValueError, match="lightweight works at resolution 64, 128 or 256 only"):
        ModelConfig(arch="lightweight", resolution=96)


def test_lightweight_256_adds_a_second_octave_and_draws_a_256_px_face():
    """The 256 px form keeps the 128 px model's stages and dense layers, adds a quarter-width
    conv in front and a last upscale that stays at half width, and runs end to end."""
    mid, large = (_meta(load_preset(n)) for n in ("lightweight-128", "lightweight-256"))
    assert large.spec.enc[1:] == mid.spec.enc and large.spec.enc[0] == mid.spec.enc[0] // 2
    assert large.spec.dec[:-1] == mid.spec.dec and large.spec.dec[-1] == mid.spec.dec[-1]
    assert large.encoder.dense_in.in_features == mid.encoder.dense_in.in_features
    flops = {n: flops_per_sample(_meta(load_preset(n)))["forward_backward"]
             for n in ("lightweight-128", "lightweight-256", "sae-128-lite")}  # fmt: skip
    assert flops["lightweight-256"] < 1.6 * flops["lightweight-128"]
    assert flops["lightweight-256"] < 0.5 * flops["sae-128-lite"]
    cfg = load_preset("lightweight-256")
    cfg.encoder_dims, cfg.decoder_dims, cfg.bottleneck = 16, 8, 32  # small, same layout
    model = build_model(cfg)
    rgb, mask = model(torch.rand(2, 3, 256, 256), "b")
    assert rgb.shape == (2, 3, 256, 256) and mask.shape == (2, 1, 256, 256)


def test_sae_dense_layers_do_not_grow_with_resolution():
    sizes = {}
    for r in (64, 128, 256, 512):
        model = _meta(ModelConfig(arch="sae", resolution=r, encoder_dims=64, bottleneck=512))
        sizes[r] = model.encoder.dense_in.in_features
        assert model.encoder.dense_out.out_features == sizes[r]
        assert count_parameters(model) < 100e6
    assert max(sizes.values()) <= 16384
    assert load_preset("sae-256").resolution == 256


@pytest.mark.parametrize(
    "kw",
    [
        {"arch": "sae", "resolution": 100},
        {"arch": "sae", "resolution": 528},
        {"arch": "nope"},
        {"arch": "original", "resolution": 128},
        {"arch": "dfl-h128", "resolution": 64},
        {"padding": "same"},
        {"encoder_dims": 0},
        {"bottleneck": 4},
    ],
)
def test_bad_configs_raise(kw):
    with pytest.raises(ValueError):
        ModelConfig(**kw)
    with pytest.raises(BadInput):
        from_dict(ModelConfig, kw, "test")


def test_unknown_preset_lists_the_valid_ones():
    for call in (lambda: load_preset("nope"), lambda: model_config_from("nope", {})):
        with pytest.raises(BadInput) as err:
            call()
        assert "sae-256" in str(err.value) and "original" in str(err.value)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_round_trip(name, tmp_path):
    cfg = load_preset(name)
    assert from_dict(ModelConfig, to_dict(cfg), "round trip") == cfg
    assert model_config_from(str(PRESETS[name]), {}) == cfg
    (tmp_path / "m.yaml").write_text(render_preset_yaml(name), encoding="utf-8")
    assert model_config_from(str(tmp_path / "m.yaml"), {}) == cfg
    over = model_config_from(name, {"icnr": False, "learn_mask": None})
    assert over == dataclasses.replace(cfg, icnr=False)


def test_model_config_from_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("arch: sae\nresolution: 100\n", encoding="utf-8")
    with pytest.raises(BadInput, match="resolution"):
        model_config_from(str(bad), {})
    with pytest.raises(BadInput, match="unknown key"):
        model_config_from("original", {"widht": 3})
    with pytest.raises(BadInput):
        model_config_from(str(tmp_path / "missing.yaml"), {})


def test_preset_yaml_files_are_current(tmp_path):
    shipped = sorted(p.name for p in Path(next(iter(PRESETS.values()))).parent.glob("*.yaml"))
    assert shipped == sorted(p.name for p in PRESETS.values())
    for name, path in PRESETS.items():
        assert path.read_text(encoding="utf-8") == render_preset_yaml(name), (
            f"{path} is stale: run write_preset_yaml()"
        )
    written = write_preset_yaml(tmp_path)
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in PRESETS.values()]


def test_liae_swap_goes_through_the_shared_code_only():
    """B's faces and the a2b swap never touch inter_a; A's faces do, and one decoder serves
    both sides."""
    torch.manual_seed(0)
    model = build_model(_narrow(load_preset("liae-64")))
    assert set(model.parts()) == {"encoder", "inter_ab", "inter_a", "decoder"}
    x = torch.rand(2, 3, 64, 64)
    rgb_b, _ = model(x, "b")
    rgb_b.mean().backward()
    assert all(p.grad is None for p in model.inter_a.parameters())
    assert all(p.grad is not None for p in model.inter_ab.parameters())
    model.zero_grad(set_to_none=True)
    rgb_a, _ = model(x, "a")
    rgb_a.mean().backward()
    assert all(p.grad is not None for p in model.inter_a.parameters())
    assert not torch.allclose(rgb_a, rgb_b)
    with pytest.raises(ValueError, match="side"):
        model.decode(model.encode(x), "c")


def test_liae_parts_for_freeze_and_import():
    from faceswap.train.weight_import import check_freeze, import_weights

    with pytest.raises(ValueError, match="unknown part 'decoder_a'"):
        check_freeze({"decoder_a": 0}, "liae")
    check_freeze({"inter_a": 10}, "liae")
    with pytest.raises(ValueError, match="unknown part 'inter_a'"):
        check_freeze({"inter_a": 0}, "sae")
    torch.manual_seed(0)
    src = build_model(_narrow(load_preset("liae-64")))
    dst = build_model(_narrow(load_preset("liae-64")))
    report = import_weights(dst, src.state_dict(), ["encoder", "inter_ab"], "src")
    assert report.counts()["inter_ab"]["loaded"] == len(list(src.inter_ab.state_dict()))
    for k, v in src.encoder.state_dict().items():
        assert torch.equal(dst.encoder.state_dict()[k], v)
    assert not torch.equal(dst.inter_a.dense_in.weight, src.inter_a.dense_in.weight)
    with pytest.raises(BadInput, match="no decoder_b"):
        import_weights(dst, src.state_dict(), ["decoder_b"], "src")
