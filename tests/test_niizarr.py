"""NIfTI-Zarr (``.nii.zarr``) in and out: header and voxels kept, the reference package agrees,
the pyramid, atomic and bounded writes, and every front door."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import zarr

from conftest import build_case
from napari_resample import (
    resample_to_reference,
    resample_to_spacing,
    resampling,
    resampling_dataset,
)
from napari_resample.cli import main
from napari_resample.io.formats import load_volume
from napari_resample.io.nifti import load_nifti, save_volume
from napari_resample.io.niizarr_read import load_niizarr, open_zarr_planes
from napari_resample.io.niizarr_write import ZarrPlaneWriter, header_blob
from napari_resample.io.volume_io import write_volume

niizarr = pytest.importorskip("niizarr")

ROUND_TRIP = (
    "anisotropic",
    "flipped_las",
    "oblique",
    "sheared",
    "big_endian",
    "big_endian_float",
    "scaled",
    "qform_ne_sform",
    "codes_0_0",
    "singleton_4d",
    "uint8",
    "float64",
    "labels",
)


def _header_fields(header: nib.Nifti1Header) -> dict[str, str]:
    """Every field as text (NaN equals NaN there)."""
    return {key: repr(header[key].tolist()) for key in header.keys()}


def _case_file(make_nifti, name: str, fields: dict | None = None) -> Path:
    case = build_case(name)
    return make_nifti(case.data, case.affine, name=f"{name}.nii.gz", fields=fields, **case.opts)


def _zarr_json(path: Path) -> dict:
    return json.loads((path / "zarr.json").read_text())


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_round_trip_keeps_voxels_and_every_header_field(make_nifti, tmp_path, name):
    fields = {"descrip": b"round trip", "xyzt_units": 10, "intent_code": 0, "cal_max": 5.0}
    src = _case_file(make_nifti, name, fields)
    volume = load_nifti(src)
    write_volume(tmp_path / "v.nii.zarr", volume)
    back = load_niizarr(tmp_path / "v.nii.zarr")
    save_volume(tmp_path / "direct.nii.gz", volume)
    save_volume(tmp_path / "via.nii.gz", back)
    direct, via = nib.load(tmp_path / "direct.nii.gz"), nib.load(tmp_path / "via.nii.gz")
    assert via.header.binaryblock == direct.header.binaryblock
    assert _header_fields(via.header) == _header_fields(direct.header)
    assert _header_fields(back.header)["descrip"] == _header_fields(volume.header)["descrip"]
    stored_in, stored_out = (
        np.asarray(direct.dataobj.get_unscaled()),
        np.asarray(via.dataobj.get_unscaled()),
    )
    assert stored_out.dtype == stored_in.dtype and np.array_equal(stored_out, stored_in)
    assert np.array_equal(back.data, volume.data) and back.data.shape == volume.data.shape
    np.testing.assert_array_equal(back.affine, volume.affine)
    assert (back.slope, back.inter) == (volume.slope, volume.inter)


@pytest.mark.parametrize("name", ["anisotropic", "big_endian", "scaled", "labels", "float32"])
def test_what_we_write_opens_with_the_reference_package(make_nifti, tmp_path, name):
    volume = load_nifti(_case_file(make_nifti, name))
    out = tmp_path / "ours.nii.zarr"
    write_volume(out, volume)
    img = niizarr.zarr2nii(str(out))
    assert np.array_equal(np.asarray(img.dataobj), volume.data)
    stored = nib.Nifti1Header.from_fileobj(
        io.BytesIO(header_blob(volume.header, volume.slope, volume.inter))
    )
    theirs, ours = _header_fields(img.header), _header_fields(stored)
    for key in ("vox_offset", "scl_slope", "scl_inter"):  # an image in memory has none
        del theirs[key], ours[key]
    assert theirs == ours
    raw = niizarr.bin2nii(np.asarray(zarr.open_group(str(out), mode="r")["nifti"][:]).tobytes())
    assert (float(raw["scl_slope"]), float(raw["scl_inter"])) == (volume.slope, volume.inter)
    np.testing.assert_allclose(img.header.get_best_affine(), volume.affine, atol=1e-6)
    assert img.header.get_data_dtype() == volume.header.get_data_dtype()
    ome = _zarr_json(out)["attributes"]["ome"]
    assert ome["version"] == "0.5"
    axes = ome["multiscales"][0]["axes"]
    assert [(a["name"], a["type"], a["unit"]) for a in axes] == [
        (n, "space", "millimeter") for n in "zyx"
    ]


@pytest.mark.parametrize(
    ("name", "version"),
    [("anisotropic", 3), ("big_endian", 3), ("scaled", 3), ("singleton_4d", 3), ("oblique", 2)],
)
def test_what_the_reference_package_writes_opens_with_us(make_nifti, tmp_path, name, version):
    src = _case_file(make_nifti, name)
    theirs = tmp_path / "theirs.nii.zarr"
    niizarr.nii2zarr(str(src), str(theirs), zarr_version=version)  # 2: OME-NGFF 0.4
    reference = load_nifti(src)
    volume = load_niizarr(theirs)
    assert np.array_equal(
        volume.data.reshape(volume.data.shape[:3]),
        reference.data[..., 0] if reference.data.ndim == 4 else reference.data,
    )
    np.testing.assert_array_equal(volume.affine, reference.affine)
    assert (volume.slope, volume.inter) == (reference.slope, reference.inter)
    with open_zarr_planes(theirs, block_bytes=1) as planes:
        blocks = [block for _, block in planes]
    assert np.array_equal(np.concatenate(blocks, axis=2), volume.data.reshape(planes.shape))


def test_pyramid_levels_shapes_scales_and_averages(tmp_path):
    data = np.random.default_rng(1).integers(0, 1000, (200, 130, 70)).astype(np.int16)
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_sform(np.diag([0.5, 1.0, 2.0, 1.0]), code=2)
    write_volume(tmp_path / "p.nii.zarr", _volume(data, header))
    group = zarr.open_group(str(tmp_path / "p.nii.zarr"), mode="r")
    shapes = [group[str(n)].shape for n in range(3)]
    assert shapes == [(70, 130, 200), (35, 65, 100), (18, 33, 50)]
    assert "3" not in group  # 50 x 33 x 18 fits a thumbnail: the last level
    level1 = np.asarray(group["1"][:])
    windows = data.reshape(100, 2, 65, 2, 35, 2).mean(axis=(1, 3, 5))
    assert np.array_equal(level1, np.rint(windows).astype(np.int16).transpose(2, 1, 0))
    datasets = _zarr_json(tmp_path / "p.nii.zarr")["attributes"]["ome"]["multiscales"][0][
        "datasets"
    ]
    transforms = [d["coordinateTransformations"] for d in datasets]
    assert transforms[2][0]["scale"] == [8.0, 4.0, 2.0]
    assert transforms[2][1]["translation"] == [3.0, 1.5, 0.75]


@pytest.mark.parametrize("labels", [True, False])
def test_label_maps_keep_only_their_labels_at_every_level(tmp_path, labels):
    rng = np.random.default_rng(2)
    data = rng.choice(np.array([0, 3, 9, 250], dtype=np.uint8), size=(150, 90, 66))
    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint8)
    write_volume(tmp_path / "l.nii.zarr", _volume(data, header), labels=labels)
    group = zarr.open_group(str(tmp_path / "l.nii.zarr"), mode="r")
    levels = [np.unique(group[str(n)][:]) for n in range(1, 3)]
    inside = [set(found.tolist()) <= {0, 3, 9, 250} for found in levels]
    assert all(inside) is labels  # averaging invents values, voting never does


def test_label_intent_votes_without_being_told(tmp_path):
    data = np.zeros((130, 4, 4), dtype=np.int16)
    data[::2] = 5  # averaging gives 2.5 -> 2, voting keeps 0 or 5
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header["intent_code"] = 1002
    write_volume(tmp_path / "i.nii.zarr", _volume(data, header))
    level1 = zarr.open_group(str(tmp_path / "i.nii.zarr"), mode="r")["1"][:]
    assert set(np.unique(level1).tolist()) <= {0, 5}


def _volume(data, header):
    from napari_resample.io.nifti import NiftiVolume

    header = header.copy()
    header.set_data_shape(data.shape)
    return NiftiVolume(data, header.get_best_affine(), header)


def test_a_failed_write_leaves_nothing_and_keeps_the_old_result(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_shape((8, 8, 4))
    header.set_data_dtype(np.uint8)
    with (
        pytest.raises(RuntimeError, match="mid-write"),
        ZarrPlaneWriter(tmp_path / "a.nii.zarr", header) as out,
    ):
        out.write(np.ones((8, 8, 2), dtype=np.uint8))
        raise RuntimeError("mid-write")
    assert os.listdir(tmp_path) == []
    old = np.full((8, 8, 4), 7, dtype=np.uint8)
    write_volume(tmp_path / "a.nii.zarr", _volume(old, header))
    out = ZarrPlaneWriter(tmp_path / "a.nii.zarr", header)
    out.write(np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"4 planes .* 3 were given"):
        out.close()
    assert os.listdir(tmp_path) == ["a.nii.zarr"]
    assert np.array_equal(load_niizarr(tmp_path / "a.nii.zarr").data, old)
    with (
        pytest.raises(ValueError, match=r"exactly representable .* got 300"),
        ZarrPlaneWriter(tmp_path / "b.nii.zarr", header) as out,
    ):
        out.write(np.full((8, 8, 1), 300))
    assert sorted(os.listdir(tmp_path)) == ["a.nii.zarr"]
    write_volume(tmp_path / "a.nii.zarr", _volume(old + 1, header))  # complete: replaces
    assert os.listdir(tmp_path) == ["a.nii.zarr"]
    assert np.array_equal(load_niizarr(tmp_path / "a.nii.zarr").data, old + 1)


def test_streamed_write_stays_within_the_budget(tmp_path):
    code = f"""
        import resource
        import numpy as np, nibabel as nib
        from napari_resample import resampling
        from napari_resample.io.plane_writer import PlaneWriter
        from napari_resample.io.volume_io import write_volume  # imports zarr
        from napari_resample.pipeline.streamed import stream_file  # imports before the baseline
        header = nib.Nifti1Header()
        header.set_data_shape((256, 256, 256))
        header.set_data_dtype(np.int16)
        header.set_sform(np.eye(4), code=1)
        src = {str(tmp_path / "big.nii.gz")!r}
        with PlaneWriter(src, header) as out:
            for k in range(0, 256, 8):
                g = np.indices((256, 256, 8)).sum(axis=0) + k
                out.write((np.sin(g / 9.0) * 1000).astype(np.int16))
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        resampling(src, {str(tmp_path / "out")!r}, (440, 440, 440), max_memory="160M",
                   output_format="nii.zarr")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print("EXTRA", peak - base)
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr
    extra = int(result.stdout.split("EXTRA")[1].split()[0])
    output_bytes = 440**3 * 2  # the result does not fit the budget
    assert extra < 160 * 2**20 < output_bytes, f"peak RSS grew by {extra / 2**20:.0f} MiB"
    group = zarr.open_group(str(tmp_path / "out" / "big_resampled.nii.zarr"), mode="r")
    assert group["0"].shape == (440, 440, 440) and group["3"].shape == (55, 55, 55)


