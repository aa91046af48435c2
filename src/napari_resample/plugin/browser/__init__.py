"""The "QC browser" dock widget: a Qt-free model plus small Qt parts.

:mod:`.model`
    what a run's output folder lists (qc/qc.json or the manifest), errors first; the cursor
:mod:`.load`
    one file's input and output read as the reader reads them (run in a worker thread)
:mod:`.folder_row`, :mod:`.file_list`, :mod:`.view_row`, :mod:`.messages`
    the Qt parts: folder field and buttons, the list, previous / next and overlay, the texts
:mod:`.file_view`
    the file shown in the viewer: its layers, side by side or overlaid, read in a worker
:mod:`.dock`
    :class:`~napari_resample.plugin.browser.dock.QCBrowser`, composing them (the manifest's
    widget)

Importing this package imports no Qt: :mod:`.model` and :mod:`.load` are tested without a
viewer.
"""
