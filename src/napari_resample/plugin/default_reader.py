"""Offer to make NIfTI Resample napari's default reader for ``*.nii`` and ``*.nii.gz``.

napari's builtin reader claims ``*.nii*`` too, so without a preference every open of a NIfTI
file asks "Choose reader". When the user's settings have no reader for those two patterns (and
only then: a choice the user made is never changed behind their back), the first Resample widget
or NIfTI read of a session shows one notification with a button that calls
:func:`set_default_reader`. Only ``*.nii`` and ``*.nii.gz`` are set, never all of ``*.gz``;
napari's Preferences > Plugins changes them back.
"""

from __future__ import annotations

from typing import Any

#: The file patterns this plugin would read by default.
NIFTI_PATTERNS = ("*.nii", "*.nii.gz")
#: The plugin's name in napari's settings (``napari.yaml``'s ``name``).
PLUGIN = "napari-resample"

_offered = False  # once per session


def _plugin_settings() -> Any:
    from napari.settings import get_settings

    return get_settings().plugins


def default_reader_unset() -> bool:
    """True when the user's settings name no reader for ``*.nii`` or ``*.nii.gz``."""
    chosen = _plugin_settings().extension2reader
    return not any(pattern in chosen for pattern in NIFTI_PATTERNS)


def set_default_reader() -> None:
    """Make NIfTI Resample napari's reader for ``*.nii`` and ``*.nii.gz`` (other patterns are
    kept); saved with napari's settings like a choice made in Preferences > Plugins."""
    plugins = _plugin_settings()
    plugins.extension2reader = {
        **plugins.extension2reader,
        **dict.fromkeys(NIFTI_PATTERNS, PLUGIN),
    }


def offer_default_reader() -> bool:
    """Once per session, when no reader is set for NIfTI files, show a notification offering
    :func:`set_default_reader` (a button). True if the offer was shown now."""
    global _offered
    if _offered:
        return False
    _offered = True
    try:
        if not default_reader_unset():
            return False
        from napari.utils.notifications import (
            Notification,
            NotificationSeverity,
            notification_manager,
        )
    except Exception:  # no napari settings here (a script): nothing to offer
        return False
    notification_manager.dispatch(
        Notification(
            "napari asks which reader to use for every .nii / .nii.gz file (its builtin reader "
            "claims them too). Make NIfTI Resample the default for *.nii and *.nii.gz? "
            "(Preferences > Plugins changes it back.)",
            NotificationSeverity.INFO,
            actions=[("Make NIfTI Resample the default", set_default_reader)],
        )
    )
    return True
