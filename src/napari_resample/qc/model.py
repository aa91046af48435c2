"""What quality control says of a file: :class:`Finding` (one check's verdict) and
:class:`FileQC` (every verdict on one resampled pair, with what the report shows of it).

Both are plain data that go to ``qc/qc.json`` and come back from it unchanged
(:meth:`FileQC.to_json`, :meth:`FileQC.from_json`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["ok", "warning", "error"]
#: Severities, least to most severe.
SEVERITIES: tuple[Severity, ...] = ("ok", "warning", "error")


@dataclass(frozen=True)
class Finding:
    """One check's verdict on one file.

    Attributes
    ----------
    check : str
        The check's name (a function of :mod:`napari_resample.qc.checks`, without ``check_``).
    severity : {"ok", "warning", "error"}
    message : str
        One sentence naming the file, the value found and the rule.
    """

    check: str
    severity: Severity
    message: str

    def to_json(self) -> dict[str, str]:
        return {"check": self.check, "severity": self.severity, "message": self.message}


def worst(findings: list[Finding]) -> Severity:
    """The most severe of *findings* (``"ok"`` for none)."""
    rank = max((SEVERITIES.index(f.severity) for f in findings), default=0)
    return SEVERITIES[rank]


@dataclass
class FileQC:
    """Quality control of one resampled pair.

    Attributes
    ----------
    input, output : str
        The paths the manifest names.
    interpolation : str or None
        The interpolation the run used (``"label"`` for a label map).
    findings : list of Finding
    before, after : dict
        :meth:`napari_resample.qc.summary.VolumeSummary.facts` of input and output.
    thumbs : dict of str to dict of str to str
        Role (``"input"``, ``"output"``, and ``"outline_input"`` / ``"outline_output"`` for a
        label map) -> mid-plane cut (``"i"``, ``"j"``, ``"k"``) -> picture path relative to the
        ``qc`` folder.
    paired_image : str or None
        For a label map paired with an image of the same case: that image's output path.
    """

    input: str
    output: str
    interpolation: str | None
    findings: list[Finding] = field(default_factory=list)
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    thumbs: dict[str, dict[str, str]] = field(default_factory=dict)
    paired_image: str | None = None

    @property
    def status(self) -> Severity:
        """The worst severity of the findings."""
        return worst(self.findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "output": self.output,
            "status": self.status,
            "interpolation": self.interpolation,
            "findings": [f.to_json() for f in self.findings],
            "before": self.before,
            "after": self.after,
            "thumbs": self.thumbs,
            "paired_image": self.paired_image,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileQC:
        return cls(
            input=data["input"],
            output=data["output"],
            interpolation=data.get("interpolation"),
            findings=[Finding(**f) for f in data.get("findings", [])],
            before=dict(data.get("before") or {}),
            after=dict(data.get("after") or {}),
            thumbs={k: dict(v) for k, v in (data.get("thumbs") or {}).items()},
            paired_image=data.get("paired_image"),
        )
