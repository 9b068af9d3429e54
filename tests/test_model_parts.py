"""Unit tests for each model part: shapes, residual paths, masking, loss, and the fast token path."""
import math

import pytest
import torch

from engine.core.errors import EngineError
from engine.model import SpecAwareConfig, SpecAwareEncoder, SpecAwareMAE, preset
from engine.model.hyper import ContentFeatureExtractor, hyper_tokens, hyper_tokens_reference
from engine.model.mae import mae_loss, patchify, random_masking, unpatchify
from engine.model.spectral import CrossModalFusion, SpectralAwareTransformer, SpectralEmbedding
from engine.model.vit import sincos_pos_embed

torch.manual_seed(0)


def small_cfg(**kw):
    base = dict(embed_dim=32, depth=4, num_heads=4, patch_size=8, decoder_embed_dim=16, decoder_depth=1,
                decoder_num_heads=2)
    return SpecAwareConfig(**{**base, **kw})


def inputs(B=2, C=7, H=32, W=None):
    W = W or H
    x = torch.rand(B, C, H, W)
    wl = torch.linspace(400, 2400, C).expand(B, C).clone()
    fwhm = torch.full((B, C), 10.0)
    return x, wl, fwhm, torch.tensor([5.0] * B)


@pytest.mark.parametrize("B,C,H,k", [(1, 3, 16, 8), (2, 11, 32, 8), (3, 5, 48, 16), (2, 4, 24, 4)])
def test_fast_tokens_equal_reference_path(B, C, H, k):
    E, r = 24, 6
    x = torch.randn(B, C, H, H)
    U, V, bias = torch.randn(B, C, E, r), torch.randn(B, C, r, k * k), torch.randn(B, E)
    fast = hyper_tokens(x, U, V, bias, k)
    ref = hyper_tokens_reference(x, U, V, bias, k)
    assert fast.shape == (B, (H // k) ** 2, E)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)


def test_fast_tokens_chunking_does_not_change_result(monkeypatch):
    import engine.model.hyper as hyper
    x = torch.randn(2, 5, 64, 64)
    U, V, bias = torch.randn(2, 5, 16, 4), torch.randn(2, 5, 4, 64), torch.randn(2, 16)
    whole = hyper_tokens(x, U, V, bias, 8)
    monkeypatch.setattr(hyper, "PATCH_CHUNK_BYTES", 1)  # one patch row per chunk
    torch.testing.assert_close(hyper_tokens(x, U, V, bias, 8), whole, rtol=1e-5, atol=1e-5)


def test_fast_tokens_backpropagate():
    x = torch.randn(1, 3, 16, 16)
    U = torch.randn(1, 3, 8, 4, requires_grad=True)
    V = torch.randn(1, 3, 4, 64, requires_grad=True)
    hyper_tokens(x, U, V, torch.zeros(1, 8), 8).sum().backward()
    assert U.grad is not None and V.grad.abs().sum() > 0


def test_cross_modal_fusion_residual_path():
    f = CrossModalFusion(16).eval()
    a, b = torch.randn(2, 3, 16), torch.randn(2, 3, 16)
    # With the fusion MLP zeroed, the output is exactly the projected first modality.
    with torch.no_grad():
        f.fusion[0].weight.zero_()
        f.fusion[0].bias.zero_()
        f.fusion[1].weight.zero_()
        f.fusion[1].bias.zero_()
    torch.testing.assert_close(f(a, b), f.modal1_proj(a))


def test_spectral_transformer_residual_and_band_count():
    t = SpectralAwareTransformer(128).eval()
    meta = torch.randn(2, 9, 128)
    out = t(meta)
    assert out.shape == meta.shape
    layer = t.transformer_encoder.layers[0]
    with torch.no_grad():
        layer.self_attn.out_proj.weight.zero_()
        layer.self_attn.out_proj.bias.zero_()
        layer.linear2.weight.zero_()
        layer.linear2.bias.zero_()
    torch.testing.assert_close(t(meta), 2 * meta)  # inner residual plus outer residual


def test_spectral_embedding_shapes_and_range_checks():
    emb = SpectralEmbedding().eval()
    out = emb(torch.tensor([[400.0, 1000.0, 2500.0]]), torch.tensor([[10.0, 10.0, 10.0]]), "avng", "L2")
    assert out.shape == (1, 3, 128)
    assert emb.fourier(torch.tensor([[0.0]])).abs().sum() > 0  # 0 is allowed (cos(0) = 1)
    with pytest.raises(EngineError, match="outside 350"):
        emb.fourier(torch.tensor([[346.0, 500.0]]))
    with pytest.raises(EngineError, match="band"):
        emb.fourier(torch.tensor([[0.4, 0.5]]))  # micrometres slipped through


def test_content_extractor_any_image_size():
    c = ContentFeatureExtractor().eval()
    for size in (8, 28, 64, 100):
        assert c(torch.rand(2, 4, size, size)).shape == (2, 4, 128)


def test_sincos_positions():
    pos = sincos_pos_embed(16, 2, 3, torch.tensor([1.0, 10.0]))
    assert pos.shape == (2, 6, 16)
    # Patch (0, 0) is sin 0 / cos 1 everywhere; column half first: patch (0, 1) differs only in the first half.
    assert torch.allclose(pos[:, 0], torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0] * 4))
    assert torch.equal(pos[:, 1, 8:], pos[:, 0, 8:]) and not torch.equal(pos[:, 1, :8], pos[:, 0, :8])
    # The GSD scales the coordinates: gsd 10 at column 1 equals gsd 1 at column 10.
    far = sincos_pos_embed(16, 1, 11, torch.tensor([1.0]))
    torch.testing.assert_close(pos[1, 1], far[0, 10])


