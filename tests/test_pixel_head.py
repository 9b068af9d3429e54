"""The per-pixel spectral head computes what its layers say (LayerNorm on [p, p/(|m|+1e-3), m] and the MLP)
without building those features, with the same parameters as before."""
import torch

import engine.model.segmenter as segmenter
from engine.model.config import preset
from engine.model.segmenter import PixelHead, build_segmenter, spectral_projection


def explicit(head: PixelHead, spectral: torch.Tensor) -> torch.Tensor:
    """The head as its layers read: per-pixel features built, normalised and fed to the MLP (the test's oracle)."""
    x = spectral.float()
    proj, mean = x[:, :-1], x[:, -1:]
    z = torch.cat([proj, proj / (mean.abs() + 1e-3), mean], dim=1).permute(0, 2, 3, 1)
    return head.mlp(head.norm(z)).permute(0, 3, 1, 2)


def features(h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 129, h, w, generator=g) * 0.3 + 0.1
    x[:, 128] = torch.rand(2, h, w, generator=g) * 0.5  # the mean value
    x[0, 128, 0, 0] = 0.0  # a black pixel: the brightness-normalised part is large there
    return x


def test_folded_head_equals_the_explicit_layers_values_and_gradients():
    torch.manual_seed(1)
    head = PixelHead(5)
    with torch.no_grad():  # an affine norm that is not the identity, as after training
        head.norm.weight.uniform_(0.5, 1.5)
        head.norm.bias.uniform_(-0.3, 0.3)
    x = features()
    got, want = head(x), explicit(head, x)
    assert got.shape == want.shape == (2, 5, 12, 10)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    params = list(head.parameters())
    g_got = torch.autograd.grad(head(x).square().sum(), params)
    g_want = torch.autograd.grad(explicit(head, x).square().sum(), params)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_pixel_blocks_change_nothing(monkeypatch):
    head = PixelHead(4)
    x = features(h=23, w=17)
    whole = head(x)
    monkeypatch.setattr(segmenter, "PIXEL_BLOCK", 50)  # 391 pixels in 8 blocks, the last one short
    torch.testing.assert_close(head(x), whole, rtol=1e-6, atol=1e-6)


def test_projection_is_the_mean_over_bands_of_spectrum_times_embedding():
    g = torch.Generator().manual_seed(3)
    x, emb = torch.rand(2, 30, 8, 8, generator=g), torch.randn(2, 30, 128, generator=g)
    got = spectral_projection(x, emb)
    want = torch.cat([torch.einsum("bchw,bcd->bdhw", x, emb) / 30, x.mean(1, keepdim=True)], dim=1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_bundles_trained_before_still_load():
    """The head's parameters keep their names and shapes: a model saved before this head loads strictly."""
    model = build_segmenter(preset("tiny"), "light", 6)
    heads = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("pixel_head.")}
    n_in = 257
    assert heads == {"pixel_head.norm.weight": (n_in,), "pixel_head.norm.bias": (n_in,),
                     "pixel_head.mlp.0.weight": (128, n_in), "pixel_head.mlp.0.bias": (128,),
                     "pixel_head.mlp.2.weight": (64, 128), "pixel_head.mlp.2.bias": (64,),
                     "pixel_head.mlp.4.weight": (6, 64), "pixel_head.mlp.4.bias": (6,)}
    build_segmenter(preset("tiny"), "light", 6).load_state_dict(model.state_dict(), strict=True)
