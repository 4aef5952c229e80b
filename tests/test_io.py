from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from siamdecon.errors import InputError
from siamdecon.io import read_image, write_image


def test_tiff_round_trip_keeps_imagej_voxel_size(tmp_path, rng):
    vol = rng.random((5, 20, 30)).astype(np.float32)
    src = tmp_path / "in.tif"
    tifffile.imwrite(
        src, vol, imagej=True, resolution=(1 / 0.1, 1 / 0.1), metadata={"spacing": 0.3, "unit": "um", "axes": "ZYX"}
    )
    img = read_image(src)
    assert img.data.shape == (5, 20, 30)
    assert img.spacing == pytest.approx((0.3, 0.1, 0.1))
    out = tmp_path / "out.tif"
    write_image(out, img.like(img.data * 2))
    back = read_image(out)
    assert np.allclose(back.data, vol * 2)
    assert back.data.dtype == np.float32
    assert back.spacing == pytest.approx((0.3, 0.1, 0.1))


def test_ome_tiff_voxel_size(tmp_path, rng):
    arr = rng.random((4, 16, 16)).astype(np.float32)
    p = tmp_path / "x.ome.tif"
    tifffile.imwrite(
        p, arr, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2, "PhysicalSizeZ": 0.5}
    )
    assert read_image(p).spacing == pytest.approx((0.5, 0.2, 0.2))


def test_integer_tiff_and_npy_and_png(tmp_path, rng):
    arr = (rng.random((12, 14)) * 1000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", arr)
    assert np.array_equal(read_image(tmp_path / "a.tif").data, arr.astype(np.float32))
    np.save(tmp_path / "a.npy", arr)
    assert read_image(tmp_path / "a.npy").data.dtype == np.float32
    from skimage import io as skio

    skio.imsave(tmp_path / "a.png", (arr // 4).astype(np.uint8), check_contrast=False)
    assert read_image(tmp_path / "a.png").data.shape == (12, 14)


def test_leading_singleton_axes_are_restored_on_write(tmp_path, rng):
    arr = rng.random((1, 10, 12)).astype(np.float32)
    np.save(tmp_path / "a.npy", arr)
    img = read_image(tmp_path / "a.npy")
    assert img.data.shape == (10, 12)
    write_image(tmp_path / "b.npy", img.like(img.data))
    assert np.load(tmp_path / "b.npy").shape == (1, 10, 12)


@pytest.mark.parametrize(
    "arr,message",
    [
        (np.zeros((0, 5)), "empty"),
        (np.zeros((2, 3, 4, 5)), "4 dimensions"),
        (np.array([1.0, np.nan, 2.0, 3.0]).reshape(2, 2), "NaN"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), "NaN or infinite"),
        (np.zeros(5), "1 dimensions"),
        (np.zeros((3, 3), dtype=complex), "complex"),
    ],
)
def test_bad_arrays_get_specific_errors_naming_the_file(tmp_path, arr, message):
    p = tmp_path / "bad.npy"
    np.save(p, arr)
    with pytest.raises(InputError, match=message) as info:
        read_image(p)
    assert "bad.npy" in str(info.value)


def test_rgb_inputs_are_rejected(tmp_path, rng):
    rgb = (rng.random((10, 12, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with pytest.raises(InputError, match="RGB"):
        read_image(tmp_path / "rgb.tif")
    from skimage import io as skio

    skio.imsave(tmp_path / "rgb.png", rgb, check_contrast=False)
    with pytest.raises(InputError, match="colour"):
        read_image(tmp_path / "rgb.png")


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_image(tmp_path / "nope.tif")
    (tmp_path / "x.jpg").write_bytes(b"123")
    with pytest.raises(InputError, match="unsupported"):
        read_image(tmp_path / "x.jpg")
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    with pytest.raises(InputError, match="could not read"):
        read_image(tmp_path / "broken.tif")


def test_write_is_atomic_on_failure(tmp_path, monkeypatch):
    import siamdecon.io

    target = tmp_path / "out.tif"
    write = tifffile.imwrite

    def interrupted(path, *args, **kwargs):
        # The whole file is written, then Ctrl-C arrives before the rename.
        write(path, *args, **kwargs)
        assert Path(path).stat().st_size > 0
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(siamdecon.io.tifffile, "imwrite", interrupted)
        with pytest.raises(KeyboardInterrupt):
            write_image(target, np.ones((4, 4)))
    assert list(tmp_path.iterdir()) == []
    # An existing file is left untouched too.
    write_image(target, np.ones((4, 4)))
    with monkeypatch.context() as m:
        m.setattr(siamdecon.io.tifffile, "imwrite", interrupted)
        with pytest.raises(KeyboardInterrupt):
            write_image(target, np.zeros((4, 4)))
    assert np.all(read_image(target).data == 1)
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_output_type_and_folder_are_checked(tmp_path):
    with pytest.raises(InputError, match="unsupported"):
        write_image(tmp_path / "out.png", np.ones((4, 4)))
    with pytest.raises(InputError, match="does not exist"):
        write_image(tmp_path / "no" / "out.tif", np.ones((4, 4)))


def test_outputs_get_normal_file_permissions(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        write_image(tmp_path / "o.tif", np.ones((4, 4)))
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "o.tif").stat().st_mode) == 0o644


def test_rgb_like_npy_is_refused(tmp_path, rng):
    np.save(tmp_path / "rgb.npy", rng.random((64, 64, 3)))
    with pytest.raises(InputError, match="RGB"):
        read_image(tmp_path / "rgb.npy")


def test_plain_72_dpi_tiff_has_no_voxel_size(tmp_path, rng):
    tifffile.imwrite(tmp_path / "a.tif", rng.random((8, 8)).astype(np.float32), resolution=(72, 72))
    assert read_image(tmp_path / "a.tif").spacing is None
    tifffile.imwrite(
        tmp_path / "b.tif",
        rng.random((8, 8)).astype(np.float32),
        resolution=(10000, 10000),
        resolutionunit="CENTIMETER",
    )
    assert read_image(tmp_path / "b.tif").spacing == pytest.approx((1.0, 1.0))
