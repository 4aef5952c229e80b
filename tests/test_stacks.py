"""Multi-dimensional stacks: axes, metadata, OME-TIFF/ImageJ/NPY/OME-Zarr in and out, lazy sampling."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from siamdecon.errors import InputError
from siamdecon.stack import read_provenance, read_stack, write_stack


def test_ome_tiff_keeps_axes_voxel_size_channel_names_and_provenance(tmp_path, rng):
    data = rng.random((3, 2, 4, 16, 20)).astype(np.float32)
    meta = {"axes": "TCZYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1, "PhysicalSizeZ": 0.3}
    meta["Channel"] = {"Name": ["GFP", "RFP"]}
    tifffile.imwrite(tmp_path / "in.ome.tif", data, ome=True, metadata=meta)
    stack = read_stack(tmp_path / "in.ome.tif")
    assert stack.axes == "TCZYX" and stack.shape == data.shape
    assert (stack.n_times, stack.n_channels, stack.spatial_shape) == (3, 2, (4, 16, 20))
    assert stack.spacing == pytest.approx((0.3, 0.1, 0.1)) and stack.channel_names == ["GFP", "RFP"]
    assert np.array_equal(np.asarray(stack.volume(2, 1)), data[2, 1])
    write_stack(tmp_path / "out.ome.tif", data * 2, stack, provenance={"seed": 3, "psf": {"c0": "abc"}})
    back = read_stack(tmp_path / "out.ome.tif")
    assert back.axes == "TCZYX" and back.spacing == pytest.approx((0.3, 0.1, 0.1))
    assert back.channel_names == ["GFP", "RFP"] and np.allclose(back.data, data * 2)
    assert read_provenance(tmp_path / "out.ome.tif") == {"seed": "3", "psf.c0": "abc"}


def test_imagej_hyperstack_axes_order_and_time_interval(tmp_path, rng):
    data = rng.random((2, 3, 2, 12, 14)).astype(np.float32)  # ImageJ order: T, Z, C, Y, X
    tifffile.imwrite(
        tmp_path / "h.tif",
        data,
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.2),
        metadata={"axes": "TZCYX", "spacing": 0.5, "unit": "um", "finterval": 2.0},
    )
    stack = read_stack(tmp_path / "h.tif")
    assert stack.axes == "TZCYX" and stack.spacing == pytest.approx((0.5, 0.2, 0.2))
    assert stack.time_increment == 2.0
    assert np.array_equal(np.asarray(stack.volume(1, 1)), data[1, :, 1])
    write_stack(tmp_path / "o.tif", stack.data.astype(np.float32), stack)
    back = read_stack(tmp_path / "o.tif")
    assert back.axes == "TZCYX" and back.shape == data.shape and back.spacing == pytest.approx((0.5, 0.2, 0.2))


def test_npy_axes_option_and_its_errors(tmp_path, rng):
    arr = rng.random((2, 3, 10, 12)).astype(np.float32)
    np.save(tmp_path / "a.npy", arr)
    with pytest.raises(InputError, match="4 dimensions.*--axes"):
        read_stack(tmp_path / "a.npy")
    stack = read_stack(tmp_path / "a.npy", axes="czyx")
    assert stack.axes == "CZYX" and stack.n_channels == 2 and stack.spatial_shape == (3, 10, 12)
    with pytest.raises(InputError, match="RGB"):
        read_stack(tmp_path / "a.npy", axes="CZYS")
    with pytest.raises(InputError, match="'E'"):
        read_stack(tmp_path / "a.npy", axes="EZYX")
    with pytest.raises(InputError, match="3 axes but the array has 4"):
        read_stack(tmp_path / "a.npy", axes="ZYX")
    # An unusual order is read, and written back as it came for .npy.
    stack = read_stack(tmp_path / "a.npy", axes="YXCZ")
    assert stack.spatial == "ZYX" and stack.volume(0, 1).shape == (12, 2, 3)
    write_stack(tmp_path / "b.npy", arr, stack)
    assert np.load(tmp_path / "b.npy").shape == arr.shape


def test_rgb_tiff_is_refused_with_a_message(tmp_path, rng):
    tifffile.imwrite(tmp_path / "rgb.tif", (rng.random((20, 20, 3)) * 255).astype(np.uint8), photometric="rgb")
    with pytest.raises(InputError, match="RGB"):
        read_stack(tmp_path / "rgb.tif")


def test_uint16_output_records_the_scale(tmp_path, rng):
    data = (rng.random((2, 8, 8)) * 5).astype(np.float32)
    stack = read_stack(_npy(tmp_path / "x.npy", data), axes="CYX")
    scaling = [(0.0, 5.0 / 65535), (-1.0, 10.0 / 65535)]
    write_stack(tmp_path / "u.tif", data, stack, dtype="uint16", scaling=scaling, provenance={"scale": "per channel"})
    back = read_stack(tmp_path / "u.tif")
    assert back.dtype == "uint16"
    for c, (offset, scale) in enumerate(scaling):
        assert np.allclose(np.asarray(back.data[c], np.float64) * scale + offset, data[c], atol=scale)
    with pytest.raises(InputError, match="cannot record the uint16 scale"):
        write_stack(tmp_path / "u.npy", data, stack, dtype="uint16", scaling=scaling)


def _npy(path, arr):
    np.save(path, arr)
    return path


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_is_read_lazily_and_written_with_metadata(tmp_path, rng, version):
    zarr = pytest.importorskip("zarr")
    from ome_zarr.format import format_from_version
    from ome_zarr.writer import write_image

    data = rng.random((2, 2, 6, 32, 24)).astype(np.float32)
    group = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=2 if version == "0.4" else 3)
    write_image(
        data,
        group,
        scale_factors=[],
        fmt=format_from_version(version),
        axes=[
            {"name": "t", "type": "time"},
            {"name": "c", "type": "channel"},
            *({"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"),
        ],
        coordinate_transformations=[[{"type": "scale", "scale": [1.0, 1.0, 0.4, 0.1, 0.1]}]],
        storage_options={"chunks": (1, 1, 3, 16, 16)},
    )
    stack = read_stack(tmp_path / "in.zarr")
    assert stack.is_lazy and stack.axes == "TCZYX" and stack.ngff_version == version
    assert stack.spacing == pytest.approx((0.4, 0.1, 0.1))
    view = stack.volume(1, 0)
    assert np.array_equal(view[1:3, 5:9, :4], data[1, 0, 1:3, 5:9, :4])
    write_stack(tmp_path / "out.zarr", data, stack, provenance={"seed": 0})
    back = read_stack(tmp_path / "out.zarr")
    assert back.ngff_version == version and back.spacing == pytest.approx((0.4, 0.1, 0.1))
    assert np.array_equal(np.asarray(back.data), data) and read_provenance(tmp_path / "out.zarr") == {"seed": 0}
    assert not any(p.name.startswith(".out.zarr") for p in tmp_path.iterdir())  # no partial store left


def test_zarr_store_missing_chunks_is_refused(tmp_path, rng):
    zarr = pytest.importorskip("zarr")
    from ome_zarr.writer import write_image

    group = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=2)
    write_image(rng.random((8, 32, 32)).astype(np.float32), group, scale_factors=[], axes="zyx",
                storage_options={"chunks": (4, 16, 16)})  # fmt: skip
    chunks = sorted(p for p in (tmp_path / "in.zarr").rglob("*") if p.is_file() and p.name[0].isdigit())
    chunks[-1].unlink()
    with pytest.raises(InputError, match="missing 1 of its 8 chunks"):
        read_stack(tmp_path / "in.zarr")
    from siamdecon.zarr_io import read_ome_zarr

    assert read_ome_zarr(tmp_path / "in.zarr", allow_missing_chunks=True).shape == (8, 32, 32)


def test_vendor_adapter_reads_through_bioio(tmp_path, rng):
    pytest.importorskip("bioio")
    pytest.importorskip("bioio_ome_tiff")
    data = rng.random((2, 3, 16, 16)).astype(np.float32)
    tifffile.imwrite(tmp_path / "x.ome.tif", data, ome=True, metadata={"axes": "CZYX", "PhysicalSizeX": 0.2,
                     "PhysicalSizeY": 0.2, "PhysicalSizeZ": 0.5})  # fmt: skip
    stack = read_stack(tmp_path / "x.ome.tif", reader="bioio")
    assert stack.kind == "bioio" and stack.axes == "TCZYX" and stack.shape == (1, 2, 3, 16, 16)
    assert stack.spacing == pytest.approx((0.5, 0.2, 0.2))
    assert np.array_equal(np.asarray(stack.volume(0, 1)), data[1])


def test_statistics_and_patches_across_arrays(rng):
    from siamdecon.data import ArrayPatchSampler, array_statistics, normalization_from_statistics, standardize

    a = rng.random((5, 30, 40)).astype(np.float32)
    b = (rng.random((5, 60, 80)) * 3 + 1).astype(np.float32)
    stats = array_statistics([a, b])
    both = np.concatenate([a.ravel(), b.ravel()]).astype(np.float64)
    assert stats.mean == pytest.approx(both.mean()) and stats.std == pytest.approx(both.std())
    assert normalization_from_statistics(array_statistics([a])) == standardize(a)[1]

    class Lazy:  # an array read on demand, like a Zarr one: counts what is read
        def __init__(self, arr):
            self.arr, self.shape, self.read = arr, arr.shape, 0

        def __getitem__(self, region):
            out = self.arr[region]
            self.read += out.size
            return out

    lazy = Lazy(b)
    norm = normalization_from_statistics(stats)
    sampler = ArrayPatchSampler([a, lazy], norm, 16, 3, seed=1, max_pool_bytes=4 * 5 * 32 * 32 * 2)
    batch = sampler.sample()
    assert tuple(batch.shape) == (3, 1, 5, 16, 16)
    # The lazy array is read only for the pool (two regions of at most 5x32x32 here), never whole.
    assert 0 < lazy.read <= 2 * 5 * 32 * 32 < b.size


def test_predict_region_matches_predict(rng, psf2d):
    from siamdecon import Deconvolver, make_config
    from siamdecon.data import iter_blocks

    image = rng.random((80, 72)).astype(np.float32)
    cfg = make_config("fast", 2, steps=1, prior={"source": "none"}, tile_size=32, tile_overlap=8, tta=False)
    model = Deconvolver.fit(image, psf2d, cfg, progress=False)
    whole = model.predict(image)
    assert np.array_equal(model.predict_region(image, (slice(None), slice(None))), whole)
    blocks = np.zeros_like(image)
    for region in iter_blocks(image.shape, (40, 40)):
        blocks[region] = model.predict_region(image, region)
    # Blocks see real context around them; only the tile layout differs from the whole image's.
    assert np.abs(blocks - whole).max() < 0.02 * whole.std()


def test_training_on_several_arrays_uses_their_joint_normalization(rng, psf2d):
    from siamdecon import Deconvolver, make_config

    cfg = make_config("fast", 2, steps=1, prior={"source": "none"})
    frames = [rng.random((40, 40)).astype(np.float32) * k for k in (1, 2, 3)]
    model = Deconvolver.fit(frames, psf2d, cfg, progress=False)
    all_frames = np.stack(frames).astype(np.float64)
    assert model.normalization.mean == pytest.approx(all_frames.mean())
    assert model.normalization.std == pytest.approx(all_frames.std())
