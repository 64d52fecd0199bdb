"""The dataset stage: the embedded benchmark or a real dataset -> one :class:`Manifest`.

- :mod:`.manifest`: :class:`Manifest` (clip id, path, split, source, multi-hot/soft labels);
- :mod:`.audio`: reading (resampling, cropping) and writing audio;
- :mod:`.synth` + :mod:`.benchmark`: the embedded procedural benchmark (no download);
- one loader module per on-disk layout: :mod:`.esc50`, :mod:`.freegen50`, :mod:`.fsd50k`,
  :mod:`.audioset`, :mod:`.csv_manifest` (shared readers in :mod:`.tables`);
- :mod:`.validation` (every audio file checked once), :mod:`.check` (``csu data check``: a
  dataset's report without training) and :mod:`.chunking` (long clips cut);
- :mod:`.registry`: :func:`load_dataset`, the one entry point, by ``DataConfig.dataset``.

Importing this package registers every dataset.
"""
from . import audioset, benchmark, csv_manifest, esc50, freegen50, fsd50k  # noqa: F401  (registration)
from .audio import load_audio, write_wav
from .audioset import audioset_file_candidates, load_audioset, load_audioset_hdf5, read_hdf5_waveform
from .benchmark import benchmark_config, build_benchmark, load_benchmark
from .check import check_dataset, format_report
from .chunking import chunk_manifest
from .csv_manifest import load_csv_manifest
from .esc50 import load_esc50
from .freegen50 import FREEGEN_NOISY_KINDS, freegen_source, load_freegen50
from .fsd50k import load_fsd50k
from .manifest import SPLITS, Manifest, labels_from_names
from .registry import load_dataset
from .validation import validate_audio

__all__ = ["FREEGEN_NOISY_KINDS", "SPLITS", "Manifest", "audioset_file_candidates", "benchmark_config",
           "build_benchmark", "check_dataset", "chunk_manifest", "format_report", "freegen_source", "labels_from_names", "load_audio",
           "load_audioset", "load_audioset_hdf5", "load_benchmark", "load_csv_manifest", "load_dataset",
           "load_esc50", "load_freegen50", "load_fsd50k", "read_hdf5_waveform", "validate_audio", "write_wav"]
