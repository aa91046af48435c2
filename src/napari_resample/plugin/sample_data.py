"""napari sample data: the core's synthetic head phantom and its label map.

Both go through the reader's own conversion
(:func:`napari_resample.plugin.reader.layer_data_from_volume`),
so they open with the same true anisotropic spacing (0.5 x 0.5 x 2.5 mm), RAS world coordinates
and metadata as a file would, and the widget and the writer treat them like any NIfTI layer.
"""

from __future__ import annotations

from napari_resample.plugin.reader import LayerData, layer_data_from_volume


def make_sample_data() -> list[LayerData]:
    """The phantom as an Image layer and its label map as a Labels layer."""
    from napari_resample.io.phantom import phantom_volumes

    volumes = phantom_volumes()
    image_layer = layer_data_from_volume(volumes["phantom"], name="phantom", layer_type="image")
    label_layer = layer_data_from_volume(
        volumes["phantom_labels"], name="phantom_labels", layer_type="labels"
    )
    image_layer[1]["contrast_limits"] = (-200.0, 200.0)
    label_layer[1]["opacity"] = 0.4
    return [image_layer, label_layer]
