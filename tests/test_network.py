from __future__ import annotations

import numpy as np
import pytest
import torch

from siamdecon.network import DeconvolutionNetwork, UNet, count_parameters, prefer_channels_last


def test_paper_sizes_have_the_paper_parameter_counts():
    n2 = count_parameters(UNet(2, width=96, levels=3, skip="concat"))
    n3 = count_parameters(UNet(3, width=48, levels=3, skip="add"))
    assert 5.3e6 < n2 < 5.9e6  # paper: about 5.7 M
    assert 3.4e6 < n3 < 3.8e6  # paper: about 3.6 M


@pytest.mark.parametrize("ndim,shape", [(2, (37, 50)), (3, (9, 13, 22))])
@pytest.mark.parametrize("skip", ["concat", "add"])
def test_output_shape_equals_input_shape_for_any_size(ndim, shape, skip):
    net = UNet(ndim, width=4, levels=3, skip=skip, norm="group")
    assert net(torch.randn(2, 1, *shape)).shape == (2, 1, *shape)


def test_residual_network_starts_as_identity():
    net = UNet(2, in_channels=2, width=4, residual=True)
    x = torch.randn(3, 2, 16, 16)
    assert torch.equal(net(x), x[:, :1])


def test_lucy_richardson_start_equals_one_lr_step_at_initialization(psf2d):
    from siamdecon.classical import richardson_lucy

    raw = np.random.default_rng(0).random((40, 40)).astype(np.float32) + 0.5
    mean, std = float(raw.mean()), float(raw.std())
    net = DeconvolutionNetwork(
        UNet(2, in_channels=2, width=4, residual=True), "lucy-richardson", torch.from_numpy(psf2d), 2, mean, std
    )
    x = torch.from_numpy((raw - mean) / std)[None, None]
    out = net(x)[0, 0].detach().numpy() * std + mean
    ref = richardson_lucy(raw, psf2d, 2, init="mean")
    assert np.allclose(out, ref, atol=1e-4)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        UNet(4)
    with pytest.raises(ValueError, match="residual"):
        DeconvolutionNetwork(UNet(2, width=4), "input")


@pytest.mark.parametrize("ndim", [2, 3])
def test_channels_last_layout_changes_speed_not_results(ndim):
    torch.manual_seed(0)
    net = UNet(ndim=ndim, in_channels=2, width=8, levels=3, norm="none")
    for p in net.parameters():  # the residual head starts at zero; make every layer count
        p.data.normal_(0, 0.1)
    x = torch.randn((2, 2) + (12,) * ndim)
    expected = net(x)
    prefer_channels_last(net, torch.device("cpu"))
    fmt = torch.channels_last if ndim == 2 else torch.channels_last_3d
    assert net.stem.weight.is_contiguous(memory_format=fmt)
    out = net(x)
    assert torch.allclose(out, expected, rtol=1e-4, atol=1e-4)
    out.sum().backward()  # gradients flow through the channels-last path
    assert net.stem.weight.grad is not None
    # A state dict saved from the channels-last network loads into a default one unchanged.
    fresh = UNet(ndim=ndim, in_channels=2, width=8, levels=3, norm="none")
    fresh.load_state_dict(net.state_dict())
    assert torch.allclose(fresh(x), expected, rtol=1e-4, atol=1e-4)