def test_front_doors_write_nii_zarr(make_nifti, tmp_path):
    src = _case_file(make_nifti, "anisotropic")
    labels = _case_file(make_nifti, "labels")
    done = {}
    for fmt in ("nii.gz", "nii.zarr"):
        out = tmp_path / fmt
        resampling(src, out, (12, 10, 9), output_format=fmt)
        spaced = resample_to_spacing(src, out / "s", (1.0, 1.0, 1.0), output_format=fmt)
        ref = resample_to_reference(labels, src, out / "r", output_format=fmt)
        listed = resampling_dataset(
            [src, labels], out / "d", (7, 7, 7), progress=False, workers=1, output_format=fmt
        )
        assert ref.endswith(f"labels_resampled_to_ref.{fmt}") and spaced.endswith(fmt)
        assert [os.path.basename(p) for p in listed] == [
            f"anisotropic_resampled.{fmt}",
            f"labels_resampled.{fmt}",
        ]
        paths = [out / f"anisotropic_resampled.{fmt}", Path(spaced), Path(ref), *map(Path, listed)]
        done[fmt] = [load_volume(p) for p in paths]
    for gz, zr in zip(done["nii.gz"], done["nii.zarr"], strict=True):
        assert np.array_equal(gz.data, zr.data) and gz.data.dtype == zr.data.dtype
        assert gz.header.binaryblock == zr.header.binaryblock


