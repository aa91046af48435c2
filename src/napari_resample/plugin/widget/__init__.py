"""The "Resample volume" dock widget: a Qt-free read-out model plus small Qt parts.

:mod:`.model`
    the read-out from plain values (target -> size, spacing, field of view, memory, refusals)
:mod:`.job`
    a run without Qt: prepared on the main thread, computed in the worker, made a layer
:mod:`.targets`, :mod:`.readout`, :mod:`.run_row`, :mod:`.save_row`, :mod:`.status`
    the Qt parts: target chooser, read-out labels, Resample / Cancel and progress, folder and
    Save, status line
:mod:`.dock`
    :class:`~napari_resample.plugin.widget.dock.ResampleWidget`, composing them (the manifest's
    widget)

Importing this package imports no Qt: :mod:`.model` and :mod:`.job` are tested without a viewer.
"""