def test_encoder_shapes_taps_and_any_band_count():
    cfg = small_cfg()
    enc = SpecAwareEncoder(cfg).eval()
    assert cfg.feature_blocks == [0, 1, 2, 3]
    for C in (3, 17):
        x, wl, fw, gsd = inputs(C=C, H=32)
        out = enc(x, wl, fw, gsd, "avng", "L2", return_all=True)
        assert out["tokens"].shape == (2, 1 + 16, 32)
        assert [f.shape for f in out["features"]] == [(2, 32, 4, 4)] * 4
        torch.testing.assert_close(out["features"][-1], out["tokens"][:, 1:].transpose(1, 2).reshape(2, 32, 4, 4))


def test_encoder_rejects_bad_shapes():
    enc = SpecAwareEncoder(small_cfg()).eval()
    x, wl, fw, gsd = inputs(C=4, H=30)
    with pytest.raises(EngineError, match="multiples of the patch size 8"):
        enc(x, wl, fw, gsd, "avng", "L2")
    x, wl, fw, gsd = inputs(C=4, H=32)
    with pytest.raises(EngineError, match="one value per band"):
        enc(x, wl[:, :3], fw, gsd, "avng", "L2")


def test_masking_semantics():
    noise = torch.rand(3, 20)
    ids_keep, ids_restore, mask = random_masking(3, 20, 0.75, noise)
    assert ids_keep.shape == (3, 5)  # floor(20 * 0.25)
    assert torch.equal(mask.sum(1), torch.full((3,), 15.0))
    # 1 means removed: the kept ids are exactly the positions with mask 0, the lowest-noise ones.
    for b in range(3):
        assert set(ids_keep[b].tolist()) == set(torch.nonzero(mask[b] == 0).flatten().tolist())
        assert set(ids_keep[b].tolist()) == set(noise[b].argsort()[:5].tolist())
        assert torch.equal(ids_restore[b][noise[b].argsort()], torch.arange(20))


def test_patchify_roundtrip_and_order():
    imgs = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 3, 16, 16)
    p = patchify(imgs, 8)
    assert p.shape == (2, 4, 64 * 3)
    assert torch.equal(p[0, 0, :3], imgs[0, :, 0, 0])  # band-minor
    assert torch.equal(p[0, 1, :3], imgs[0, :, 0, 8])  # second patch is the next column
    assert torch.equal(unpatchify(p, 8, 3, 2, 2), imgs)


def test_loss_on_hand_made_inputs():
    k = 2
    imgs = torch.ones(1, 2, 4, 4)
    pred_img = imgs.clone()
    pred_img[:, 0, :2, :2] = 0.0  # patch 0 differs: cosine = 1/√2, |diff| = 1 in band 0
    pred = patchify(pred_img, k)
    mask = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    out = mae_loss(imgs, pred, mask, k)
    assert out["loss_spectral"].item() == pytest.approx(1 - 1 / math.sqrt(2), rel=1e-5)
    assert out["loss_charbonnier"].item() == pytest.approx(2 * (math.sqrt(2) - 1) / 2, rel=1e-5)
    assert out["loss"].item() == pytest.approx(out["loss_spectral"].item() + out["loss_charbonnier"].item())
    # Errors on unmasked patches do not count.
    out2 = mae_loss(imgs, pred, torch.tensor([[0.0, 1.0, 1.0, 1.0]]), k)
    assert out2["loss"].item() == pytest.approx(0.0, abs=1e-6)


def test_mae_forward_backward_and_given_noise():
    torch.manual_seed(1)
    mae = SpecAwareMAE(small_cfg())
    x, wl, fw, gsd = inputs(C=5, H=32)
    noise = torch.rand(2, 16)
    out = mae(x, wl, fw, gsd, "av3", "L1", noise=noise)
    assert out["pred"].shape == (2, 16, 64 * 5) and out["mask"].shape == (2, 16)
    out["loss"].backward()
    assert mae.patch_embed.matrix_generator.u_generator[6].weight.grad.abs().sum() > 0
    mae.eval()
    with torch.no_grad():
        a = mae(x, wl, fw, gsd, "av3", "L1", noise=noise)["loss"]
        b = mae(x, wl, fw, gsd, "av3", "L1", noise=noise)["loss"]
    assert a == b


def test_presets():
    assert preset("base").embed_dim == 768 and preset("base").num_heads == 12
    assert (preset("small").embed_dim, preset("small").depth, preset("small").num_heads) == (384, 12, 6)
    assert (preset("tiny").embed_dim, preset("tiny").depth, preset("tiny").num_heads) == (192, 6, 3)
    assert preset("base").feature_blocks == [2, 5, 8, 11]
    with pytest.raises(EngineError, match="tiny"):
        preset("huge")
