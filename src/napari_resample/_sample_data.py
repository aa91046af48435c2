"""napari sample data: the core's synthetic head phantom and its label map.

Both go through the reader's own conversion
(:func:`napari_resample._reader.layer_data_from_volume`),
so they open with the same true anisotropic spacing (0.5 x 0.5 x 2.5 mm), RAS world coordinates
and metadata as a file would, and the widget and the writer treat them like any NIfTI layer.
"""

from __future__ import annotations

from napari_resample._io import NiftiVolume, header_for_affine
from napari_resample._reader import NIFTI_INTENT_LABEL, LayerData, layer_data_from_volume


def make_sample_data() -> list[LayerData]:
    """The phantom as an Image layer and its label map as a Labels layer."""
    from napari_resample._phantom import make_phantom

    image, labels, affine = make_phantom()
    image_header = header_for_affine(affine, image.shape)
    image_header.set_data_dtype(image.dtype)
    image_header["descrip"] = b"napari-resample synthetic head phantom"
    label_header = header_for_affine(affine, labels.shape)
    label_header.set_data_dtype(labels.dtype)
    label_header["descrip"] = b"napari-resample phantom labels"
    label_header["intent_code"] = NIFTI_INTENT_LABEL
    for header in (image_header, label_header):
        header.set_xyzt_units("mm", "sec")
    image_layer = layer_data_from_volume(
        NiftiVolume(image, affine, image_header), name="phantom", layer_type="image"
    )
    label_layer = layer_data_from_volume(
        NiftiVolume(labels, affine, label_header), name="phantom_labels", layer_type="labels"
    )
    image_layer[1]["contrast_limits"] = (-200.0, 200.0)
    label_layer[1]["opacity"] = 0.4
    return [image_layer, label_layer]
