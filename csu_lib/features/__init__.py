"""The feature stage: front-end (log-mel), the on-disk feature cache, and batch loading.

- :mod:`.frontend`: :class:`LogMel` (torchaudio MelSpectrogram + AmplitudeToDB);
- :mod:`.store`: the store's format and :class:`StoreWriter` (resumable, atomic publication);
- :mod:`.build`: :func:`build_features` computes a store once per (dataset content, front-end,
  clip length), by parallel worker processes, resuming an interrupted build;
- :mod:`.shards`: :func:`open_store` / :class:`FeatureStore` read it (positional reads);
- :mod:`.loader`: :class:`FeatureLoader` serves batches on the training device (in memory or
  streamed, pinned and prefetched on CUDA).
"""
from .frontend import LogMel
from .loader import IN_MEMORY_BYTES, FeatureLoader, available_memory, hold_in_memory
from .shards import FeatureStore, ShardedFeatures, open_store
from .build import build_features
from .store import SHARD_BYTES, StoreWriter, default_shard_clips, feature_key

__all__ = ["IN_MEMORY_BYTES", "SHARD_BYTES", "FeatureLoader", "FeatureStore", "LogMel", "ShardedFeatures",
           "StoreWriter", "available_memory", "build_features", "default_shard_clips", "feature_key",
           "hold_in_memory", "open_store"]