def test_bad_output_format_is_refused_by_every_door(make_nifti, tmp_path, capsys):
    src = _case_file(make_nifti, "anisotropic")
    message = r"output_format must be one of \('nii.gz', 'nii.zarr'\), got 'zarr'"
    for call in (
        lambda: resampling(src, tmp_path / "o", (4, 4, 4), output_format="zarr"),
        lambda: resample_to_spacing(src, tmp_path / "o", (1, 1, 1), output_format="zarr"),
        lambda: resample_to_reference(src, src, tmp_path / "o", output_format="zarr"),
        lambda: resampling_dataset([src], tmp_path / "o", (4, 4, 4), output_format="zarr"),
    ):
        with pytest.raises(ValueError, match=message):
            call()
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit):
        main([str(src), str(tmp_path / "o"), "--size", "4", "4", "4", "--output-format", "zarr"])
    assert "'zarr'" in capsys.readouterr().err


def test_cli_output_format_and_zarr_input(make_nifti, tmp_path):
    src = _case_file(make_nifti, "anisotropic")
    args = ["--size", "12", "10", "9", "--quiet"]
    assert main([str(src), str(tmp_path / "z"), *args, "--output-format", "nii.zarr"]) == 0
    made = tmp_path / "z" / "anisotropic_resampled.nii.zarr"
    assert (made / "zarr.json").is_file()
    assert main([str(made), str(tmp_path / "back"), *args]) == 0
    assert (tmp_path / "back" / "anisotropic_resampled_resampled.nii.gz").is_file()


