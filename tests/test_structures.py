from __future__ import annotations

import socket

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import skeletonize

from siamdecon.benchmark.structures import (
    SKIMAGE_IMAGES,
    STRUCTURES,
    make_structure,
    membranes,
    nuclei,
    puncta,
    skimage_image,
    tissue,
)

CASES = [((96, 96), (0.1, 0.1)), ((12, 48, 48), (0.3, 0.12, 0.12))]


def _enclosed(regions: np.ndarray, n: int) -> int:
    """How many of the ``n`` labelled regions touch no face of the array."""
    faces = [np.take(regions, [0, -1], axis=a) for a in range(regions.ndim)]
    return len(set(range(1, n + 1)) - set(np.unique(np.concatenate([f.ravel() for f in faces]))))


def _downsample(image: np.ndarray, factor: tuple[int, ...]) -> np.ndarray:
    shape = sum(((n // f, f) for n, f in zip(image.shape, factor)), ())
    return image.reshape(shape).mean(axis=tuple(range(1, 2 * image.ndim, 2)))


@pytest.mark.parametrize("name", list(STRUCTURES))
@pytest.mark.parametrize("shape, voxel", CASES)
def test_structures_are_float32_in_unit_range_with_peak_one(name, shape, voxel):
    image = make_structure(name, shape, voxel, seed=0)
    assert image.shape == shape and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() == 1.0
    assert np.all(np.isfinite(image))


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_structures_are_seeded(name):
    shape, voxel = (64, 64), (0.15, 0.15)
    a = make_structure(name, shape, voxel, seed=3)
    assert np.array_equal(a, make_structure(name, shape, voxel, seed=3))
    assert not np.array_equal(a, make_structure(name, shape, voxel, seed=4))
    g = make_structure(name, shape, voxel, seed=np.random.default_rng(7))
    assert np.array_equal(g, make_structure(name, shape, voxel, seed=np.random.default_rng(7)))


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_the_same_field_at_two_pixel_sizes_is_the_same_specimen(name):
    coarse = make_structure(name, (64, 64), (0.2, 0.2), seed=5, background=0.0)
    fine = _downsample(make_structure(name, (128, 128), (0.1, 0.1), seed=5, background=0.0), (2, 2))
    assert np.corrcoef(coarse.ravel(), fine.ravel())[0, 1] > 0.95


def test_nuclei_sizes_are_physical():
    # Same 25.6 um field at 0.2 and 0.1 um: the same nuclei cover 4x the pixels, the same fraction.
    coarse = nuclei((128, 128), (0.2, 0.2), seed=2, background=0.0) > 0.05
    fine = nuclei((256, 256), (0.1, 0.1), seed=2, background=0.0) > 0.05
    assert 0.15 < coarse.mean() < 0.7
    assert fine.sum() / coarse.sum() == pytest.approx(4.0, rel=0.05)
    assert fine.mean() == pytest.approx(coarse.mean(), rel=0.05)


def test_anisotropic_voxels_scale_the_axial_extent():
    # The same 4 um deep volume in 8 slices of 0.5 um or 16 of 0.25 um: the same nuclei.
    kw = dict(seed=1, background=0.0, diameter=(4.0, 6.0))
    thick = nuclei((8, 40, 40), (0.5, 0.15, 0.15), **kw) > 0.05
    thin = nuclei((16, 40, 40), (0.25, 0.15, 0.15), **kw) > 0.05
    pooled = thin.reshape(8, 2, 40, 40).any(axis=1)
    assert (thick & pooled).sum() / (thick | pooled).sum() > 0.9
    # Twice the slices; a little less since a thick slice shows a nucleus if either half does.
    assert 1.6 < thin.sum() / thick.sum() <= 2.0


def test_resolved_spots_cover_pixels_in_proportion_to_their_area():
    kw = dict(seed=4, background=0.0, cytoplasm=0.0, cluster_fraction=0.0, density=0.1, radius=(0.25, 0.3))

    def mean_spot_area(voxel: float, size: int) -> float:
        image = puncta((size, size), (voxel, voxel), **kw)
        labels, n = ndimage.label(image > 0.05)
        assert n >= 5
        return float(np.bincount(labels.ravel())[1:].mean())

    assert mean_spot_area(0.05, 384) / mean_spot_area(0.1, 192) == pytest.approx(4.0, rel=0.3)


def test_membranes_are_thin_closed_contours():
    image = membranes((256, 256), (0.15, 0.15), seed=0, background=0.0)
    mask = image > 0.01
    assert mask.mean() < 0.15
    near_ridge = ndimage.distance_transform_edt(~skeletonize(mask)) <= 2.0
    assert near_ridge[mask].mean() > 0.95
    cells, n = ndimage.label(~mask)
    assert n >= 6 and _enclosed(cells, n) >= 2  # whole cells inside the field, sealed
    isolated = membranes((200, 200), (0.1, 0.1), seed=0, layout="isolated", cell_size=4.0, background=0.0)
    regions, n = ndimage.label(isolated < 0.01)
    assert _enclosed(regions, n) >= 5


def test_isolated_shells_are_closed_in_3d():
    image = membranes((24, 64, 64), (0.4, 0.2, 0.2), seed=0, layout="isolated", cell_size=4.0, background=0.0)
    regions, n = ndimage.label(image < 0.01)
    assert _enclosed(regions, n) >= 1  # a cell's inside, sealed from the outside
    assert (image > 0.01).mean() < 0.2


def test_tissue_is_dense_and_puncta_sparse():
    shape, voxel = (128, 128), (0.1, 0.1)
    dense = (tissue(shape, voxel, seed=0) > 0.1).mean()
    sparse = (puncta(shape, voxel, seed=0) > 0.1).mean()
    assert dense > 0.6
    assert dense > 5 * sparse


def test_background_is_a_smooth_fraction_of_the_peak():
    empty = make_structure("filaments", (64, 64), (0.1, 0.1), seed=0, density=0.0, background=0.0)
    assert not empty.any()
    image = make_structure("filaments", (64, 64), (0.1, 0.1), seed=0, background=0.04)
    assert 0.01 < np.median(image) < 0.1
    with pytest.raises(ValueError, match="background"):
        make_structure("puncta", (32, 32), (0.1, 0.1), background=-0.1)


def test_bad_names_and_arguments_raise():
    with pytest.raises(ValueError, match="filaments, nuclei, membranes, puncta, tissue"):
        make_structure("mitochondria", (32, 32), (0.1, 0.1))
    with pytest.raises(ValueError, match="voxel"):
        make_structure("nuclei", (32, 32), (0.1, 0.1, 0.1))
    with pytest.raises(ValueError, match="shape"):
        make_structure("nuclei", (32,), (0.1,))
    with pytest.raises(ValueError, match="nucleoli"):
        nuclei((32, 32), 0.1, nucleoli="purple")


def test_skimage_images_load_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for name in SKIMAGE_IMAGES:
        image = skimage_image(name, (200, 700))  # cropped in y, mirror-tiled in x
        assert image.shape == (200, 700) and image.dtype == np.float32
        assert image.min() == 0.0 and image.max() == 1.0
        assert skimage_image(name).ndim == 2
    with pytest.raises(ValueError, match="cell"):
        skimage_image("cells3d")
