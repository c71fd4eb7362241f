"""The MulSen-AD data contract: records, reader, writer, validation, statistics, scans, alignment, build, release."""

from typing import TYPE_CHECKING

from mulsen.core.lazy import lazy_exports

if TYPE_CHECKING:
    from .align import AlignmentGates, AlignmentResult, align_scans, merge_scans
    from .build import BuildConfig, BuildReport, build_dataset, merge_capture
    from .captures import CaptureRecord, SampleRequest
    from .meshio import read_stl, write_stl
    from .reader import MulsenDataset
    from .records import Mesh, ModalityLabels, SampleContent, SampleData, SampleKey, SampleRecord, Split
    from .release import ReleaseManifest, pack_dataset, verify_release
    from .scans import Scan, read_scan, write_scan
    from .stats import dataset_stats, format_table
    from .validate import ValidationReport, validate_dataset
    from .writer import DatasetWriter

_EXPORTS = {
    "Mesh": "records",
    "ModalityLabels": "records",
    "SampleContent": "records",
    "SampleData": "records",
    "SampleKey": "records",
    "SampleRecord": "records",
    "Split": "records",
    "MulsenDataset": "reader",
    "DatasetWriter": "writer",
    "ValidationReport": "validate",
    "validate_dataset": "validate",
    "dataset_stats": "stats",
    "format_table": "stats",
    "Scan": "scans",
    "read_scan": "scans",
    "write_scan": "scans",
    "AlignmentGates": "align",
    "AlignmentResult": "align",
    "align_scans": "align",
    "merge_scans": "align",
    "CaptureRecord": "captures",
    "SampleRequest": "captures",
    "BuildConfig": "build",
    "BuildReport": "build",
    "build_dataset": "build",
    "merge_capture": "build",
    "ReleaseManifest": "release",
    "pack_dataset": "release",
    "verify_release": "release",
    "read_stl": "meshio",
    "write_stl": "meshio",
}
__all__ = [
    "AlignmentGates", "AlignmentResult", "BuildConfig", "BuildReport", "CaptureRecord", "DatasetWriter", "Mesh",
    "ModalityLabels", "MulsenDataset", "ReleaseManifest", "SampleContent", "SampleData", "SampleKey", "SampleRecord",
    "SampleRequest", "Scan", "Split", "ValidationReport", "align_scans", "build_dataset", "dataset_stats",
    "format_table", "merge_capture", "merge_scans", "pack_dataset", "read_scan", "read_stl", "validate_dataset",
    "verify_release", "write_scan", "write_stl",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