@pytest.mark.parametrize(
    ("name", "kind"),
    [("anisotropic", "size"), ("labels", "size"), ("scaled", "spacing"), ("oblique", "ref")],
)
def test_resampling_a_nii_zarr_equals_resampling_the_nii_gz(make_nifti, tmp_path, name, kind):
    src = _case_file(make_nifti, name)
    zsrc = tmp_path / "in" / f"{name}.nii.zarr"
    write_volume(zsrc, load_nifti(src))
    ref = _case_file(make_nifti, "anisotropic")
    outputs = []
    for path, out in ((src, tmp_path / "gz"), (zsrc, tmp_path / "zr")):
        if kind == "size":
            resampling(path, out, (13, 6, 11), max_memory="64M")
            result = out / f"{name}_resampled.nii.gz"
        elif kind == "spacing":
            result = Path(resample_to_spacing(path, out, (0.4, 1.0, 1.7)))
        else:
            with pytest.warns(UserWarning, match="covers only"):
                result = Path(resample_to_reference(path, ref, out))
        outputs.append(nib.load(result))
    gz, zr = outputs
    assert zr.header.binaryblock == gz.header.binaryblock
    assert np.array_equal(
        np.asarray(zr.dataobj.get_unscaled()), np.asarray(gz.dataobj.get_unscaled())
    )


def test_a_dataset_folder_takes_a_nii_zarr_as_one_input(make_nifti, tmp_path):
    src = _case_file(make_nifti, "anisotropic")
    write_volume(src.parent / "copy.nii.zarr", load_nifti(src))
    done = resampling_dataset(src.parent, tmp_path / "out", (5, 5, 5), progress=False, workers=1)
    assert sorted(os.path.basename(p) for p in done) == [
        "anisotropic_resampled.nii.gz",
        "copy_resampled.nii.gz",
    ]
    a, b = (load_volume(p) for p in sorted(done))
    assert np.array_equal(a.data, b.data)


