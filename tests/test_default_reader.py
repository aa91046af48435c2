"""The offer to make NIfTI Resample the default reader for *.nii / *.nii.gz, against an
isolated napari settings object (the user's settings file is never touched);
docs/decisions.md, D19."""

from __future__ import annotations

import numpy as np
import pytest

import napari_resample.plugin.default_reader as default_reader
from napari_resample.plugin.default_reader import offer_default_reader, set_default_reader

pytestmark = pytest.mark.gui


@pytest.fixture
def settings(monkeypatch):
    """A fresh in-memory NapariSettings (no file) as napari's get_settings(), offer not made."""
    import napari.settings
    from napari.settings import NapariSettings

    fresh = NapariSettings(config_path=None)
    monkeypatch.setattr(napari.settings, "_SETTINGS", fresh)
    monkeypatch.setattr(default_reader, "_offered", False)
    assert napari.settings.get_settings() is fresh
    return fresh


def _offers():
    from napari.utils.notifications import notification_manager

    return [n for n in notification_manager.records if "default for *.nii" in n.message]


def test_set_default_reader_sets_only_the_nifti_patterns(settings):
    settings.plugins.extension2reader = {"*.tif": "other-plugin"}
    set_default_reader()
    assert settings.plugins.extension2reader == {
        "*.tif": "other-plugin",
        "*.nii": "napari-resample",
        "*.nii.gz": "napari-resample",
    }


def test_the_widget_offers_it_once_with_a_button_that_sets_it(make_napari_viewer, settings):
    from napari_resample.plugin.widget.dock import ResampleWidget

    viewer = make_napari_viewer()
    settings.plugins.extension2reader = {}
    before = len(_offers())
    ResampleWidget(viewer)
    offers = _offers()[before:]
    assert len(offers) == 1
    ((label, action),) = offers[0].actions
    assert "default" in label
    assert settings.plugins.extension2reader == {}  # nothing changed without the click
    action()
    assert settings.plugins.extension2reader["*.nii.gz"] == "napari-resample"
    ResampleWidget(viewer)
    assert len(_offers()) == before + 1  # once a session


def test_a_choice_the_user_made_is_kept_and_not_asked_about(settings, monkeypatch):
    settings.plugins.extension2reader = {"*.nii.gz": "napari"}
    before = len(_offers())
    assert offer_default_reader() is False
    assert len(_offers()) == before
    assert settings.plugins.extension2reader == {"*.nii.gz": "napari"}


def test_the_first_nifti_read_offers_it(settings, tmp_path):
    import nibabel as nib

    from napari_resample.plugin.reader import read_nifti

    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((3, 4, 5), np.int16), np.eye(4)), path)
    before = len(_offers())
    read_nifti(str(path))
    read_nifti(str(path))
    assert len(_offers()) == before + 1