def test_a_killed_writer_leaves_a_temporary_folder_the_next_run_removes(tmp_path):
    from napari_resample.io.atomic import remove_stale_temps

    code = f"""
        import os
        import nibabel as nib, numpy as np
        from napari_resample.io.niizarr_write import ZarrPlaneWriter
        header = nib.Nifti1Header()
        header.set_data_shape((70, 8, 4))
        header.set_data_dtype(np.uint8)
        out = ZarrPlaneWriter({str(tmp_path / "a.nii.zarr")!r}, header)
        out.write(np.ones((70, 8, 2), dtype=np.uint8))
        os._exit(3)  # killed mid-write: no cleanup runs
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], timeout=120)
    assert done.returncode == 3
    (left,) = os.listdir(tmp_path)
    assert left.startswith(".a.nii.zarr.") and left.endswith(".tmp.nii.zarr")
    assert (tmp_path / left / "nifti").is_dir()
    assert remove_stale_temps(tmp_path) == [str(tmp_path / left)]
    assert os.listdir(tmp_path) == []


def test_quality_control_reads_nii_zarr_results(make_nifti, tmp_path):
    from napari_resample import qc_dataset

    for name in ("anisotropic", "labels"):
        _case_file(make_nifti, name)
    kwargs = {"progress": False, "workers": 1, "output_format": "nii.zarr"}
    done = resampling_dataset(tmp_path / "in", tmp_path / "out", (12, 10, 9), qc=True, **kwargs)
    assert len(done) == 2 and all(p.endswith(".nii.zarr") for p in done)
    summary = qc_dataset(tmp_path / "out").summary()  # read again from the folders
    assert "2 files: 0 with errors, 0 with warnings, 2 ok" in summary


@pytest.mark.parametrize("labels", [False, True])
@pytest.mark.parametrize("slab_cap", [None, 1])
def test_pyramid_made_while_writing_equals_halving_each_finished_level(
    tmp_path, monkeypatch, labels, slab_cap
):
    # Odd sides everywhere, level-0 slabs of one plane (an odd plane carried to the next slab
    # every time) and bands of 4 rows: every level must be the halving of the finished level
    # below, as if it were read back.
    from napari_resample.io import niizarr_layout, niizarr_pyramid
    from napari_resample.io.niizarr_layout import halve

    if slab_cap is not None:
        monkeypatch.setattr(niizarr_layout, "SLAB_CAP", slab_cap)
    monkeypatch.setattr(niizarr_pyramid, "BAND_ROWS", 4)
    rng = np.random.default_rng(5)
    if labels:
        data = rng.choice(np.array([0, 2, 7], dtype=np.uint8), size=(141, 77, 69))
    else:
        data = rng.integers(-500, 1500, (141, 77, 69)).astype(np.int16)
    header = nib.Nifti1Header()
    header.set_data_dtype(data.dtype)
    write_volume(tmp_path / "c.nii.zarr", _volume(data, header), labels=labels)
    group = zarr.open_group(str(tmp_path / "c.nii.zarr"), mode="r")
    assert group["0"].chunks[0] == (1 if slab_cap else 64)
    assert niizarr_layout.pyramid_shapes(data.shape)[-1] == group[str(len(group) - 2)].shape[::-1]
    below = np.asarray(group["0"][:])
    for level in range(1, len(group) - 1):  # the members: levels and "nifti"
        halved = tuple(n > 1 for n in below.shape)
        expected = halve(below, halved, labels)
        found = np.asarray(group[str(level)][:])
        assert np.array_equal(found, expected), f"level {level}"
        below = found


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
def test_chunk_files_are_what_zarr_writes(tmp_path, dtype):
    # The writer stores chunks itself (Zarr's own writes cost 3x the compression): every level
    # must be the files Zarr writes for the same array, edge chunks padded and chunks of 0 left
    # out, so that any Zarr reader sees the same thing.
    from zarr.codecs import BloscCodec

    from napari_resample.io.niizarr_layout import ZSTD_LEVEL

    rng = np.random.default_rng(8)
    data = (rng.normal(0, 40, (83, 70, 45)) * (rng.random((83, 70, 45)) < 0.3)).astype(dtype)
    data[:64, :64, :] = 0  # level 0's first chunk (all 45 planes deep) holds only 0
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    ours = tmp_path / "ours.nii.zarr"
    write_volume(ours, _volume(data, header))
    group = zarr.open_group(str(ours), mode="r")
    theirs = zarr.create_group(store=zarr.storage.LocalStore(str(tmp_path / "theirs")))
    levels = [name for name in group.array_keys() if name != "nifti"]
    assert len(levels) >= 2
    for name in levels:
        level = group[name]
        copy = theirs.create_array(
            name,
            shape=level.shape,
            chunks=level.chunks,
            dtype=level.dtype,
            compressors=BloscCodec(cname="zstd", clevel=ZSTD_LEVEL, shuffle="shuffle"),
            fill_value=0,
        )
        copy[:] = level[:]
        mine, zarrs = ours / name / "c", tmp_path / "theirs" / name / "c"
        files = sorted(p.relative_to(mine) for p in mine.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(zarrs) for p in zarrs.rglob("*") if p.is_file())
        assert all((mine / f).read_bytes() == (zarrs / f).read_bytes() for f in files), name
    assert not (ours / "0" / "c" / "0" / "0" / "0").exists()  # a chunk of 0: not stored
